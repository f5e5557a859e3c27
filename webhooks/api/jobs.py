"""The jobs API under /api: submit, list, show, live status, cancel. JSON in, JSON out.

Every /api route needs a bearer token (webhooks.auth, checked before any body is read).
Every error is an ApiError, rendered by webhooks.errors as
{"error": {"code", "message", "details"}}; field problems carry details
[{"field": ..., "message": ...}], the same shape as InputValidationError.errors.
The OpenAPI document (webhooks.openapi) describes exactly these shapes and limits.
"""

from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, request, url_for
from flask.typing import ResponseReturnValue

from falbridge.models.db import transaction
from falbridge.models.feed import jobs_page
from falbridge.models.jobs import AmbiguousPrefix, resolve_job_id
from falbridge.models.serialize import job_detail, job_summary
from falbridge.models.tables import Job
from falbridge.webhooks import current
from falbridge.webhooks.api.list_query import list_query
from falbridge.webhooks.api.openapi import document
from falbridge.webhooks.api.params import json_object, not_found, submit_fields
from falbridge.webhooks.errors import ApiError
from falbridge.worker import actions
from falbridge.worker.accept import UploadFailed
from falbridge.worker.accept_batch import refusal
from falbridge.worker.cancel import Cancellation
from falbridge.worker.watch import watch

api = Blueprint("api", __name__, url_prefix="/api")


@api.get("/openapi.json")
def openapi_document() -> ResponseReturnValue:
    return jsonify(document(current.config().api, current.config().upload))


@api.post("/jobs")
def submit_job() -> ResponseReturnValue:
    fields = submit_fields(json_object())
    try:
        job, created = actions.submit(
            fields["endpoint_id"],
            fields["input"],
            external_id=fields["external_id"],
            metadata=fields["metadata"],
            callbacks=fields["callbacks"],
            options=fields["options"],
        )
    except (ValueError, UploadFailed) as exc:
        refused = refusal(exc)
        raise ApiError(refused.status, refused.code, refused.message, refused.details) from None
    location = url_for("api.show_job", job_id=str(job.id))
    # submit() hands back the job with its files and events loaded: no second read.
    return jsonify(job_detail(job)), 202 if created else 200, {"Location": location}


@api.get("/jobs")
def list_all_jobs() -> ResponseReturnValue:
    query = list_query(request.args)
    settle_s = current.config().api.feed_settle_s
    with transaction() as s:
        rows, next_cursor = jobs_page(
            s,
            query.filters,
            limit=query.limit,
            cursor=query.cursor,
            updated_after=query.updated_after,
            settle_s=settle_s,
        )
        page = [job_summary(job) for job in rows]
    return jsonify({"jobs": page, "next_cursor": next_cursor})


@api.get("/jobs/<job_id>")
def show_job(job_id: str) -> ResponseReturnValue:
    return jsonify(job_detail(_load(resolved_job_id(job_id))))


@api.get("/jobs/<job_id>/live")
def live_job(job_id: str) -> ResponseReturnValue:
    full_id = resolved_job_id(job_id)
    reading = watch(uuid.UUID(full_id))  # asks fal now: only what someone watches costs a call
    return jsonify({**job_detail(_load(full_id)), "fal": reading.to_json()})


@api.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> ResponseReturnValue:
    job, outcome = actions.cancel(resolved_job_id(job_id))
    if job is None:
        raise not_found(job_id)
    if outcome is Cancellation.ALREADY_TERMINAL:
        raise ApiError(
            409, "already_terminal", f"job {job.id} is already {job.status}", {"status": job.status}
        )
    # The job as GET shows it, with what the cancel did beside it.
    return jsonify({**job_detail(_load(str(job.id))), "outcome": outcome.value}), 202


def resolved_job_id(job_id: str) -> str:
    """The full id of the job named by an id or a unique prefix of it."""
    with transaction() as s:
        try:
            found = resolve_job_id(s, job_id)
        except AmbiguousPrefix:
            raise ApiError(
                409, "ambiguous_job_id", f"more than one job id starts with {job_id[:64]!r}"
            ) from None
    if found is None:
        raise not_found(job_id)
    return str(found)


def _load(job_id: str) -> Job:
    job = actions.get(job_id, full=True)
    if job is None:
        raise not_found(job_id)
    return job
