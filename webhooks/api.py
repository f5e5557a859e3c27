"""The jobs API under /api: submit, list, show, cancel. JSON in, JSON out.

Every route lives on the `api` blueprint, so authentication can later be one
`@api.before_request` hook. Every error is an ApiError, rendered by webhooks.errors as
{"error": {"code", "message", "details"}}; field problems carry details
[{"field": ..., "message": ...}], the same shape as InputValidationError.errors.
"""
from __future__ import annotations

import difflib
import json
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, jsonify, request, url_for
from werkzeug.datastructures import MultiDict

from models.db import transaction
from models.jobs import MAX_PAGE, CursorError, JobFilters, decode_cursor, list_jobs
from models.states import ALL_STATUSES
from models.tables import Job
from webhooks.errors import ApiError
from models.serialize import job_detail, job_summary
from worker import api as jobs
from worker.fal import InputValidationError, validate_endpoint_id

api = Blueprint("api", __name__, url_prefix="/api")

# Room for an 8 MiB image inlined as a base64 data URI (worker.datauri's limit) plus JSON.
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_EXTERNAL_ID = 255
DEFAULT_PAGE = 50

SUBMIT_FIELDS = ("endpoint_id", "input", "external_id", "metadata")
LIST_PARAMS = ("status", "endpoint_id", "external_id", "created_after", "created_before",
               "limit", "cursor")


@api.post("/jobs")
def submit_job():
    fields = _submit_fields(_json_object())
    try:
        job, created = jobs.submit(fields["endpoint_id"], fields["input"],
                                   external_id=fields["external_id"], metadata=fields["metadata"])
    except jobs.ExternalIdConflict as exc:
        raise ApiError(409, "external_id_conflict", str(exc), {"job_id": str(exc.job.id)}) from None
    except InputValidationError as exc:
        raise ApiError(422, "invalid_input", str(exc), exc.errors) from None
    location = url_for("api.show_job", job_id=str(job.id))
    return jsonify(job_detail(_load(job.id))), 202 if created else 200, {"Location": location}


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
        raise ApiError(409, "already_terminal", f"job {job.id} is already {job.status}",
                       {"status": job.status})
    return jsonify({"job": job_detail(_load(job.id)), "outcome": outcome}), 202


# -- parsing -----------------------------------------------------------------

def _load(job_id) -> Job:
    job = jobs.get(job_id, full=True)
    if job is None:
        raise _not_found(job_id)
    return job


def _not_found(job_id) -> ApiError:
    return ApiError(404, "not_found", f"no job with id {str(job_id)[:64]!r}")


def _reject_constant(name: str):
    # NaN and Infinity are not JSON; PostgreSQL's jsonb would refuse them after the fact.
    raise ValueError(f"{name} is not valid JSON")


def _json_object() -> dict[str, Any]:
    request.max_content_length = MAX_BODY_BYTES  # over it: werkzeug's 413, as JSON
    raw = request.get_data(cache=False)
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", f"request body must be a JSON object, got {_type(body)}")
    return body


def _submit_fields(body: dict[str, Any]) -> dict[str, Any]:
    errors = [_unknown(name, SUBMIT_FIELDS, "field") for name in body if name not in SUBMIT_FIELDS]
    endpoint_id, payload = body.get("endpoint_id"), body.get("input")
    external_id, metadata = body.get("external_id"), body.get("metadata")
    if not isinstance(endpoint_id, str):
        errors.append(_field("endpoint_id", _required_or_type(body, "endpoint_id", "a string")))
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
    try:
        validate_endpoint_id(endpoint_id)
    except ValueError as exc:
        raise ApiError(422, "invalid_endpoint_id", str(exc), [_field("endpoint_id", str(exc))]) from None
    return {"endpoint_id": endpoint_id, "input": payload, "external_id": external_id,
            "metadata": metadata}


def _list_args(args: MultiDict) -> tuple[JobFilters, int, str | None]:
    errors = [_unknown(name, LIST_PARAMS, "parameter") for name in args if name not in LIST_PARAMS]
    errors += [_field(name, "given more than once") for name in args if len(args.getlist(name)) > 1]
    # An empty value means "not given", as an HTML form would send it.
    value = {name: args.get(name) or None for name in LIST_PARAMS}
    if value["status"] is not None and value["status"] not in ALL_STATUSES:
        errors.append(_field("status", f"must be one of {', '.join(ALL_STATUSES)}"))
    dates = {}
    for name in ("created_after", "created_before"):
        try:
            dates[name] = _parse_time(value[name])
        except (ValueError, OverflowError):
            errors.append(_field(name, "must be an ISO-8601 date or time, e.g. 2024-05-01T12:00:00Z"))
    limit = _parse_limit(value["limit"], errors)
    if errors:
        raise _invalid_request(errors)
    if value["cursor"] is not None:
        try:
            decode_cursor(value["cursor"])
        # AttributeError: decode_cursor lets a crafted cursor holding a number as the id through.
        except (CursorError, AttributeError):
            raise ApiError(422, "invalid_cursor", "cursor is not one this API issued",
                           [_field("cursor", "not a cursor from a previous page")]) from None
    filters = JobFilters(status=value["status"], endpoint_id=value["endpoint_id"],
                         external_id=value["external_id"], **dates)
    return filters, limit, value["cursor"]


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
        return at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc)


def _field(name: str, message: str) -> dict[str, str]:
    return {"field": name, "message": message}


def _unknown(name: str, known: tuple[str, ...], noun: str) -> dict[str, str]:
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
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
             dict: "object", type(None): "null"}
    return names.get(type(value), type(value).__name__)
