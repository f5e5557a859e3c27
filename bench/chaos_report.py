"""Judge a chaos run against the sandbox's ground truth (GET /_sandbox/requests).

Every sandbox request carries our job id in its webhook URL (`?job=<id>`), so each job
maps to the set of requests fal accepted for it. A job is a MISMATCH when:

  1. it is not terminal (completed / failed / cancelled);
  2. fal accepted >= 1 request for it, and
     a. our `request_id` is not one of them (including: we never learned one), or
     b. that request has not finished at the sandbox, or
     c. the outcomes disagree: completed <=> OK with `result == output`; failed <=>
        ERROR with the same `error_type` whenever the sandbox has one; cancelled <=>
        CANCELLED;
  3. fal accepted no request for it, and it is anything but failed with a submit-side
     reason (SUBMIT_SIDE_ERRORS): a job fal never ran can't be completed;
     except (UNKNOWABLE, allowed and counted) a job failed `submit_outcome_unknown` with no
     request id whose every request had its submit response lost by the sandbox and no
     callback our receiver accepted: fal told falbridge nothing it could act on;
  4. it was created more than once (two jobs with one external_id), or a sandbox request
     names a job id we have no row for (counted as `orphan_requests`).

DOUBLE SUBMISSIONS are jobs with > 1 accepted request. They are allowed (fal may have
taken a request whose response we lost) but each must have a cause in our records: the
reconciler's outcome-unknown resubmit (`resubmitted_at`), split by why the first outcome
was unknown (the reason on the job's `outcome_unknown` event). Anything else is
`unexplained`, and is also counted as a mismatch.

RESULT_EXPIRED jobs failed with that error type: fal's retention window (six minutes,
scaled, for results of 10 KB or more) passed before the sweeper fetched a result whose
callback was dropped. Allowed, and counted in the summary line (target: zero at default
settings), but a mismatch when the job failed before fal's `expires_at` (fal still had it).
A completed job whose large result lost its callback (`drop_large_callbacks`) must have
every file stored by falbridge (`stored_files` rows with status `stored`), else a mismatch.

DUPLICATE RESULT ROWS are `result_files` rows sharing (job_id, path), plus completed jobs
whose number of file rows differs from the File objects in the sandbox output.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import func, select

from bench.chaos_events import EventReport, event_lines
from falbridge.models.db import transaction
from falbridge.models.tables import Job, JobEvent, ResultFile, StoredFile

SUBMIT_SIDE_ERRORS = ("submit_retries_exhausted", "submit_outcome_unknown")
RESULT_EXPIRED = "result_expired"
LARGE_DROPPED = "drop_large_callbacks"
LARGE = 10 * 1024  # fal keeps a result this big or bigger six minutes
TERMINAL = ("completed", "failed", "cancelled")
EXPECTED = {"completed": "OK", "failed": "ERROR", "cancelled": "CANCELLED"}


@dataclass
class Report:
    jobs: int = 0
    expected_jobs: int = 0
    terminal: int = 0
    statuses: Counter = field(default_factory=Counter)
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    doubles: list[dict[str, Any]] = field(default_factory=list)
    double_causes: Counter = field(default_factory=Counter)
    duplicate_rows: list[dict[str, Any]] = field(default_factory=list)
    orphan_requests: int = 0
    result_expired: int = 0
    unknowable: int = 0  # fal accepted them, and neither an answer nor a callback said so
    large_dropped: int = 0  # jobs whose large result's callback the sandbox dropped
    large_dropped_stored: int = 0  # of those, completed with every file stored
    # Each large result without a callback: fal's completion and expiry against our polls.
    large_timelines: list[dict[str, Any]] = field(default_factory=list)
    sandbox_requests: int = 0
    rejected_submits: int = 0
    deliveries: int = 0
    p50_s: float | None = None
    p99_s: float | None = None

    @property
    def ok(self) -> bool:
        return (
            self.terminal == self.expected_jobs == self.jobs
            and not self.mismatches
            and not self.duplicate_rows
        )


def count_files(output: Any) -> int:
    """fal File objects in an output: a `url` string plus a descriptive field. Written
    independently of worker.results so the check does not grade our own code with itself."""
    if isinstance(output, dict):
        if isinstance(output.get("url"), str) and any(
            k in output for k in ("content_type", "file_name", "file_size")
        ):
            return 1
        return sum(count_files(v) for v in output.values())
    if isinstance(output, list):
        return sum(count_files(v) for v in output)
    return 0


def job_id_of(webhook_url: str | None) -> str | None:
    if not webhook_url:
        return None
    values = parse_qs(urlsplit(webhook_url).query).get("job")
    return values[0] if values else None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def build_report(engine, truth: dict[str, Any], expected_jobs: int) -> Report:
    report = Report(expected_jobs=expected_jobs)
    requests = truth.get("requests", [])
    report.sandbox_requests = len(requests)
    report.rejected_submits = len(truth.get("rejected_submits", []))
    report.deliveries = sum(len(r.get("deliveries") or []) for r in requests)
    by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for request in requests:
        by_job[job_id_of(request.get("webhook_url")) or "?"].append(request)

    with transaction(engine) as s:
        jobs = s.execute(
            select(
                Job.id,
                Job.status,
                Job.request_id,
                Job.result,
                Job.error_type,
                Job.created_at,
                Job.completed_at,
                Job.resubmitted_at,
                Job.external_id,
                Job.poll_attempts,
                Job.last_polled_at,
            )
        ).all()
        files = dict(s.execute(select(ResultFile.job_id, func.count()).group_by(ResultFile.job_id)).all())
        dup_rows = s.execute(
            select(ResultFile.job_id, ResultFile.path, func.count())
            .group_by(ResultFile.job_id, ResultFile.path)
            .having(func.count() > 1)
        ).all()
        stored = dict(
            s.execute(
                select(StoredFile.job_id, func.count())
                .where(StoredFile.status == "stored")
                .group_by(StoredFile.job_id)
            ).all()
        )
        unknown_events = s.execute(
            select(JobEvent.job_id, JobEvent.detail).where(JobEvent.to_status == "outcome_unknown")
        ).all()
    reasons = {str(job_id): (detail or {}).get("reason", "") for job_id, detail in unknown_events}

    report.jobs = len(jobs)
    report.duplicate_rows = [{"job": str(j), "path": p, "rows": n} for j, p, n in dup_rows]
    for external_id, n in Counter(j.external_id for j in jobs).items():
        if n > 1:
            report.mismatches.append({"external_id": external_id, "problem": f"{n} jobs for one external_id"})
    durations = []
    known = set()
    for job in jobs:
        job_id = str(job.id)
        known.add(job_id)
        report.statuses[job.status] += 1
        if job.status in TERMINAL:
            report.terminal += 1
            if job.completed_at is not None:
                durations.append((job.completed_at - job.created_at).total_seconds())
        mine = by_job.get(job_id, [])
        retention_problem = _judge_retention(report, job, mine, stored.get(job.id, 0))
        if _unknowable(job, mine):
            report.unknowable += 1
        elif problem := _judge(job, mine) or retention_problem:
            report.mismatches.append(
                {
                    "job": job_id,
                    "status": job.status,
                    "error_type": job.error_type,
                    "problem": problem,
                    "requests": [_what_fal_did(r) for r in mine],
                }
            )
        if len(mine) > 1:
            cause = _double_cause(job, reasons.get(job_id, ""))
            report.double_causes[cause] += 1
            report.doubles.append(
                {"job": job_id, "cause": cause, "requests": [r["request_id"] for r in mine]}
            )
            if cause == "unexplained":
                report.mismatches.append({"job": job_id, "problem": "submitted twice with no recorded cause"})
        if job.status == "completed" and mine:
            bound = next((r for r in mine if r["request_id"] == job.request_id), None)
            if bound is not None and files.get(job.id, 0) != count_files(bound.get("output")):
                report.duplicate_rows.append(
                    {
                        "job": job_id,
                        "rows": files.get(job.id, 0),
                        "files_in_output": count_files(bound.get("output")),
                    }
                )
    report.orphan_requests = sum(len(v) for k, v in by_job.items() if k not in known)
    if report.orphan_requests:
        report.mismatches.append(
            {"problem": f"{report.orphan_requests} sandbox requests name no job of ours"}
        )
    report.p50_s, report.p99_s = percentile(durations, 0.50), percentile(durations, 0.99)
    return report


def _judge_retention(report: Report, job, requests: list[dict[str, Any]], stored_files: int) -> str | None:
    """Count result_expired and the large results whose callback was dropped; a problem
    when one expired early or when one completed without its files stored."""
    bound = next((r for r in requests if r["request_id"] == job.request_id), None)
    if job.error_type == RESULT_EXPIRED:
        report.result_expired += 1
    # A model error is a small body (the padding is for successful outputs): its callback goes.
    if bound is None or LARGE_DROPPED not in bound.get("faults", []) or bound.get("result_bytes", 0) < LARGE:
        return None
    report.large_dropped += 1
    completed_at = bound.get("completed_at") or 0.0
    report.large_timelines.append(
        {
            "job": str(job.id),
            "status": job.status,
            "error_type": job.error_type,
            "submitted_to_fal_s": round(completed_at - job.created_at.timestamp(), 2),
            "fal_window_s": round((bound.get("expires_at") or 0.0) - completed_at, 2),
            "final_after_fal_s": round(job.completed_at.timestamp() - completed_at, 2)
            if job.completed_at
            else None,
            "polls": job.poll_attempts,
            "last_poll_after_fal_s": (
                round(job.last_polled_at.timestamp() - completed_at, 2) if job.last_polled_at else None
            ),
        }
    )
    if job.status == "completed":
        files = count_files(bound.get("output"))
        if stored_files != files:
            return f"large result fetched by a poll, {stored_files} of its {files} files stored"
        report.large_dropped_stored += 1
    return None


def _judge(job, requests: list[dict[str, Any]]) -> str | None:
    if job.status not in TERMINAL:
        return f"not terminal ({job.status})"
    if not requests:
        if job.status == "failed" and job.error_type in SUBMIT_SIDE_ERRORS:
            return None
        return f"{job.status} ({job.error_type}) but fal accepted no request for it"
    bound = next((r for r in requests if r["request_id"] == job.request_id), None)
    if bound is None:
        return f"request_id {job.request_id} is not one of fal's requests for this job"
    if bound.get("outcome") is None:
        return f"terminal here but request {job.request_id} is {bound.get('queue_status')} at fal"
    if job.status == "failed" and job.error_type == RESULT_EXPIRED:
        expires_at = bound.get("expires_at")
        if expires_at is None or job.completed_at is None or job.completed_at.timestamp() < expires_at:
            return "result_expired here while fal still had the result"
        return None
    if EXPECTED[job.status] != bound["outcome"]:
        return f"{job.status} here, {bound['outcome']} at fal"
    if job.status == "completed" and job.result != bound.get("output"):
        return "result differs from fal's output"
    if job.status == "failed" and bound.get("error_type") and job.error_type != bound["error_type"]:
        return f"error_type {job.error_type} here, {bound['error_type']} at fal"
    return None


def _unknowable(job, requests: list[dict[str, Any]]) -> bool:
    return (
        bool(requests)
        and job.status == "failed"
        and job.error_type == "submit_outcome_unknown"
        and job.request_id is None
        and all(r.get("submit_response_lost") for r in requests)
        and not any(_accepted(d) for r in requests for d in r.get("deliveries") or [])
    )


def _accepted(delivery: dict[str, Any]) -> bool:
    status = delivery.get("http_status")
    return isinstance(status, int) and 200 <= status < 300


def _what_fal_did(request: dict[str, Any]) -> dict[str, Any]:
    """A mismatched job's request as the sandbox saw it: enough to tell a falbridge bug
    from a case fal's faults made unknowable."""
    return {
        "request_id": request["request_id"],
        "outcome": request.get("outcome"),
        "faults": request.get("faults", []),
        "submit_response_lost": request.get("submit_response_lost"),
        "callbacks": [d.get("http_status") for d in request.get("deliveries") or []],
    }


def _double_cause(job, reason: str) -> str:
    if job.resubmitted_at is None:
        return "unexplained"
    if "worker died" in reason:
        return "worker_killed_mid_submit"
    if "no usable response" in reason or "HTTP 5" in reason:
        return "lost_submit_response"
    return "outcome_unknown_resubmit"


def summary_lines(
    report: Report,
    *,
    kills: int,
    redis_restarts: int,
    receiver_restarts: int,
    elapsed_s: float,
    database: str,
    run_dir: str,
    events: EventReport | None = None,
) -> list[str]:
    """The chaos line(s): jobs against the sandbox, then (with `events`) the outgoing
    webhooks against the jobs' events (bench/chaos_events.py), then PASS or FAIL."""
    causes = ", ".join(f"{k}={v}" for k, v in sorted(report.double_causes.items()))
    p50 = "n/a" if report.p50_s is None else f"{report.p50_s:.1f}s"
    p99 = "n/a" if report.p99_s is None else f"{report.p99_s:.1f}s"
    statuses = " ".join(f"{k}={v}" for k, v in sorted(report.statuses.items()))
    ok = report.ok and (events is None or events.ok)
    return [
        f"chaos: jobs={report.expected_jobs} terminal={report.terminal}/{report.expected_jobs} "
        f"mismatches={len(report.mismatches)} double_submissions={len(report.doubles)}"
        + (f" ({causes})" if causes else "")
        + f" duplicate_result_rows={len(report.duplicate_rows)} result_expired={report.result_expired}"
        f" unknowable={report.unknowable}"
        f" p50={p50} p99={p99} kills={kills} "
        f"redis_restarts={redis_restarts} receiver_restarts={receiver_restarts} "
        f"elapsed={elapsed_s:.0f}s db={database}",
        f"chaos: statuses {statuses}; jobs_in_db={report.jobs} sandbox_requests={report.sandbox_requests} "
        f"rejected_submits={report.rejected_submits} webhook_attempts={report.deliveries}",
        f"chaos: fal's retention: large_results_without_callback={report.large_dropped} "
        f"(completed_with_files_stored={report.large_dropped_stored})",
        *(event_lines(events) if events is not None else []),
        f"chaos: {'PASS' if ok else 'FAIL'}; logs and report.json in {run_dir}",
    ]


def fal_peak(truth: dict[str, Any]) -> int:
    """Most requests fal held at once (queued or running), from its own timestamps; one
    never finished counts to the end."""
    edges: list[tuple[float, int]] = []
    for request in truth.get("requests", []):
        edges.append((request["submitted_at"], 1))
        if request.get("completed_at") is not None:
            edges.append((request["completed_at"], -1))
    peak = held = 0
    for _, step in sorted(edges):  # at one instant an end (-1) sorts before a start
        held += step
        peak = max(peak, held)
    return peak


def flow_line(truth: dict[str, Any], cap: int, doubles: int) -> str:
    """Flow control's check: falbridge counts a job in flight until its end is recorded,
    after fal finished it, so fal holds at most the cap, plus one request for each double
    submission (a resubmitted job whose first request also ran holds one slot here)."""
    peak = fal_peak(truth)
    verdict = "ok" if peak <= cap + doubles else "EXCEEDED"
    return (
        f"chaos: flow control: FALBRIDGE_MAX_IN_FLIGHT={cap} peak_at_fal={peak} "
        f"(allowed {cap}+{doubles} doubles) {verdict}"
    )
