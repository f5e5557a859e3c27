"""falbridge's copy of a job's result files, under the jobs API:

    GET /api/jobs/<job_id>/files/<file_id>     the stored bytes (file_id: the file's `id`)
    GET /api/jobs/<job_id>/inputs/<sha256>     the copy kept of a file uploaded for its input

Both take the dashboard's session cookie as well as the bearer token (webhooks.app), so
the dashboard's <img> elements load.

Served through Werkzeug's conditional responses: the ETag is the file's sha256 (quoted),
If-None-Match answers 304, a Range 206 (or 416), from a seekable reader of the backend so
a range costs only its bytes. The Content-Type is the sniffed one; only a few raster image
types are served inline, everything else as an attachment, always with `nosniff` and a
sandboxing CSP, so no stored file is ever rendered as a page of falbridge's origin.
With FALBRIDGE_STORAGE_PRESIGN_S and an S3 backend, a 302 to a presigned URL instead.
"""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime
from urllib.parse import quote

from flask import Blueprint, redirect, request, send_file
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from falbridge.models.db import transaction
from falbridge.models.jobs import get_job, input_files_of
from falbridge.models.stored_files import stored_for
from falbridge.models.tables import StoredFile
from falbridge.webhooks import current
from falbridge.webhooks.api.jobs import resolved_job_id
from falbridge.webhooks.errors import ApiError
from falbridge.worker.storage import backend as backends
from falbridge.worker.storage.backend import input_key
from falbridge.worker.storage.sniff import OCTET_STREAM, served_inline

files_api = Blueprint("job_files", __name__, url_prefix="/api/jobs")

MAX_FILE_ID = 2**63 - 1
MAX_NAME = 150
SAFETY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


@files_api.get("/<job_id>/files/<file_id>")
def download_file(job_id: str, file_id: str) -> ResponseReturnValue:
    full_id = uuid.UUID(resolved_job_id(job_id))
    stored = _stored(full_id, file_id)
    content_type = stored.sniffed_type or OCTET_STREAM
    inline = served_inline(content_type)
    disposition = content_disposition(download_name(stored.file_name, stored.path), inline=inline)
    assert stored.storage_key is not None and stored.size is not None and stored.sha256 is not None
    where = (stored.storage_key, stored.size, stored.sha256)
    return _served(*where, content_type, disposition, stored.path, modified=stored.stored_at)


@files_api.get("/<job_id>/inputs/<sha256>")
def input_copy(job_id: str, sha256: str) -> ResponseReturnValue:
    """The copy falbridge kept of an input file (worker.input_copies.keep_input_copy), for a
    digest this job's input recorded: never any other object of the store."""
    full_id = resolved_job_id(job_id)
    with transaction() as s:
        job = get_job(s, full_id)  # its events load lazily, here: the files are not needed
        # The first record of the digest (the same bytes may be named at several places).
        recorded = next((f for f in input_files_of(job) if f.get("sha256") == sha256), None) if job else None
    if recorded is None or not isinstance(recorded.get("size"), int):
        raise ApiError(404, "not_found", f"job {full_id} has no input file {sha256[:64]!r}")
    content_type = str(recorded.get("content_type") or OCTET_STREAM)
    location = "_".join(str(part) for part in recorded.get("location") or ["input"])
    name = download_name(None, location)
    disposition = content_disposition(name, inline=served_inline(content_type))
    return _served(input_key(sha256), recorded["size"], sha256, content_type, disposition, location)


def _served(
    key: str,
    size: int,
    sha256: str,
    content_type: str,
    disposition: str,
    what: str,
    modified: datetime | None = None,
) -> Response:
    backend = backends.configured()
    presign_s = current.config().storage.presign_s
    if presign_s:
        url = backend.presigned_url(key, presign_s, disposition, content_type)
        if url is not None:
            redirected = redirect(url, 302)
            redirected.headers.update({**SAFETY_HEADERS, "Cache-Control": "no-store"})
            return redirected
    try:
        reader = backend.open(key)
    except backends.StoredObjectMissing:
        raise ApiError(404, "file_gone", f"file {what} was stored, but storage no longer has it") from None
    except backends.StorageUnavailable as exc:
        raise ApiError(503, "storage_unavailable", str(exc)) from None
    response = send_file(reader, mimetype=content_type, conditional=False, etag=False)
    response.headers["Content-Disposition"] = disposition
    response.headers.update(SAFETY_HEADERS)
    response.content_length = size
    response.set_etag(sha256)
    response.last_modified = modified
    return response.make_conditional(request, accept_ranges=True, complete_length=size)


def _stored(job_id: uuid.UUID, file_id: str) -> StoredFile:
    number = int(file_id) if file_id.isascii() and file_id.isdigit() and len(file_id) < 20 else None
    if number is None or number > MAX_FILE_ID:
        raise ApiError(404, "not_found", f"no file {file_id[:32]!r} in job {job_id}")
    with transaction() as s:
        found = stored_for(s, job_id, number)
    if found is None:
        raise ApiError(404, "not_found", f"no file {number} in job {job_id}")
    result_file, stored = found
    if stored is None:
        raise ApiError(404, "not_stored", f"file {result_file.path} is not stored (yet)", {"status": None})
    if stored.status != "stored":
        raise ApiError(
            404,
            "file_missing",
            f"file {stored.path} could not be stored: {stored.reason}",
            {"status": stored.status, "reason": stored.reason},
        )
    return stored


def download_name(file_name: str | None, path: str) -> str:
    """The name a browser saves the file as: fal's file name without control characters,
    quotes, backslashes or path separators (it goes into a header); else from the path."""
    cleaned = "".join(
        "_" if ch in '/\\"' else ch
        for ch in (file_name or "")
        if not unicodedata.category(ch).startswith("C")
    ).strip(" .")
    return cleaned[:MAX_NAME] or backends.safe_name(path)


def content_disposition(name: str, *, inline: bool) -> str:
    """`attachment; filename="..."`, with RFC 6266's `filename*` for a name that is not ASCII."""
    kind = "inline" if inline else "attachment"
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii") or "file"
    value = f'{kind}; filename="{ascii_name}"'
    if ascii_name != name:
        value += f"; filename*=UTF-8''{quote(name, safe='!#$&+-.^_`|~')}"
    return value
