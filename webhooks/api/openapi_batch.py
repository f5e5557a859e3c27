"""`POST /api/jobs/batch` (webhooks/api/batch.py) in the OpenAPI document: webhooks/api/openapi.py
adds this path and its schemas to the document it assembles."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from falbridge.webhooks.api.schemas import ANY, BOOL, TEXT, object_schema, ref
from falbridge.worker.accept_batch import MAX_BATCH

Responder = Callable[..., dict[str, Any]]


def batch_paths(ok: Responder, error: Responder, common: dict[str, Any]) -> dict[str, Any]:
    return {
        "/api/jobs/batch": {
            "post": {
                "operationId": "submitJobs",
                "summary": "Submit many jobs at once",
                "description": f"At most {MAX_BATCH} bodies of POST /api/jobs, within the same body "
                "limits. One result per job, in order: the job (created, or the one its "
                "external_id names already), or the error POST /api/jobs would have answered "
                "for that body alone; a bad job does not stop the others.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("BatchRequest")}},
                },
                "responses": {
                    "200": ok("one result per job, in the order sent", "BatchResults"),
                    "400": error("the body is not a JSON object"),
                    "413": error(f"the body over its size limit, or more than {MAX_BATCH} jobs"),
                    "415": error("the body is not application/json"),
                    "422": error(
                        "`jobs` is missing or not an array, or an unknown field; or the JSON is "
                        "nested too deep or has an object or array over its limit"
                    ),
                    **common,
                },
            }
        }
    }


def batch_schemas() -> dict[str, Any]:
    return {
        "BatchRequest": object_schema(
            {"jobs": {"type": "array", "maxItems": MAX_BATCH, "items": ref("SubmitRequest")}}
        ),
        "BatchResults": object_schema({"results": {"type": "array", "items": ref("BatchResult")}}),
        "BatchResult": {
            "oneOf": [
                object_schema({"job": ref("JobDetail"), "created": BOOL}),
                object_schema({"error": ref("BatchError")}),
            ]
        },
        "BatchError": object_schema(
            {
                "status": {"type": "integer", "description": "what POST /api/jobs would have answered"},
                "code": TEXT,
                "message": TEXT,
                "details": ANY,
            }
        ),
    }
