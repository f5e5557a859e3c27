"""The dashboard's actions, POST forms with the session's CSRF token (checked in
webhooks.dashboard.guard): cancel a job, replay one of its events, re-apply a delivery.
Each calls what the API calls, then 303s back to the job page with a flash message."""

from __future__ import annotations

from flask import flash, redirect, url_for
from flask.typing import ResponseReturnValue

from falbridge.models.db import transaction
from falbridge.models.deliveries import get_delivery
from falbridge.models.tables import JobEvent
from falbridge.webhooks.api.jobs import resolved_job_id
from falbridge.webhooks.api.params import not_found
from falbridge.webhooks.dashboard.blueprint import dashboard
from falbridge.webhooks.errors import ApiError
from falbridge.worker import actions
from falbridge.worker.cancel import Cancellation
from falbridge.worker.notify.manage import replay_event

MAX_ID_DIGITS = 18


@dashboard.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> ResponseReturnValue:
    full_id = resolved_job_id(job_id)
    job, outcome = actions.cancel(full_id)
    if job is None:
        raise not_found(job_id)
    if outcome is Cancellation.ALREADY_TERMINAL:
        flash(f"not cancelled: the job is already {job.status}", "warning")
    elif outcome is Cancellation.CANCELLED:
        flash("cancelled: the job had not reached fal", "success")
    else:
        flash(f"cancel requested from fal, which decides; the job is {job.status} for now", "success")
    return _back_to(full_id)


@dashboard.post("/jobs/<job_id>/events/<event_id>/replay")
def replay_job_event(job_id: str, event_id: str) -> ResponseReturnValue:
    full_id = resolved_job_id(job_id)
    number = _number(event_id, "event")
    with transaction() as s:
        event = s.get(JobEvent, number)
        belongs = event is not None and str(event.job_id) == full_id
    if not belongs:
        raise ApiError(404, "not_found", f"job {full_id} has no event {event_id[:32]!r}")
    ids = replay_event(number) or []
    flash(f"event {number} replayed: {len(ids)} deliveries queued", "success")
    return _back_to(full_id)


@dashboard.post("/jobs/<job_id>/deliveries/<delivery_id>/reapply")
def reapply_delivery(job_id: str, delivery_id: str) -> ResponseReturnValue:
    full_id = resolved_job_id(job_id)
    number = _number(delivery_id, "delivery")
    with transaction() as s:
        delivery = get_delivery(s, number)
        belongs = delivery is not None and str(delivery.job_id) == full_id
    reapplied = actions.reapply_delivery(number) if belongs else None
    if reapplied is None:
        raise ApiError(404, "not_found", f"job {full_id} has no delivery {delivery_id[:32]!r}")
    flash(f"delivery {number} re-applied: {reapplied.outcome}", "success")
    return _back_to(full_id)


def _number(text: str, noun: str) -> int:
    if text.isascii() and text.isdigit() and 1 <= len(text) <= MAX_ID_DIGITS and int(text) >= 1:
        return int(text)
    raise ApiError(404, "not_found", f"no {noun} with id {text[:32]!r}")


def _back_to(job_id: str) -> ResponseReturnValue:
    return redirect(url_for("dashboard.show_job", job_id=job_id), 303)
