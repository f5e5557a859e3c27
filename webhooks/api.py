"""The jobs API under /api: submit, list, show, cancel. JSON in, JSON out.

Every /api route needs a bearer token (webhooks.auth, checked before any body is read).
Every error is an ApiError, rendered by webhooks.errors as
{"error": {"code", "message", "details"}}; field problems carry details
[{"field": ..., "message": ...}], the same shape as InputValidationError.errors.
The OpenAPI document (webhooks.openapi) describes exactly these shapes and limits.
"""

from __future__ import annotations

import difflib
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, jsonify, request, url_for
from werkzeug.datastructures import MultiDict

from falbridge.models.db import transaction
from falbridge.models.jobs import MAX_PAGE, CursorError, JobFilters, decode_cursor, list_jobs
from falbridge.models.serialize import job_detail, job_summary
from falbridge.models.states import ALL_STATUSES
from falbridge.models.tables import Job
from falbridge.webhooks.errors import ApiError
from falbridge.webhooks.limits import json_size, parse_json, read_body
from falbridge.webhooks.openapi import MAX_CURSOR, MAX_EXTERNAL_ID, MAX_FILTER, document
from falbridge.worker import api as jobs
from falbridge.worker.fal import InputValidationError, validate_endpoint_id
from falbridge.worker.fal.inputs import KNOWN_ENDPOINTS

api = Blueprint("api", __name__, url_prefix="/api")

DEFAULT_PAGE = 50

SUBMIT_FIELDS = ("endpoint_id", "input", "external_id", "metadata")
LIST_PARAMS = ("status", "endpoint_id", "external_id", "created_after", "created_before", "limit", "cursor")
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


@api.get("/openapi.json")
def openapi_document():
    return jsonify(document(current_app.config["RECEIVER"]))


@api.post("/jobs")
def submit_job():
    fields = _submit_fields(_json_object())
    try:
        job, created = jobs.submit(
            fields["endpoint_id"],
            fields["input"],
            external_id=fields["external_id"],
            metadata=fields["metadata"],
        )
    except jobs.ExternalIdConflict as exc:
        raise ApiError(409, "external_id_conflict", str(exc), {"job_id": str(exc.job.id)}) from None
    except InputValidationError as exc:
        raise ApiError(422, "invalid_input", str(exc), exc.errors) from None
    location = url_for("api.show_job", job_id=str(job.id))
    # submit() hands back the job with its files and events loaded: no second read.
    return jsonify(job_detail(job)), 202 if created else 200, {"Location": location}


@api.get("/jobs")
def list_all_jobs():
    filters, limit, cursor = _list_args(request.args)
    with transaction() as s:
        rows, next_cursor = list_jobs(s, filters, limit=limit, cursor=cursor)
        page = [job_summary(job) for job in rows]
    return jsonify({"jobs": page, "next_cursor": next_cursor})


@api.get("/jobs/<job_id>")
def show_job(job_id: str):
    return jsonify(job_detail(_load(job_id)))


@api.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str):
    job, outcome = jobs.cancel(job_id)
    if job is None:
        raise _not_found(job_id)
    if outcome.startswith("already"):
        raise ApiError(
            409, "already_terminal", f"job {job.id} is already {job.status}", {"status": job.status}
        )
    return jsonify({"job": job_detail(_load(job.id)), "outcome": outcome}), 202


# -- parsing -----------------------------------------------------------------


def _load(job_id) -> Job:
    job = jobs.get(job_id, full=True)
    if job is None:
        raise _not_found(job_id)
    return job


def _not_found(job_id) -> ApiError:
    return ApiError(404, "not_found", f"no job with id {str(job_id)[:64]!r}")


def _json_object() -> dict[str, Any]:
    settings = current_app.config["RECEIVER"]
    if not _is_json(request.mimetype):
        raise ApiError(
            415, "unsupported_media_type", "request body must be JSON: send Content-Type: application/json"
        )
    raw = read_body(settings.max_api_body_bytes, "FALBRIDGE_MAX_API_BODY_BYTES")
    body = parse_json(raw, max_depth=settings.max_json_depth)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", f"request body must be a JSON object, got {_type(body)}")
    return body


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def _check_sizes(fields: dict[str, Any]) -> None:
    settings = current_app.config["RECEIVER"]
    for name, limit, setting in (
        ("input", settings.max_input_bytes, "FALBRIDGE_MAX_INPUT_BYTES"),
        ("metadata", settings.max_metadata_bytes, "FALBRIDGE_MAX_METADATA_BYTES"),
    ):
        if fields[name] is not None and json_size(fields[name]) > limit:
            raise ApiError(
                413,
                f"{name}_too_large",
                f"{name} is larger than the {limit}-byte limit (as compact JSON)",
                {"field": name, "limit_bytes": limit, "setting": setting},
            )


def _submit_fields(body: dict[str, Any]) -> dict[str, Any]:
    errors = [_unknown(name, SUBMIT_FIELDS, "field") for name in body if name not in SUBMIT_FIELDS]
    endpoint_id, payload = body.get("endpoint_id"), body.get("input")
    external_id, metadata = body.get("external_id"), body.get("metadata")
    if not isinstance(endpoint_id, str):
        errors.append(_field("endpoint_id", _required_or_type(body, "endpoint_id", "a string")))
    elif len(endpoint_id) > MAX_FILTER:
        errors.append(_field("endpoint_id", f"must be at most {MAX_FILTER} characters long"))
    if not isinstance(payload, dict):
        errors.append(_field("input", _required_or_type(body, "input", "a JSON object")))
    if external_id is not None and not isinstance(external_id, str):
        errors.append(_field("external_id", f"must be a string (got {_type(external_id)})"))
    elif external_id is not None and not 1 <= len(external_id) <= MAX_EXTERNAL_ID:
        errors.append(_field("external_id", f"must be 1 to {MAX_EXTERNAL_ID} characters long"))
    if metadata is not None and not isinstance(metadata, dict):
        errors.append(_field("metadata", f"must be a JSON object or null (got {_type(metadata)})"))
    if errors:
        raise _invalid_request(errors)
    _check_sizes({"input": payload, "metadata": metadata})
    try:
        validate_endpoint_id(endpoint_id)
    except ValueError as exc:
        raise ApiError(422, "invalid_endpoint_id", str(exc), [_field("endpoint_id", str(exc))]) from None
    return {
        "endpoint_id": endpoint_id,
        "input": _json_integers(endpoint_id, payload),
        "external_id": external_id,
        "metadata": metadata,
    }


def _json_integers(endpoint_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """JSON has one number type: 5.0 is the integer 5 (JSON Schema agrees), but the typed
    inputs are strict models that refuse a float for an int field. Their fields are flat,
    and a strict float field still takes an int, so converting is safe there; pass-through
    inputs are left exactly as sent."""
    if endpoint_id not in KNOWN_ENDPOINTS:
        return payload
    return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in payload.items()}


def _list_args(args: MultiDict) -> tuple[JobFilters, int, str | None]:
    errors = [_unknown(name, LIST_PARAMS, "parameter") for name in args if name not in LIST_PARAMS]
    errors += [_field(name, "given more than once") for name in args if len(args.getlist(name)) > 1]
    # An empty value means "not given", as an HTML form would send it.
    value = {name: args.get(name) or None for name in LIST_PARAMS}
    for name in LIST_PARAMS:
        # NUL: PostgreSQL refuses it in a query parameter (a 500, not "no match").
        if value[name] is not None and "\x00" in value[name]:
            errors.append(_field(name, "must not contain a NUL character"))
            value[name] = None
    for name, most in (("endpoint_id", MAX_FILTER), ("external_id", MAX_FILTER), ("cursor", MAX_CURSOR)):
        if value[name] is not None and len(value[name]) > most:
            errors.append(_field(name, f"must be at most {most} characters long"))
            value[name] = None
    if value["status"] is not None and value["status"] not in ALL_STATUSES:
        errors.append(_field("status", f"must be one of {', '.join(ALL_STATUSES)}"))
    dates = {}
    for name in ("created_after", "created_before"):
        try:
            dates[name] = _parse_time(value[name])
        except ValueError:
            errors.append(_field(name, "must be an ISO-8601 date or time, e.g. 2024-05-01T12:00:00Z"))
    limit = _parse_limit(value["limit"], errors)
    if errors:
        raise _invalid_request(errors)
    if value["cursor"] is not None:
        _check_cursor(value["cursor"])
    filters = JobFilters(
        status=value["status"], endpoint_id=value["endpoint_id"], external_id=value["external_id"], **dates
    )
    return filters, limit, value["cursor"]


def _check_cursor(cursor: str) -> None:
    try:
        at, _ = decode_cursor(cursor)
        # The database layer converts to UTC; a crafted instant outside datetime's range
        # (year 1 with a positive offset) would overflow there, as a 500.
        at.astimezone(UTC)
    # AttributeError: decode_cursor lets a crafted cursor holding a number as the id through.
    # RecursionError: a crafted cursor can hold deeply nested JSON.
    except (CursorError, AttributeError, RecursionError, OverflowError):
        raise ApiError(
            422,
            "invalid_cursor",
            "cursor is not one this API issued",
            [_field("cursor", "not a cursor from a previous page")],
        ) from None


def _parse_limit(raw: str | None, errors: list[dict[str, str]]) -> int:
    # Only plain digits: int() would also take "+5", " 5" and "5_0".
    if raw is None:
        return DEFAULT_PAGE
    if raw.isascii() and raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= MAX_PAGE:
        return int(raw)
    errors.append(_field("limit", f"must be an integer from 1 to {MAX_PAGE}"))
    return DEFAULT_PAGE


def _parse_time(raw: str | None) -> datetime | None:
    """ISO-8601; a time without an offset is taken as UTC."""
    if raw is None:
        return None
    at = datetime.fromisoformat(raw)
    if at.tzinfo is None:
        return at.replace(tzinfo=UTC)
    try:
        return at.astimezone(UTC)
    except OverflowError:
        # A valid instant just outside datetime's range (0001-01-01T00:00+05:00): as a
        # bound it means "since forever" or "until forever", so clamp rather than refuse.
        return _EARLIEST if at.year == 1 else _LATEST


def _field(name: str, message: str) -> dict[str, str]:
    return {"field": name, "message": message}


def _unknown(name: str, known: tuple[str, ...], noun: str) -> dict[str, str]:
    name = name[:64]  # a key can be megabytes long: neither echo it nor diff it whole
    close = difflib.get_close_matches(name, known, n=1)
    return _field(name, f"unknown {noun}" + (f" (did you mean {close[0]!r}?)" if close else ""))


def _required_or_type(body: dict[str, Any], name: str, expected: str) -> str:
    if name not in body:
        return "field required"
    return f"must be {expected} (got {_type(body[name])})"


def _invalid_request(errors: list[dict[str, str]]) -> ApiError:
    errors = sorted(errors, key=lambda e: e["field"])
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return ApiError(422, "invalid_request", summary, errors)


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
