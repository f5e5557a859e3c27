"""The job list: the API's filters and pages (webhooks.api.list_query, models.feed), the free
text `q`, counts per status, and the small JSON endpoint the page polls for live rows."""

from __future__ import annotations

import dataclasses
import uuid

from flask import jsonify, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict

from falbridge.models.db import transaction
from falbridge.models.feed import jobs_page
from falbridge.models.listing import status_counts, statuses_of
from falbridge.models.serialize import iso, job_summary
from falbridge.models.states import ALL_STATUSES, JobStatus
from falbridge.webhooks import current
from falbridge.webhooks.api.list_query import LIST_PARAMS, list_query
from falbridge.webhooks.api.params import field_error, invalid_request
from falbridge.webhooks.api.schemas import MAX_FILTER
from falbridge.webhooks.dashboard.blueprint import dashboard

MAX_LIVE_IDS = 100


@dashboard.get("/jobs")
def list_jobs() -> ResponseReturnValue:
    args = MultiDict(request.args)
    q = _free_text(args.poplist("q"))
    query = list_query(args)  # the API's own checks: a 422 page naming each bad parameter
    filters = dataclasses.replace(query.filters, q=q)
    with transaction() as s:
        rows, next_cursor = jobs_page(
            s,
            filters,
            limit=query.limit,
            cursor=query.cursor,
            updated_after=query.updated_after,
            settle_s=current.config().api.feed_settle_s,
        )
        jobs = [job_summary(row) for row in rows]
        counts = status_counts(s, filters)
    shown = {name: request.args.get(name, "") for name in (*LIST_PARAMS, "q")}
    # Every filter given (metadata[<key>] too) carries over to the next page and the counts' links.
    kept = {k: v for k, v in request.args.items() if v and k != "cursor"}
    return render_template(
        "dashboard/jobs.html",
        jobs=jobs,
        counts=counts,
        statuses=ALL_STATUSES,
        shown=shown,
        next_args=kept | {"cursor": next_cursor} if next_cursor else None,
        kept_filters={k: v for k, v in kept.items() if k != "status"},
        terminal={s.value for s in JobStatus if s.is_terminal},
    )


def _free_text(values: list[str]) -> str | None:
    errors = []
    if len(values) > 1:
        errors.append(field_error("q", "given more than once"))
    text = values[0] if values else ""
    if "\x00" in text:
        errors.append(field_error("q", "must not contain a NUL character"))
    if len(text) > MAX_FILTER:
        errors.append(field_error("q", f"must be at most {MAX_FILTER} characters long"))
    if errors:
        raise invalid_request(errors)
    return text.strip() or None


@dashboard.get("/jobs/live")
def live_statuses() -> ResponseReturnValue:
    """{"jobs": {id: {status, updated_at, terminal}}} for the ids asked (comma-separated)."""
    raw = [part for part in request.args.get("ids", "").split(",") if part]
    if len(raw) > MAX_LIVE_IDS:
        raise invalid_request([field_error("ids", f"at most {MAX_LIVE_IDS} job ids")])
    try:
        ids = [uuid.UUID(part) for part in raw]
    except ValueError:
        raise invalid_request([field_error("ids", "must be full job ids, comma-separated")]) from None
    with transaction() as s:
        rows = statuses_of(s, ids)
    found = {
        str(row.id): {
            "status": row.status,
            "updated_at": iso(row.updated_at),
            "terminal": JobStatus(row.status).is_terminal,
        }
        for row in rows
    }
    return jsonify({"jobs": found})
