"""The OpenAPI description of GET /api/jobs/{job_id}/files/{file_id} and /inputs/{sha256}
(webhooks/api/files.py): both serve a stored object the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ErrorResponse = Callable[[str], dict[str, Any]]


_BYTES = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
_HEADER = {"schema": {"type": "string"}}
_SERVED = {"ETag": _HEADER, "Content-Disposition": _HEADER, "X-Content-Type-Options": _HEADER}


def file_operation(error: ErrorResponse, job_id: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    return _served_operation(
        error,
        job_id,
        common,
        operation_id="getJobFile",
        summary="falbridge's stored copy of one of the job's result files",
        description="The file's `download_url`. ETag is the file's sha256 (If-None-Match: "
        "304), Range requests are answered 206. The Content-Type is what the bytes are; only "
        "raster images are served inline, anything else as an attachment, always with "
        "`X-Content-Type-Options: nosniff`. With FALBRIDGE_STORAGE_PRESIGN_S on an S3 "
        "backend: a 302 to a short-lived presigned URL.",
        name="file_id",
        names="the file's `id` in the job's `files`",
        not_found="no such job or file (not_found), not stored yet (not_stored), recorded missing "
        "(file_missing), or gone from storage (file_gone)",
    )


def input_operation(error: ErrorResponse, job_id: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    return _served_operation(
        error,
        job_id,
        common,
        operation_id="getJobInputCopy",
        summary="falbridge's copy of a file uploaded for the job's input",
        description="Only for a digest the job's input recorded (`input_files`); served like "
        "a result file (ETag = sha256, Range, nosniff, or a 302 to a presigned URL).",
        name="sha256",
        names="the input file's sha256 as the job recorded it",
        not_found="no such job, or the job recorded no input file with this digest (not_found)",
    )


def _served_operation(
    error: ErrorResponse,
    job_id: dict[str, Any],
    common: dict[str, Any],
    *,
    operation_id: str,
    summary: str,
    description: str,
    name: str,
    names: str,
    not_found: str,
) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "parameters": [
            job_id,
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": names,
            },
            {"name": "Range", "in": "header", "required": False, "schema": {"type": "string"}},
            {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}},
        ],
        "responses": {
            "200": {"description": "the stored bytes", "headers": _SERVED, "content": _BYTES},
            "206": {"description": "the range asked for", "headers": _SERVED, "content": _BYTES},
            "302": {"description": "a presigned URL serves it", "headers": {"Location": _HEADER}},
            "304": {"description": "not modified (If-None-Match matched)"},
            "404": error(not_found),
            "409": error("more than one job id starts with this prefix"),
            "416": error("the range is not satisfiable"),
            "503": error("the storage backend cannot be reached (storage_unavailable)"),
            **common,
        },
    }
