"""Judge a chaos run's outgoing webhooks against the ground truth: the jobs' status events
(job_events, written in each transition's transaction) and the jobs' final states (which
bench/chaos_report.py holds against the sandbox), and what the subscriber accepted
(bench/chaos_subscriber.py: answered 2xx, signature checked by `standardwebhooks`).
The outbox's own bookkeeping (event_deliveries) is not evidence; it only gives the
exhausted and unsettled counts.

The subscription lists `job.status_changed`, so it gets every event. A run FAILS when:

  1. a job has not exactly one terminal event (`terminal_event_problems`), or that one
     event's status is not the job's final status;
  2. an event id never reached the subscriber (`lost`), or the subscriber accepted an id
     that is no event of ours (`unknown`);
  3. an accepted body disagrees with its event: another job, another sequence number or
     another transition (`body_mismatches`);
  4. a job's last event at the subscriber (the highest sequence it accepted) is not the
     job's final status, as the transition and as the job the body shows (`last_mismatches`);
  5. a signature failed the subscriber's check (`bad_signatures`).

DUPLICATES are acceptances beyond the first of an event id: allowed (at least once), and
counted. EXHAUSTED deliveries are dead letters; counted, and a failure only through the
events they lose.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from bench.chaos_subscriber import Received
from falbridge.models.db import transaction
from falbridge.models.states import EventSource
from falbridge.models.tables import DeliveryAttempt, EventDelivery, Job, JobEvent
from falbridge.worker.notify.payload import message_id

TERMINAL = ("completed", "failed", "cancelled")


@dataclass
class EventReport:
    events: int = 0  # job_events rows
    terminal_events: int = 0
    receipts: int = 0  # acceptances at the subscriber, duplicates included
    delivered: int = 0  # distinct event ids accepted
    duplicates: int = 0
    lost: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    terminal_event_problems: list[dict[str, Any]] = field(default_factory=list)
    body_mismatches: list[dict[str, Any]] = field(default_factory=list)
    last_mismatches: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    exhausted: int = 0
    unsettled: int = 0  # pending or in flight when judged
    attempts: int = 0  # delivery attempts recorded by falbridge
    requests: int = 0  # requests the subscriber saw (answered or not)
    faults: Counter = field(default_factory=Counter)
    outages: int = 0

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.unknown
            or self.terminal_event_problems
            or self.body_mismatches
            or self.last_mismatches
            or self.bad_signatures
        )

    def problems(self) -> dict[str, Any]:
        return {
            "lost": self.lost[:500],
            "unknown": self.unknown[:500],
            "terminal_event_problems": self.terminal_event_problems[:500],
            "body_mismatches": self.body_mismatches[:500],
            "last_mismatches": self.last_mismatches[:500],
        }


def build_event_report(
    engine,
    received: Iterable[Received],
    *,
    bad_signatures: int = 0,
    requests: int = 0,
    faults: dict[str, int] | None = None,
    outages: int = 0,
) -> EventReport:
    report = EventReport(
        bad_signatures=bad_signatures, requests=requests, faults=Counter(faults or {}), outages=outages
    )
    with transaction(engine) as s:
        # The transitions: `job.files_stored` (source `store`) is no transition, and the
        # subscription does not list it.
        events = s.execute(
            select(JobEvent.id, JobEvent.job_id, JobEvent.seq, JobEvent.to_status).where(
                JobEvent.source != EventSource.STORE.value
            )
        ).all()
        final = {str(job_id): status for job_id, status in s.execute(select(Job.id, Job.status)).all()}
        states = dict(
            s.execute(select(EventDelivery.status, func.count()).group_by(EventDelivery.status)).all()
        )
        report.attempts = s.scalar(select(func.count()).select_from(DeliveryAttempt)) or 0
    report.exhausted = states.get("exhausted", 0)
    report.unsettled = states.get("pending", 0) + states.get("in_flight", 0)

    by_id = {message_id(e.id): (str(e.job_id), e.seq, e.to_status) for e in events}
    report.events = len(by_id)
    terminal_by_job: dict[str, list[str]] = defaultdict(list)
    for e in events:
        if e.to_status in TERMINAL:
            terminal_by_job[str(e.job_id)].append(e.to_status)
    report.terminal_events = sum(len(v) for v in terminal_by_job.values())
    for job_id, status in final.items():
        terminal = terminal_by_job.get(job_id, [])
        if len(terminal) != 1 or terminal[0] != status:
            report.terminal_event_problems.append(
                {"job": job_id, "status": status, "terminal_events": terminal}
            )

    receipts = list(received)
    report.receipts = len(receipts)
    seen = Counter(r.webhook_id for r in receipts)
    report.delivered = len(set(seen) & set(by_id))
    report.duplicates = report.receipts - len(seen)
    report.lost = sorted(set(by_id) - set(seen))
    report.unknown = sorted(set(seen) - set(by_id))

    last: dict[str, Received] = {}
    for r in receipts:
        truth = by_id.get(r.webhook_id)
        if truth is None:
            continue
        if (r.job_id, r.sequence, r.to_status) != truth:
            report.body_mismatches.append(
                {"event": r.webhook_id, "body": [r.job_id, r.sequence, r.to_status], "truth": list(truth)}
            )
        if r.job_id not in last or r.sequence > last[r.job_id].sequence:
            last[r.job_id] = r
    for job_id, status in final.items():
        got = last.get(job_id)
        if got is None or got.to_status != status or got.status != status:
            report.last_mismatches.append(
                {
                    "job": job_id,
                    "status": status,
                    "last_received": None if got is None else [got.webhook_id, got.to_status, got.status],
                }
            )
    return report


def event_lines(report: EventReport) -> list[str]:
    faults = ",".join(f"{k}={v}" for k, v in sorted(report.faults.items())) or "none"
    return [
        f"chaos: events={report.events} terminal_events={report.terminal_events} "
        f"delivered={report.delivered}/{report.events} lost={len(report.lost)} "
        f"duplicates={report.duplicates} unknown={len(report.unknown)} "
        f"bad_signatures={report.bad_signatures} "
        f"terminal_event_problems={len(report.terminal_event_problems)} "
        f"body_mismatches={len(report.body_mismatches)} "
        f"last_event_mismatches={len(report.last_mismatches)} exhausted={report.exhausted} "
        f"unsettled={report.unsettled}",
        f"chaos: subscriber requests={report.requests} accepted={report.receipts} "
        f"faults {faults} outages={report.outages}; falbridge attempts={report.attempts}",
    ]
