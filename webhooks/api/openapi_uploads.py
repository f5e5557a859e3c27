"""`POST /api/files` (webhooks/api/uploads.py) in the OpenAPI document: webhooks/api/openapi.py
adds this path and its schema to the document it assembles."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from falbridge.config import UploadConfig
from falbridge.webhooks.api.schemas import TEXT, object_schema
from falbridge.webhooks.api.uploads import FIELD

Responder = Callable[..., dict[str, Any]]


def upload_paths(
    ok: Responder, error: Responder, common: dict[str, Any], limits: UploadConfig
) -> dict[str, Any]:
    # Other form fields are ignored (not refused), so the schema leaves them open.
    form = {
        "type": "object",
        "properties": {FIELD: {"type": "string", "format": "binary"}},
        "required": [FIELD],
    }
    return {
        "/api/files": {
            "post": {
                "operationId": "uploadFile",
                "summary": "Upload a file to fal storage for use in any job's input",
                "description": f"multipart/form-data with the file in `{FIELD}`, at most "
                f"{limits.max_bytes} bytes (FALBRIDGE_MAX_UPLOAD_BYTES). Streamed through to fal "
                "storage; the answer's `url` goes into an input such as `image_url`.",
                "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": form}}},
                "responses": {
                    "201": ok("uploaded", "UploadedFile"),
                    "400": error(f"not multipart/form-data, or no `{FIELD}` in it"),
                    "413": error("the file is over FALBRIDGE_MAX_UPLOAD_BYTES"),
                    "502": error("fal storage refused the file or could not be reached (`upload_failed`)"),
                    **common,
                },
            }
        }
    }


def upload_schemas() -> dict[str, Any]:
    return {
        "UploadedFile": object_schema(
            {
                "url": {**TEXT, "description": "where fal's models read it"},
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "size": {"type": "integer", "minimum": 0, "description": "bytes"},
                "content_type": {
                    **TEXT,
                    "description": "as sniffed from the first bytes, else from the name",
                },
            }
        )
    }
