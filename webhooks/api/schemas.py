"""The shapes the jobs API reads and writes, as JSON Schema (OpenAPI 3.1): the job shapes
are models/serialize.py field for field (`additionalProperties: false`, every field
required); the request rules mirror webhooks/api/params.py and the typed inputs in
worker/fal/inputs.py. openapi.py assembles the document from them."""

from __future__ import annotations

from typing import Any

from falbridge.models.states import ALL_STATUSES, EventSource
from falbridge.worker.fal.job_options import (
    MAX_TAG_KEY,
    MAX_TAG_VALUE,
    MAX_TAGS,
    MAX_TAGS_BYTES,
    MIN_START_TIMEOUT_S,
    PRIORITIES,
)

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


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


def object_schema(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
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
    "external_id": nullable(TEXT),
    "metadata": {"anyOf": [ref("JsonObject"), {"type": "null"}]},
    "request_id": nullable(TEXT),
    "gateway_request_id": nullable(TEXT),
    "result_pending": BOOL,
    "error": nullable(TEXT),
    "error_type": nullable(TEXT),
    "error_detail": ANY,
    "created_at": TIME,
    "updated_at": TIME,
    "submitted_at": nullable(TIME),
    "completed_at": nullable(TIME),
    "cancel_requested_at": nullable(TIME),
    "last_polled_at": nullable(TIME),
    "resubmitted_at": nullable(TIME),
    "submit_attempts": INT,
    "poll_attempts": INT,
    "webhook_count": INT,
}
# worker.fal.job_options: what fal is asked for a job, each sent as one of its headers.
FAL_OPTIONS = object_schema(
    {
        "priority": {"type": ["string", "null"], "enum": [*PRIORITIES, None]},
        "start_timeout": {
            "type": ["number", "null"],
            "exclusiveMinimum": MIN_START_TIMEOUT_S,
            "description": "seconds the job may wait at fal before it starts (X-Fal-Request-Timeout)",
        },
        "object_lifecycle": {
            "type": ["integer", "null"],
            "minimum": 1,
            "description": "seconds until fal deletes the output files (X-Fal-Object-Lifecycle-Preference)",
        },
        "store_io": {"type": ["boolean", "null"], "description": "false: fal keeps no JSON payloads"},
        "tags": {
            "type": ["object", "null"],
            "maxProperties": MAX_TAGS,
            "propertyNames": {"pattern": rf"^(?!fal\.)[a-z0-9._-]{{1,{MAX_TAG_KEY}}}$"},
            "additionalProperties": {"type": "string", "pattern": rf"^[ -+\--~]{{0,{MAX_TAG_VALUE}}}$"},
            "description": f"labels in fal's usage reports (X-Fal-Tags); keys and values at most "
            f"{MAX_TAGS_BYTES} bytes together",
        },
    },
    required=[],
)
JOB_DETAIL = {
    **JOB_SUMMARY,
    "input": ref("JsonObject"),
    "status_url": nullable(TEXT),
    "response_url": nullable(TEXT),
    "cancel_url": nullable(TEXT),
    "result": ANY,
    "files": {"type": "array", "items": ref("ResultFile")},
    "events": {"type": "array", "items": ref("JobEvent")},
    "options": {"anyOf": [ref("FalOptions"), {"type": "null"}]},
    "priority": {"type": "string", "enum": list(PRIORITIES)},
}
RESULT_FILE = {
    "id": INT,
    "path": TEXT,
    "url": TEXT,
    "content_type": nullable(TEXT),
    "file_name": nullable(TEXT),
    "file_size": nullable(INT),
    "width": nullable(INT),
    "height": nullable(INT),
    # falbridge's own copy (docs/storage.md): null status while not stored (yet, or at all).
    "fal_url": TEXT,
    "status": {"type": ["string", "null"], "enum": ["stored", "missing", None]},
    "missing_reason": nullable(TEXT),
    "sha256": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
    "size": nullable(INT),
    "sniffed_type": nullable(TEXT),
    "stored_at": nullable(TIME),
    "download_url": nullable(TEXT),
}
JOB_EVENT = {
    "at": TIME,
    "source": {"type": "string", "enum": [s.value for s in EventSource]},
    "from_status": {"type": ["string", "null"], "enum": [*ALL_STATUSES, None]},
    "to_status": {"type": "string", "enum": list(ALL_STATUSES)},
    "detail": ANY,
}
FAL_READING = {
    # fal's own word (IN_QUEUE, IN_PROGRESS, COMPLETED, or one added since); null when fal
    # was not asked (the job is finished or not at fal yet) or did not answer.
    "status": nullable(TEXT),
    "queue_position": nullable(INT),
    "logs": {
        "type": "array",
        "items": object_schema({"message": TEXT, "timestamp": nullable(TEXT), "level": nullable(TEXT)}),
    },
    "unavailable": nullable(TEXT),
}

EVF_SAM_INPUT = object_schema(
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
REGION_PROPOSAL_INPUT = object_schema({"image_url": {"type": "string", "pattern": FILE_URL}})
