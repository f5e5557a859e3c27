"""The OpenAPI 3.1 document for /api, served at GET /api/openapi.json.

Built from small dicts so each shape sits next to what it mirrors: the job shapes are
models/serialize.py field for field (`additionalProperties: false`, every field
required), and the request shapes are the checks in webhooks/api.py and the input models
in worker/fal/inputs.py. tests/webhooks/test_openapi.py runs schemathesis against this
document and the live app, so a drift between the two fails the tests.
"""

from __future__ import annotations

from typing import Any

from falbridge.config import ApiConfig
from falbridge.models.jobs import MAX_PAGE
from falbridge.models.states import ALL_STATUSES, EventSource
from falbridge.worker.fal.inputs import EVF_SAM, REGION_PROPOSAL

MAX_EXTERNAL_ID = 255
MAX_FILTER = 255  # endpoint_id and external_id are VARCHAR(255): nothing longer can match
MAX_CURSOR = 512  # an issued cursor is ~90 characters

REF = "#/components/schemas/"
# worker.fal.endpoints: owner/app[/path...], segments of letters, digits, '.', '_', '-'
# not starting with '.'; ids under workflows/ and comfy/ need one more segment.
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
ENDPOINT_ID_PATTERN = rf"^(?!(?:workflows|comfy)/{_SEGMENT}$){_SEGMENT}(?:/{_SEGMENT})+$"
# Python's str.strip() whitespace, spelled out: regex engines disagree on \s.
_SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK = rf"[^{_SPACE}]"
NO_NUL = r"^[^\x00]*$"  # PostgreSQL can store no NUL character (api.py refuses them)
FILE_URL = r"^(?:[Hh][Tt][Tt][Pp][Ss]?://|[Dd][Aa][Tt][Aa]:)"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "required": list(properties) if required is None else required,
    }


TEXT, INT, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
TIME = {"type": "string", "format": "date-time"}
ANY: dict[str, Any] = {}  # any JSON value: fal's result and error detail are free-form

JOB_SUMMARY = {
    "id": {"type": "string", "format": "uuid"},
    "endpoint_id": TEXT,
    "status": {"type": "string", "enum": list(ALL_STATUSES)},
    "external_id": _nullable(TEXT),
    "metadata": {"anyOf": [_ref("JsonObject"), {"type": "null"}]},
    "request_id": _nullable(TEXT),
    "gateway_request_id": _nullable(TEXT),
    "result_pending": BOOL,
    "error": _nullable(TEXT),
    "error_type": _nullable(TEXT),
    "error_detail": ANY,
    "created_at": TIME,
    "updated_at": TIME,
    "submitted_at": _nullable(TIME),
    "completed_at": _nullable(TIME),
    "cancel_requested_at": _nullable(TIME),
    "last_polled_at": _nullable(TIME),
    "resubmitted_at": _nullable(TIME),
    "submit_attempts": INT,
    "poll_attempts": INT,
    "webhook_count": INT,
}
JOB_DETAIL = {
    **JOB_SUMMARY,
    "input": _ref("JsonObject"),
    "status_url": _nullable(TEXT),
    "response_url": _nullable(TEXT),
    "cancel_url": _nullable(TEXT),
    "result": ANY,
    "files": {"type": "array", "items": _ref("ResultFile")},
    "events": {"type": "array", "items": _ref("JobEvent")},
}
RESULT_FILE = {
    "id": INT,
    "path": TEXT,
    "url": TEXT,
    "content_type": _nullable(TEXT),
    "file_name": _nullable(TEXT),
    "file_size": _nullable(INT),
    "width": _nullable(INT),
    "height": _nullable(INT),
}
JOB_EVENT = {
    "at": TIME,
    "source": {"type": "string", "enum": [s.value for s in EventSource]},
    "from_status": {"type": ["string", "null"], "enum": [*ALL_STATUSES, None]},
    "to_status": {"type": "string", "enum": list(ALL_STATUSES)},
    "detail": ANY,
}

EVF_SAM_INPUT = _object(
    {
        "prompt": {"type": "string", "pattern": NOT_BLANK},
        "image_url": {"type": "string", "pattern": FILE_URL},
        "negative_prompt": {"type": ["string", "null"], "pattern": NO_NUL},
        "semantic_type": BOOL,
        "mask_only": BOOL,
        "use_grounding_dino": BOOL,
        "revert_mask": BOOL,
        # fal: "must be odd", default 0; 0 means no blur.
        "blur_mask": {"type": "integer", "enum": [0, *range(1, 50, 2)]},
        "expand_mask": {"type": "integer", "minimum": 0},
        "fill_holes": BOOL,
    },
    required=["prompt", "image_url"],
)
REGION_PROPOSAL_INPUT = _object({"image_url": {"type": "string", "pattern": FILE_URL}})


def _submit_request(limits: ApiConfig) -> dict[str, Any]:
    base = _object(
        {
            "endpoint_id": {
                "type": "string",
                "maxLength": MAX_FILTER,
                "pattern": ENDPOINT_ID_PATTERN,
                "description": "owner/app[/path...]; two are validated, others passed through",
            },
            "input": _ref("JsonObject"),
            "external_id": {
                "type": ["string", "null"],
                "minLength": 1,
                "maxLength": MAX_EXTERNAL_ID,
                "pattern": NO_NUL,
                "description": "idempotency key",
            },
            "metadata": {"anyOf": [_ref("JsonObject"), {"type": "null"}]},
        },
        required=["endpoint_id", "input"],
    )
    base["description"] = (
        f"Limits: the body at most {limits.max_body_bytes} bytes, JSON nesting at most "
        f"{limits.max_json_depth} levels, `input` at most {limits.max_input_bytes} bytes and "
        f"`metadata` at most {limits.max_metadata_bytes} bytes as compact JSON; no string may "
        "contain NUL or an unpaired surrogate."
    )
    # The two first-class endpoints have typed inputs; every other id passes its input through.
    base["oneOf"] = [
        {"properties": {"endpoint_id": {"const": EVF_SAM}, "input": _ref("EvfSamInput")}},
        {"properties": {"endpoint_id": {"const": REGION_PROPOSAL}, "input": _ref("RegionProposalInput")}},
        {"properties": {"endpoint_id": {"not": {"enum": [EVF_SAM, REGION_PROPOSAL]}}}},
    ]
    return base


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response = {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}
    if headers:
        response["headers"] = headers
    return response


def _ok(description: str, schema: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response = {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}
    if headers:
        response["headers"] = headers
    return response


_LOCATION = {"Location": {"required": True, "schema": {"type": "string"}, "description": "the job's URL"}}
_UNAUTHORIZED = _error(
    "no or wrong bearer token", {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}}
)
_NOT_CONFIGURED = _error("API authentication is not configured on the server (FALBRIDGE_API_TOKENS)")
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_LIST_PARAMETERS = [
    # "" counts as not given (as an HTML form sends it), so it is part of each schema.
    _query("status", {"type": "string", "enum": ["", *ALL_STATUSES]}, "only jobs in this state"),
    _query("endpoint_id", {"type": "string", "maxLength": MAX_FILTER, "pattern": NO_NUL}, "exact match"),
    _query("external_id", {"type": "string", "maxLength": MAX_FILTER, "pattern": NO_NUL}, "exact match"),
    _query(
        "created_after",
        {"anyOf": [TIME, {"const": ""}]},
        "inclusive; ISO-8601, a time without an offset is UTC",
    ),
    _query(
        "created_before",
        {"anyOf": [TIME, {"const": ""}]},
        "exclusive; ISO-8601, a time without an offset is UTC",
    ),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50}, "page size"),
    _query(
        "cursor",
        {"type": "string", "maxLength": MAX_CURSOR, "pattern": NO_NUL},
        "`next_cursor` of the previous page; anything else is 422",
    ),
]


def _paths() -> dict[str, Any]:
    common = {"401": _UNAUTHORIZED, "503": _NOT_CONFIGURED}
    return {
        "/api/jobs": {
            "post": {
                "operationId": "submitJob",
                "summary": "Submit a job",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("SubmitRequest")}},
                },
                "responses": {
                    "202": _ok("created and queued", "JobDetail", _LOCATION),
                    "200": _ok("this external_id already names the same job", "JobDetail", _LOCATION),
                    "400": _error("the body is not a JSON object"),
                    "409": _error("this external_id names a job with another endpoint or input"),
                    "413": _error("body, input or metadata over its size limit"),
                    "415": _error("the body is not application/json"),
                    "422": _error("a field is missing, unknown or invalid, or the JSON is nested too deep"),
                    **common,
                },
            },
            "get": {
                "operationId": "listJobs",
                "summary": "List jobs, newest first",
                "parameters": _LIST_PARAMETERS,
                "responses": {
                    "200": _ok("one page", "JobPage"),
                    "422": _error("an unknown or invalid parameter"),
                    **common,
                },
            },
        },
        "/api/jobs/{job_id}": {
            "get": {
                "operationId": "getJob",
                "summary": "One job with its result, files and events",
                "parameters": [_JOB_ID],
                "responses": {"200": _ok("the job", "JobDetail"), "404": _error("no such job"), **common},
            },
        },
        "/api/jobs/{job_id}/cancel": {
            "post": {
                "operationId": "cancelJob",
                "summary": "Cancel a job",
                "parameters": [_JOB_ID],
                "responses": {
                    "202": _ok("cancelled, or cancellation asked of fal", "CancelResult"),
                    "404": _error("no such job"),
                    "409": _error("the job is already in a terminal state"),
                    **common,
                },
            },
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            },
        },
    }


def document(limits: ApiConfig) -> dict[str, Any]:
    """`limits`: the app's API configuration, so the document states the limits in force."""
    json_string = {"type": "string", "pattern": NO_NUL}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "falbridge jobs API",
            "version": "1",
            "description": "Submit fal.ai jobs and read their history. Every route but this "
            "document needs `Authorization: Bearer <token>` (FALBRIDGE_API_TOKENS).",
        },
        "security": [{"bearerAuth": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "JsonString": json_string,
                "JsonValue": {
                    "anyOf": [
                        {"type": ["null", "boolean", "number"]},
                        _ref("JsonString"),
                        {"type": "array", "items": _ref("JsonValue")},
                        _ref("JsonObject"),
                    ]
                },
                "JsonObject": {
                    "type": "object",
                    "propertyNames": json_string,
                    "additionalProperties": _ref("JsonValue"),
                },
                "SubmitRequest": _submit_request(limits),
                "EvfSamInput": EVF_SAM_INPUT,
                "RegionProposalInput": REGION_PROPOSAL_INPUT,
                "JobSummary": _object(JOB_SUMMARY),
                "JobDetail": _object(JOB_DETAIL),
                "ResultFile": _object(RESULT_FILE),
                "JobEvent": _object(JOB_EVENT),
                "JobPage": _object(
                    {"jobs": {"type": "array", "items": _ref("JobSummary")}, "next_cursor": _nullable(TEXT)}
                ),
                "CancelResult": _object(
                    {
                        "job": _ref("JobDetail"),
                        "outcome": {"type": "string", "enum": ["cancelled", "cancel requested"]},
                    }
                ),
                "Error": _object({"error": _object({"code": TEXT, "message": TEXT, "details": ANY})}),
            },
        },
    }
