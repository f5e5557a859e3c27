"""`falbridge.submit_batch`, in process: many jobs in one call, as POST /api/jobs/batch
takes them (each a mapping with the fields of POST /api/jobs); `falbridge.Client` has the
same call over the HTTP API."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from falbridge.batch_values import BatchResult
from falbridge.models.serialize import job_detail
from falbridge.models.states import EventSource
from falbridge.worker import actions
from falbridge.worker.accept import Accepted, SubmitItem
from falbridge.worker.accept_batch import MAX_BATCH, Refusal
from falbridge.worker.notify.job_callbacks import JobCallbacks

CALLBACKS = ("notify_url", "on_complete", "on_complete_queue")
FIELDS = ("endpoint_id", "input", "external_id", "metadata", *CALLBACKS, "options")


def submit_batch(jobs: Iterable[Mapping[str, Any]]) -> list[BatchResult]:
    """Store many jobs and queue their submits: one result per job, in order, each the
    job or why it was refused (nothing stored for it; the others go on). A job is a
    mapping with the fields of `submit` (`endpoint_id`, `input`, `external_id`,
    `metadata`, `notify_url`, `on_complete`, `on_complete_queue`) and `options`, fal's
    options as POST /api/jobs takes them. At most 1,000 jobs a call (ValueError)."""
    return submit_batch_as(EventSource.API, jobs)


def submit_batch_as(source: EventSource, jobs: Iterable[Mapping[str, Any]]) -> list[BatchResult]:
    """`submit_batch`, recording who asked (the CLI says `cli` in the jobs' history)."""
    given = list(jobs)
    if len(given) > MAX_BATCH:
        raise ValueError(f"at most {MAX_BATCH} jobs in a batch (got {len(given)})")
    results: list[BatchResult | None] = [None] * len(given)
    items, places = [], []
    for place, job in enumerate(given):
        item = _item(job)
        if isinstance(item, Refusal):
            results[place] = BatchResult(None, False, item.to_json())
        else:
            items.append(item)
            places.append(place)
    for place, outcome in zip(places, actions.submit_batch(items, source=source), strict=True):
        results[place] = _result(outcome)
    return [result for result in results if result is not None]


def _item(job: Mapping[str, Any]) -> SubmitItem | Refusal:
    if not isinstance(job, Mapping):
        return _invalid([{"field": "(job)", "message": "must be a mapping of submit's fields"}])
    errors = [{"field": str(name)[:64], "message": "unknown field"} for name in job if name not in FIELDS]
    if not isinstance(job.get("endpoint_id"), str):
        errors.append({"field": "endpoint_id", "message": "required, a string"})
    if not isinstance(job.get("input"), Mapping):
        errors.append({"field": "input", "message": "required, a mapping"})
    external_id, metadata = job.get("external_id"), job.get("metadata")
    if external_id is not None and (not isinstance(external_id, str) or not 1 <= len(external_id) <= 255):
        errors.append({"field": "external_id", "message": "a string of 1 to 255 characters, or None"})
    if metadata is not None and not isinstance(metadata, Mapping):
        errors.append({"field": "metadata", "message": "a mapping, or None"})
    if errors:
        return _invalid(errors)
    callbacks = {name: job.get(name) for name in CALLBACKS}
    return SubmitItem(
        job["endpoint_id"],
        job["input"],
        external_id=job.get("external_id"),
        metadata=job.get("metadata"),
        callbacks=JobCallbacks(**callbacks) if any(v is not None for v in callbacks.values()) else None,
        options=job.get("options"),
    )


def _invalid(errors: list[dict[str, str]]) -> Refusal:
    message = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return Refusal(422, "invalid_request", message, errors)


def _result(outcome: Accepted | Refusal) -> BatchResult:
    if isinstance(outcome, Refusal):
        return BatchResult(None, False, outcome.to_json())
    return BatchResult.from_json({"job": job_detail(outcome.job), "created": outcome.created})
