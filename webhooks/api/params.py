"""Reading /api request bodies, checked field by field, so every problem is a 4xx naming the
field (details [{"field", "message"}], the shape of InputValidationError.errors: at most
MAX_ERRORS_REPORTED of them, the message counting the rest). The listing's query string is
webhooks.api.list_query, with the same helpers. The OpenAPI document states the same rules."""

from __future__ import annotations

import difflib
from typing import Any

from flask import request

from falbridge import strict_json
from falbridge.webhooks import current
from falbridge.webhooks.api.schemas import MAX_EXTERNAL_ID, MAX_FILTER
from falbridge.webhooks.errors import ApiError
from falbridge.webhooks.limits import parse_json, read_body
from falbridge.worker.fal import validate_endpoint_id
from falbridge.worker.fal.inputs import KNOWN_ENDPOINTS, MAX_ERRORS_REPORTED, summarize_errors
from falbridge.worker.fal.job_options import InvalidOptions, checked_options
from falbridge.worker.notify.job_callbacks import JobCallbacks

CALLBACK_FIELDS = ("notify_url", "on_complete", "on_complete_queue")

SUBMIT_FIELDS = ("endpoint_id", "input", "external_id", "metadata", *CALLBACK_FIELDS, "options")


def not_found(job_id: object) -> ApiError:
    return ApiError(404, "not_found", f"no job with id {str(job_id)[:64]!r}")


def json_object() -> dict[str, Any]:
    """The request body: a JSON object within the API's limits."""
    limits = current.config().api
    if not _is_json(request.mimetype):
        raise ApiError(
            415, "unsupported_media_type", "request body must be JSON: send Content-Type: application/json"
        )
    raw = read_body(limits.max_body_bytes, "FALBRIDGE_MAX_API_BODY_BYTES")
    body = parse_json(
        raw, max_depth=limits.max_json_depth, max_keys=limits.max_json_keys, max_items=limits.max_json_items
    )
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", f"request body must be a JSON object, got {_type(body)}")
    return body


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def _check_sizes(fields: dict[str, Any]) -> None:
    limits = current.config().api
    for name, limit, setting in (
        ("input", limits.max_input_bytes, "FALBRIDGE_MAX_INPUT_BYTES"),
        ("metadata", limits.max_metadata_bytes, "FALBRIDGE_MAX_METADATA_BYTES"),
    ):
        if fields[name] is not None and strict_json.compact_size(fields[name]) > limit:
            raise ApiError(
                413,
                f"{name}_too_large",
                f"{name} is larger than the {limit}-byte limit (as compact JSON)",
                {"field": name, "limit_bytes": limit, "setting": setting},
            )


def submit_fields(body: dict[str, Any]) -> dict[str, Any]:
    errors = unknown_names([name for name in body if name not in SUBMIT_FIELDS], SUBMIT_FIELDS, "field")
    endpoint_id, payload = body.get("endpoint_id"), body.get("input")
    external_id, metadata = body.get("external_id"), body.get("metadata")
    if not isinstance(endpoint_id, str):
        errors.append(field_error("endpoint_id", _required_or_type(body, "endpoint_id", "a string")))
    elif len(endpoint_id) > MAX_FILTER:
        errors.append(field_error("endpoint_id", f"must be at most {MAX_FILTER} characters long"))
    if not isinstance(payload, dict):
        errors.append(field_error("input", _required_or_type(body, "input", "a JSON object")))
    if external_id is not None and not isinstance(external_id, str):
        errors.append(field_error("external_id", f"must be a string (got {_type(external_id)})"))
    elif external_id is not None and not 1 <= len(external_id) <= MAX_EXTERNAL_ID:
        errors.append(field_error("external_id", f"must be 1 to {MAX_EXTERNAL_ID} characters long"))
    if metadata is not None and not isinstance(metadata, dict):
        errors.append(field_error("metadata", f"must be a JSON object or null (got {_type(metadata)})"))
    for name in CALLBACK_FIELDS:
        if body.get(name) is not None and not isinstance(body[name], str):
            errors.append(field_error(name, f"must be a string or null (got {_type(body[name])})"))
    if errors:
        raise invalid_request(errors)
    assert isinstance(endpoint_id, str) and isinstance(payload, dict)  # else an error was raised
    _check_sizes({"input": payload, "metadata": metadata})
    try:
        validate_endpoint_id(endpoint_id)
    except ValueError as exc:
        raise ApiError(422, "invalid_endpoint_id", str(exc), [field_error("endpoint_id", str(exc))]) from None
    try:
        options = checked_options(body.get("options"))
    except InvalidOptions as exc:
        raise invalid_options(exc) from None
    return {
        "endpoint_id": endpoint_id,
        "input": _json_integers(endpoint_id, payload),
        "external_id": external_id,
        "metadata": metadata,
        "callbacks": JobCallbacks(**{name: body.get(name) for name in CALLBACK_FIELDS}),
        "options": options,
    }


def invalid_options(exc: InvalidOptions) -> ApiError:
    return ApiError(422, "invalid_options", str(exc), exc.errors)


def _json_integers(endpoint_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """JSON has one number type: 5.0 is the integer 5 (JSON Schema agrees), but the typed
    inputs are strict models that refuse a float for an int field. Their fields are flat,
    and a strict float field still takes an int, so converting is safe there; pass-through
    inputs are left exactly as sent."""
    if endpoint_id not in KNOWN_ENDPOINTS:
        return payload
    return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in payload.items()}


def field_error(name: str, message: str) -> dict[str, str]:
    return {"field": name, "message": message}


def unknown_names(names: list[str], known: tuple[str, ...], noun: str) -> list[dict[str, str]]:
    """An error per name; a close match suggested only for the first ones by name, the only
    ones that can be reported (difflib is slow, and there may be thousands)."""
    errors = []
    # A key can be megabytes long: neither echo it nor diff it whole.
    for rank, name in enumerate(sorted(name[:64] for name in names)):
        close = difflib.get_close_matches(name, known, n=1) if rank < MAX_ERRORS_REPORTED else []
        errors.append(
            field_error(name, f"unknown {noun}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        )
    return errors


def _required_or_type(body: dict[str, Any], name: str, expected: str) -> str:
    if name not in body:
        return "field required"
    return f"must be {expected} (got {_type(body[name])})"


def invalid_request(errors: list[dict[str, str]]) -> ApiError:
    """422 with the first MAX_ERRORS_REPORTED errors by field, and a count of the rest."""
    shown = sorted(errors, key=lambda e: e["field"])[:MAX_ERRORS_REPORTED]
    return ApiError(422, "invalid_request", summarize_errors(shown, len(errors) - len(shown)), shown)


def _type(value: Any) -> str:
    # The type only, never the value: it may be a multi-megabyte data URI.
    names = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)
