"""`POST /api/files`: a file for use in any job's input, uploaded to fal storage.

The body is multipart/form-data with the file in the field `file`. werkzeug's form parser
streams it to a temporary file (parts over 500 KB never sit in memory), the upload to fal
storage streams from there, and the answer is `{"url", "sha256", "size", "content_type"}`:
`url` goes into an input (e.g. `image_url`). Bigger than FALBRIDGE_MAX_UPLOAD_BYTES: 413.
The upload is recorded, so a job naming that URL records the file's digest and the key of
falbridge's copy (falbridge.worker.input_copies).
"""

from __future__ import annotations

import os

from flask import Blueprint, g, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge

from falbridge.webhooks import current
from falbridge.webhooks.errors import ApiError
from falbridge.worker.fal import FalError
from falbridge.worker.fal.upload import upload_to_fal
from falbridge.worker.input_copies import keeping
from falbridge.worker.input_files import upload_stream

uploads_api = Blueprint("uploads_api", __name__, url_prefix="/api")

FIELD = "file"
# Other fields are ignored, and the OpenAPI document leaves them open: a bound on the parts
# only stops a form of thousands of tiny parts (werkzeug's own default).
MAX_PARTS = 1000
_FORM_OVERHEAD = 64 * 1024  # boundaries and part headers around the file


@uploads_api.post("/files")
def upload_file() -> ResponseReturnValue:
    limit = current.config().upload.max_bytes
    g.body_limit = (limit, "FALBRIDGE_MAX_UPLOAD_BYTES")  # for the 413 handler
    request.max_content_length = limit + _FORM_OVERHEAD
    request.max_form_parts = MAX_PARTS
    if request.mimetype != "multipart/form-data":
        raise _no_file("send multipart/form-data")
    stored = _parsed_files().get(FIELD)
    if stored is None:
        raise _no_file(f"no file in the form field {FIELD!r}")
    # Other fields are ignored, as an HTML form's would be; a second file is ambiguous.
    if len(request.files.getlist(FIELD)) > 1:
        raise ApiError(400, "invalid_request", f"more than one {FIELD!r} in the form: send one file")
    stream = stored.stream
    size = stream.seek(0, os.SEEK_END)
    stream.seek(0)
    if size > limit:
        raise RequestEntityTooLarge()
    try:
        done = upload_stream(stream, size, stored.filename, keeping(upload_to_fal))  # type: ignore[arg-type]
    except FalError as exc:
        raise ApiError(502, "upload_failed", f"uploading the file to fal storage failed: {exc}") from None
    body = {"url": done.url, "sha256": done.sha256, "size": done.size, "content_type": done.content_type}
    return jsonify(body), 201


def _parsed_files() -> MultiDict[str, FileStorage]:
    """The form's files; werkzeug says 413 for too many parts as for too many bytes, and
    only the bytes are too large: a declared length within the limit means the parts."""
    try:
        return request.files
    except RequestEntityTooLarge:
        length, limit = request.content_length, request.max_content_length
        if length is not None and limit is not None and length <= limit:
            raise ApiError(
                400, "invalid_request", f"more than {MAX_PARTS} parts in the form: send the file alone"
            ) from None
        raise


def _no_file(why: str) -> ApiError:
    return ApiError(400, "invalid_request", f"{why}: the file goes in the multipart field {FIELD!r}")
