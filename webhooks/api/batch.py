"""POST /api/jobs/batch: up to MAX_BATCH bodies of POST /api/jobs in one request.

200 with one result per job, in order: `{"job": <the job>, "created": bool}`, or
`{"error": {"status", "code", "message", "details"}}`, the answer POST /api/jobs would
have given that body alone. A bad job does not stop the others; the good ones are stored
in one transaction (worker.accept_batch) and their submits enqueued after its commit.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from falbridge.models.serialize import job_detail
from falbridge.webhooks.api.params import (
    field_error,
    invalid_request,
    json_object,
    submit_fields,
    unknown_names,
)
from falbridge.webhooks.errors import ApiError
from falbridge.worker import actions
from falbridge.worker.accept import Accepted, SubmitItem
from falbridge.worker.accept_batch import MAX_BATCH

batch_api = Blueprint("batch_api", __name__, url_prefix="/api/jobs")


# /api/jobs/batch also matches GET /api/jobs/<job_id>: Flask's own OPTIONS answer would
# advertise that GET here, so this route answers OPTIONS itself.
@batch_api.route("/batch", methods=["POST", "OPTIONS"], provide_automatic_options=False)
def submit_batch() -> ResponseReturnValue:
    if request.method == "OPTIONS":
        return "", 200, {"Allow": "OPTIONS, POST"}
    jobs = _jobs(json_object())
    results: list[dict[str, Any]] = [{} for _ in jobs]
    items, places = [], []
    for place, body in enumerate(jobs):
        try:
            items.append(_item(body))
            places.append(place)
        except ApiError as exc:
            results[place] = {"error": _error(exc.status, exc.code, exc.message, exc.details)}
    for place, outcome in zip(places, actions.submit_batch(items), strict=True):
        if isinstance(outcome, Accepted):
            results[place] = {"job": job_detail(outcome.job), "created": outcome.created}
        else:
            results[place] = {"error": outcome.to_json()}
    return jsonify({"results": results})


def _jobs(body: dict[str, Any]) -> list[Any]:
    errors = unknown_names([name for name in body if name != "jobs"], ("jobs",), "field")
    jobs = body.get("jobs")
    if "jobs" not in body:
        errors.append(field_error("jobs", "field required"))
    elif not isinstance(jobs, list):
        errors.append(field_error("jobs", "must be an array of POST /api/jobs bodies"))
    if errors:
        raise invalid_request(errors)
    assert isinstance(jobs, list)
    if len(jobs) > MAX_BATCH:
        raise ApiError(
            413,
            "batch_too_large",
            f"at most {MAX_BATCH} jobs in a batch (got {len(jobs)}): send them in several",
            {"field": "jobs", "limit": MAX_BATCH},
        )
    return jobs


def _item(body: Any) -> SubmitItem:
    if not isinstance(body, dict):
        raise invalid_request([field_error("(job)", "must be a JSON object, the body of POST /api/jobs")])
    fields = submit_fields(body)
    return SubmitItem(
        fields["endpoint_id"],
        fields["input"],
        external_id=fields["external_id"],
        metadata=fields["metadata"],
        callbacks=fields["callbacks"],
        options=fields["options"],
    )


def _error(status: int, code: str, message: str, details: Any) -> dict[str, Any]:
    return {"status": status, "code": code, "message": message, "details": details}
