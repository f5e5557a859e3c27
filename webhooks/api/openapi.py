"""The OpenAPI 3.1 document for /api, served at GET /api/openapi.json: the routes, their
parameters and answers, around the shapes in schemas.py. tests/webhooks/api/test_openapi.py
runs schemathesis against this document and the live app, so a drift between the two fails
the tests."""

from __future__ import annotations

from typing import Any

from falbridge.config import ApiConfig, UploadConfig
from falbridge.models.listing import MAX_PAGE
from falbridge.models.metadata_filter import KEY_PATTERN, MAX_METADATA_FILTERS
from falbridge.models.states import ALL_STATUSES
from falbridge.webhooks.api.openapi_batch import batch_paths, batch_schemas
from falbridge.webhooks.api.openapi_deliveries import delivery_paths, delivery_schemas
from falbridge.webhooks.api.openapi_files import file_operation, input_operation
from falbridge.webhooks.api.openapi_subscriptions import paths as subscription_paths
from falbridge.webhooks.api.openapi_subscriptions import schemas as subscription_schemas
from falbridge.webhooks.api.openapi_uploads import upload_paths, upload_schemas
from falbridge.webhooks.api.schemas import (
    ANY,
    ENDPOINT_ID_PATTERN,
    EVF_SAM_INPUT,
    FAL_OPTIONS,
    FAL_READING,
    JOB_DETAIL,
    JOB_EVENT,
    JOB_SUMMARY,
    MAX_CURSOR,
    MAX_EXTERNAL_ID,
    MAX_FILTER,
    NO_NUL,
    REGION_PROPOSAL_INPUT,
    RESULT_FILE,
    TEXT,
    TIME,
    nullable,
    object_schema,
    ref,
)
from falbridge.worker.fal.inputs import EVF_SAM, MAX_ERRORS_REPORTED, REGION_PROPOSAL
from falbridge.worker.notify.address import MAX_URL_LENGTH, URL_SHAPE
from falbridge.worker.notify.job_callbacks import CELERY_NAME_PATTERN


def _submit_request(limits: ApiConfig) -> dict[str, Any]:
    base = object_schema(
        {
            "endpoint_id": {
                "type": "string",
                "maxLength": MAX_FILTER,
                "pattern": ENDPOINT_ID_PATTERN,
                "description": "owner/app[/path...]; two are validated, others passed through",
            },
            "input": ref("JsonObject"),
            "external_id": {
                "type": ["string", "null"],
                "minLength": 1,
                "maxLength": MAX_EXTERNAL_ID,
                "pattern": NO_NUL,
                "description": "idempotency key",
            },
            "metadata": {"anyOf": [ref("JsonObject"), {"type": "null"}]},
            "notify_url": {
                "type": ["string", "null"],
                "maxLength": MAX_URL_LENGTH,
                "pattern": URL_SHAPE,
                "description": "POSTed the job's terminal event once, signed with the deployment's "
                "notify secret (`falbridge notify-secret show`); public addresses or "
                "FALBRIDGE_NOTIFY_ALLOWED_NETWORKS",
            },
            "on_complete": {
                "type": ["string", "null"],
                "pattern": CELERY_NAME_PATTERN,
                "description": "a Celery task name, sent (job_id, event_id) once per terminal event",
            },
            "on_complete_queue": {
                "type": ["string", "null"],
                "pattern": CELERY_NAME_PATTERN,
                "description": "the queue on_complete is sent on (default: Celery's, `celery`)",
            },
            "options": {
                "anyOf": [ref("FalOptions"), {"type": "null"}],
                "description": "fal's options for this job, sent as fal's headers on its submits",
            },
        },
        required=["endpoint_id", "input"],
    )
    base["description"] = (
        f"Limits: the body at most {limits.max_body_bytes} bytes, JSON nesting at most "
        f"{limits.max_json_depth} levels, at most {limits.max_json_keys} keys in an object and "
        f"{limits.max_json_items} items in an array, `input` at most {limits.max_input_bytes} bytes and "
        f"`metadata` at most {limits.max_metadata_bytes} bytes as compact JSON; no string may "
        "contain NUL or an unpaired surrogate."
    )
    # A queue names where on_complete goes: not without it.
    base["if"] = {"properties": {"on_complete_queue": {"type": "string"}}, "required": ["on_complete_queue"]}
    base["then"] = {"properties": {"on_complete": {"type": "string"}}, "required": ["on_complete"]}
    # The two first-class endpoints have typed inputs; every other id passes its input through.
    base["oneOf"] = [
        {"properties": {"endpoint_id": {"const": EVF_SAM}, "input": ref("EvfSamInput")}},
        {"properties": {"endpoint_id": {"const": REGION_PROPOSAL}, "input": ref("RegionProposalInput")}},
        {"properties": {"endpoint_id": {"not": {"enum": [EVF_SAM, REGION_PROPOSAL]}}}},
    ]
    return base


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response = {"description": description, "content": {"application/json": {"schema": ref("Error")}}}
    if headers:
        response["headers"] = headers
    return response


def _ok(description: str, schema: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response = {"description": description, "content": {"application/json": {"schema": ref(schema)}}}
    if headers:
        response["headers"] = headers
    return response


_LOCATION = {"Location": {"required": True, "schema": {"type": "string"}, "description": "the job's URL"}}
_UNAUTHORIZED = _error(
    "no or wrong bearer token", {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}}
)
_NOT_CONFIGURED = _error("API authentication is not configured on the server (FALBRIDGE_API_TOKENS)")
_JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "a job id, or a prefix of 8 or more of its hex digits that no other job id shares",
}


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
    _query(
        "updated_after",
        {"anyOf": [TIME, {"const": ""}]},
        "the changes feed: jobs whose status, result, error or files changed after this time, "
        "oldest change first (updated_at, id), each once FALBRIDGE_FEED_SETTLE_S old; its "
        "`next_cursor` is never null: follow it to see every job's latest state",
    ),
    {
        "name": "metadata",
        "in": "query",
        "required": False,
        "style": "deepObject",
        "explode": True,
        "schema": {
            "type": "object",
            "patternProperties": {f"^{KEY_PATTERN.pattern}$": {"type": "string", "pattern": NO_NUL}},
            "additionalProperties": False,
            "maxProperties": MAX_METADATA_FILTERS,
        },
        "description": "metadata[<key>]=<value>: jobs whose metadata holds this value under this "
        'key; the value is the JSON scalar it spells (7, true, null, "7"), else the text itself',
    },
    _query(
        "limit",
        {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_PAGE}, {"const": ""}], "default": 50},
        "page size",
    ),
    _query(
        "cursor",
        {"type": "string", "maxLength": MAX_CURSOR, "pattern": NO_NUL},
        "`next_cursor` of the previous page; anything else is 422",
    ),
]


def _paths(uploads: UploadConfig) -> dict[str, Any]:
    common = {"401": _UNAUTHORIZED, "503": _NOT_CONFIGURED}
    return {
        "/api/jobs": {
            "post": {
                "operationId": "submitJob",
                "summary": "Submit a job",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("SubmitRequest")}},
                },
                "responses": {
                    "202": _ok("created and queued", "JobDetail", _LOCATION),
                    "200": _ok("this external_id already names the same job", "JobDetail", _LOCATION),
                    "400": _error("the body is not a JSON object"),
                    "409": _error("this external_id names a job with another endpoint, input or options"),
                    "413": _error("body, input or metadata over its size limit"),
                    "415": _error("the body is not application/json"),
                    "422": _error(
                        f"a field is missing, unknown or invalid (at most {MAX_ERRORS_REPORTED} "
                        "listed), or the JSON is nested too deep or has an object or array over its limit"
                    ),
                    **common,
                },
            },
            "get": {
                "operationId": "listJobs",
                "summary": "List jobs, newest first; or the changes feed, oldest change first",
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
                "responses": {
                    "200": _ok("the job", "JobDetail"),
                    "404": _error("no such job"),
                    "409": _error("more than one job id starts with this prefix"),
                    **common,
                },
            },
        },
        "/api/jobs/{job_id}/live": {
            "get": {
                "operationId": "getLiveStatus",
                "summary": "The job, with fal's status, queue position and logs asked of fal now",
                "description": "One status call to fal per request (none for a finished job or one "
                "not yet at fal); a job fal reports running is recorded in_progress. For showing "
                "progress to someone waiting: poll it about once a second.",
                "parameters": [_JOB_ID],
                "responses": {
                    "200": _ok("the job and fal's live status", "LiveStatus"),
                    "404": _error("no such job"),
                    "409": _error("more than one job id starts with this prefix"),
                    **common,
                },
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
                    "409": _error("the job is already in a terminal state, or the id prefix is ambiguous"),
                    **common,
                },
            },
        },
        "/api/jobs/{job_id}/files/{file_id}": {"get": file_operation(_error, _JOB_ID, common)},
        "/api/jobs/{job_id}/inputs/{sha256}": {"get": input_operation(_error, _JOB_ID, common)},
        **delivery_paths(_ok, _error, common),
        **subscription_paths(_error, common),
        **upload_paths(_ok, _error, common, uploads),
        **batch_paths(_ok, _error, common),
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


def document(limits: ApiConfig, uploads: UploadConfig | None = None) -> dict[str, Any]:
    """`limits`, `uploads`: the app's configuration, so the document states the limits in force."""
    json_string = {"type": "string", "pattern": NO_NUL}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "falbridge jobs API",
            "version": "1",
            "description": "Submit fal.ai jobs and read their history; list, show and re-apply "
            "fal's stored callbacks; subscribe to the jobs' events as signed webhooks (Standard "
            "Webhooks). Every route but this "
            "document needs `Authorization: Bearer <token>` (FALBRIDGE_API_TOKENS).",
        },
        "security": [{"bearerAuth": []}],
        "paths": _paths(uploads or UploadConfig()),
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "JsonString": json_string,
                "JsonValue": {
                    "anyOf": [
                        {"type": ["null", "boolean", "number"]},
                        ref("JsonString"),
                        {"type": "array", "items": ref("JsonValue")},
                        ref("JsonObject"),
                    ]
                },
                "JsonObject": {
                    "type": "object",
                    "propertyNames": json_string,
                    "additionalProperties": ref("JsonValue"),
                },
                "SubmitRequest": _submit_request(limits),
                "FalOptions": FAL_OPTIONS,
                "EvfSamInput": EVF_SAM_INPUT,
                "RegionProposalInput": REGION_PROPOSAL_INPUT,
                "JobSummary": object_schema(JOB_SUMMARY),
                "JobDetail": object_schema(JOB_DETAIL),
                "ResultFile": object_schema(RESULT_FILE),
                "JobEvent": object_schema(JOB_EVENT),
                "JobPage": object_schema(
                    {"jobs": {"type": "array", "items": ref("JobSummary")}, "next_cursor": nullable(TEXT)}
                ),
                # The job as GET /api/jobs/{job_id} shows it, and what the cancel did.
                "CancelResult": object_schema(
                    {**JOB_DETAIL, "outcome": {"type": "string", "enum": ["cancelled", "cancel requested"]}}
                ),
                # The job as GET /api/jobs/{job_id} shows it, and what fal says of it now.
                "LiveStatus": object_schema({**JOB_DETAIL, "fal": ref("FalReading")}),
                "FalReading": object_schema(FAL_READING),
                **delivery_schemas(),
                **subscription_schemas(),
                **upload_schemas(),
                **batch_schemas(),
                "Error": object_schema(
                    {"error": object_schema({"code": TEXT, "message": TEXT, "details": ANY})}
                ),
            },
        },
    }
