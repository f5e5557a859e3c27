"""One job's page: its pictures (webhooks.dashboard.pictures), timeline, fal's logs while it
runs, result, files, the callbacks received and the events sent for it."""

from __future__ import annotations

import json
import uuid
from typing import Any

from flask import g, render_template
from flask.typing import ResponseReturnValue

from falbridge.models.db import transaction
from falbridge.models.deliveries import DeliveryFilters, delivery_summary, list_deliveries
from falbridge.models.jobs import input_files_of
from falbridge.models.serialize import files_dicts
from falbridge.webhooks.api.jobs import resolved_job_id
from falbridge.webhooks.api.params import not_found
from falbridge.webhooks.dashboard.blueprint import dashboard
from falbridge.webhooks.dashboard.pictures import pictures
from falbridge.worker import actions
from falbridge.worker.notify.manage import job_delivery_log
from falbridge.worker.watch import FalReading, watch

SHOWN_DELIVERIES = 100


@dashboard.get("/jobs/<job_id>")
def show_job(job_id: str) -> ResponseReturnValue:
    full_id = resolved_job_id(job_id)
    reading = _fal_reading(uuid.UUID(full_id))  # first: a watch may move the job on
    job = actions.get(full_id, full=True)
    if job is None:
        raise not_found(job_id)
    drawn = pictures(job)
    g.image_sources = drawn.image_sources()
    with transaction() as s:
        rows, _ = list_deliveries(s, DeliveryFilters(job_id=job.id), limit=SHOWN_DELIVERIES)
        received = [delivery_summary(row) for row in rows]
    return render_template(
        "dashboard/job.html",
        job=job,
        pictures=drawn,
        fal=reading,
        events=sorted(job.events, key=lambda e: e.seq),
        files=files_dicts(job),
        input_files=input_files_of(job),
        deliveries=received,
        sent=job_delivery_log(job.id),
        input_json=_pretty(job.input),
        metadata_json=_pretty(job.meta),
        options_json=_pretty(job.options),
        result_json=_pretty(job.result),
        error_detail_json=_pretty(job.error_detail),
    )


def _fal_reading(job_id: uuid.UUID) -> FalReading:
    """fal's status with logs while the job runs (worker.watch); a page still renders when
    fal or its settings are out of reach, saying why."""
    try:
        return watch(job_id)
    except (OSError, ValueError) as exc:
        return FalReading(unavailable=f"fal could not be asked: {type(exc).__name__}")


def _pretty(value: Any) -> str | None:
    # Shown in a <pre>, autoescaped like every other value of the job.
    return None if value is None else json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
