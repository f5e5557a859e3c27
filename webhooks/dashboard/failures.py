"""What went wrong, in one place: failed jobs, jobs whose submit outcome is unknown, outgoing
events that ran out of attempts, and the callbacks the receiver rejected, by reason."""

from __future__ import annotations

from flask import render_template
from flask.typing import ResponseReturnValue

from falbridge.models.db import transaction
from falbridge.models.deliveries import rejections_by_reason
from falbridge.models.listing import JobFilters, list_jobs
from falbridge.models.serialize import job_summary
from falbridge.models.states import JobStatus
from falbridge.webhooks.dashboard.blueprint import dashboard
from falbridge.worker.notify.manage import counts, delivery_log

SHOWN = 50


@dashboard.get("/failures")
def failures() -> ResponseReturnValue:
    with transaction() as s:
        failed, more_failed = list_jobs(s, JobFilters(status=JobStatus.FAILED.value), limit=SHOWN)
        unknown, more_unknown = list_jobs(s, JobFilters(status=JobStatus.OUTCOME_UNKNOWN.value), limit=SHOWN)
        rejected = rejections_by_reason(s)
        failed_jobs = [job_summary(row) for row in failed]
        unknown_jobs = [job_summary(row) for row in unknown]
    return render_template(
        "dashboard/failures.html",
        failed=failed_jobs,
        more_failed=more_failed is not None,
        unknown=unknown_jobs,
        more_unknown=more_unknown is not None,
        exhausted=delivery_log(None, "exhausted", SHOWN),
        exhausted_count=counts()["exhausted"],
        rejected=rejected,
    )
