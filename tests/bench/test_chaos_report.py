"""The chaos judge must catch what it claims to: each rule of bench/chaos_report.py and
bench/chaos_events.py is broken once on purpose here, against a real migrated database
and a made-up ground truth."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select, update

from bench.chaos_events import build_event_report, event_lines
from bench.chaos_report import build_report, count_files, summary_lines
from bench.chaos_subscriber import Received
from falbridge.models.db import get_engine, transaction
from falbridge.models.jobs import add_result_files, create_job
from falbridge.models.tables import Job, JobEvent, StoredFile, utcnow
from falbridge.worker.notify.payload import message_id

IMAGE = {"url": "http://fal/files/a.png", "content_type": "image/png", "file_size": 10}


def _job(n: int, **fields) -> str:
    with transaction() as s:
        job, _ = create_job(s, "fal-ai/evf-sam", {"n": n}, external_id=f"x-{n}")
        job_id = job.id
    now = utcnow()
    with transaction() as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(created_at=now - timedelta(seconds=n), completed_at=now, **fields)
        )
        if fields.get("status") == "completed":
            add_result_files(s, job_id, [{"path": "image", "url": IMAGE["url"]}])
    return str(job_id)


def _request(job_id: str, request_id: str, outcome: str | None, output=None, error_type=None) -> dict:
    return {
        "request_id": request_id,
        "webhook_url": f"http://r/webhooks/fal?job={job_id}",
        "outcome": outcome,
        "queue_status": "COMPLETED" if outcome else "IN_PROGRESS",
        "output": output,
        "error_type": error_type,
        "deliveries": [],
    }


def test_every_rule_is_enforced(db_url):
    good = _job(1, status="completed", request_id="r-good", result={"image": IMAGE})
    wrong_outcome = _job(2, status="completed", request_id="r-wrong", result={"image": IMAGE})
    wrong_result = _job(3, status="completed", request_id="r-result", result={"image": {**IMAGE, "url": "x"}})
    unknown_request = _job(4, status="failed", request_id=None, error_type="submit_outcome_unknown")
    never_sent_done = _job(5, status="completed", request_id="r-ghost", result={"image": IMAGE})
    never_sent_failed = _job(6, status="failed", error_type="submit_retries_exhausted")
    stuck = _job(7, status="submitted", request_id="r-stuck")
    unexplained_double = _job(8, status="failed", request_id="r-d1", error_type="runner_server_error")
    resubmitted_double = _job(
        9, status="failed", request_id="r-e1", error_type="runner_server_error", resubmitted_at=utcnow()
    )
    truth = {
        "requests": [
            _request(good, "r-good", "OK", {"image": IMAGE}),
            _request(wrong_outcome, "r-wrong", "ERROR", error_type="runner_server_error"),
            _request(wrong_result, "r-result", "OK", {"image": IMAGE}),
            _request(unknown_request, "r-lost", "OK", {"image": IMAGE}),
            _request(stuck, "r-stuck", None),
            _request(unexplained_double, "r-d1", "ERROR", error_type="runner_server_error"),
            _request(unexplained_double, "r-d2", "ERROR", error_type="runner_server_error"),
            _request(resubmitted_double, "r-e1", "ERROR", error_type="runner_server_error"),
            _request(resubmitted_double, "r-e2", "OK", {"image": IMAGE}),
            _request("00000000-0000-0000-0000-000000000000", "r-orphan", "OK", {}),
        ],
        "rejected_submits": [{"seq": 1}],
    }

    report = build_report(get_engine(db_url), truth, expected_jobs=9)

    flagged = {m.get("job") for m in report.mismatches}
    assert flagged >= {
        wrong_outcome,
        wrong_result,
        unknown_request,
        never_sent_done,
        stuck,
        unexplained_double,
    }
    assert not flagged & {good, never_sent_failed, resubmitted_double}
    assert any("name no job of ours" in m["problem"] for m in report.mismatches)
    assert report.double_causes == {"unexplained": 1, "outcome_unknown_resubmit": 1}
    assert report.terminal == 8 and not report.ok
    assert report.p50_s is not None and report.p99_s >= report.p50_s


def test_a_completed_job_missing_a_file_row_is_a_duplicate_row_problem(db_url):
    job = _job(1, status="completed", request_id="r-1", result={"a": IMAGE, "b": [IMAGE]})
    truth = {"requests": [_request(job, "r-1", "OK", {"a": IMAGE, "b": [IMAGE]})]}
    report = build_report(get_engine(db_url), truth, expected_jobs=1)
    assert report.duplicate_rows == [{"job": job, "rows": 1, "files_in_output": 2}]
    assert count_files({"x": {"url": "u"}, "y": [IMAGE, {"url": "v", "file_name": "f"}]}) == 2


def _large_dropped(request: dict, expires_in_s: float) -> dict:
    expires_at = utcnow().timestamp() + expires_in_s
    faults = ["large_result", "drop_large_callbacks"]
    return {**request, "faults": faults, "expires_at": expires_at, "result_bytes": 10 * 1024}


def test_fals_retention_rules(db_url):
    """result_expired is allowed and counted only once fal's window had passed; a large
    result whose callback was dropped and that completed must have its files stored."""
    expired = _job(1, status="failed", request_id="r-1", error_type="result_expired")
    too_soon = _job(2, status="failed", request_id="r-2", error_type="result_expired")
    stored = _job(3, status="completed", request_id="r-3", result={"image": IMAGE})
    unstored = _job(4, status="completed", request_id="r-4", result={"image": IMAGE})
    small = _job(5, status="completed", request_id="r-5", result={"image": IMAGE})
    failed = _job(6, status="failed", request_id="r-6", error_type="boom")
    with transaction() as s:
        s.add(StoredFile(job_id=uuid.UUID(stored), path="image", fal_url=IMAGE["url"], status="stored"))
        s.add(StoredFile(job_id=uuid.UUID(unstored), path="image", fal_url=IMAGE["url"], status="missing"))
    truth = {
        "requests": [
            _large_dropped(_request(expired, "r-1", "OK", {"image": IMAGE}), expires_in_s=-5),
            _large_dropped(_request(too_soon, "r-2", "OK", {"image": IMAGE}), expires_in_s=300),
            _large_dropped(_request(stored, "r-3", "OK", {"image": IMAGE}), expires_in_s=-5),
            _large_dropped(_request(unstored, "r-4", "OK", {"image": IMAGE}), expires_in_s=-5),
            _request(small, "r-5", "OK", {"image": IMAGE}),  # its callback came: storing not judged here
            # The model failed: a small error body, so its callback went whatever was drawn.
            {**_large_dropped(_request(failed, "r-6", "ERROR", error_type="boom"), -5), "result_bytes": 80},
        ]
    }

    report = build_report(get_engine(db_url), truth, expected_jobs=6)

    problems = {m["job"]: m["problem"] for m in report.mismatches}
    assert problems == {
        too_soon: "result_expired here while fal still had the result",
        unstored: "large result fetched by a poll, 0 of its 1 files stored",
    }
    assert (report.result_expired, report.large_dropped, report.large_dropped_stored) == (2, 4, 1)
    kwargs = {"kills": 0, "redis_restarts": 0, "receiver_restarts": 0, "elapsed_s": 1.0, "database": "x"}
    lines = summary_lines(report, run_dir="d", **kwargs)
    assert " result_expired=2 " in lines[0]
    assert "large_results_without_callback=4 (completed_with_files_stored=1)" in lines[2]


def _event(job_id: str, seq: int, to_status: str, from_status: str = "pending") -> int:
    with transaction() as s:
        event = JobEvent(
            job_id=uuid.UUID(job_id),
            seq=seq,
            source="webhook",
            from_status=from_status,
            to_status=to_status,
            at=utcnow(),
        )
        s.add(event)
        s.flush()
        return event.id


def _got(event_id: int, job_id: str, seq: int, to_status: str, status: str | None = None) -> Received:
    return Received(message_id(event_id), "job.status_changed", job_id, seq, to_status, status or to_status)


def _first_event(job_id: str) -> int:
    with transaction() as s:
        return s.scalars(
            select(JobEvent.id).where(JobEvent.job_id == uuid.UUID(job_id), JobEvent.seq == 1)
        ).one()


def test_every_outgoing_webhook_rule_is_enforced(db_url):
    """bench/chaos_events.py: each rule broken once, against real job_events rows."""
    good = _job(1, status="completed")
    lost = _job(2, status="completed")
    twice = _job(3, status="completed")
    none = _job(4, status="failed")
    stale = _job(5, status="completed")
    wrong_body = _job(6, status="failed")
    received = []
    for job in (good, lost, twice, none, stale, wrong_body):
        received.append(_got(_first_event(job), job, 1, "pending"))
    done = _event(good, 2, "completed")
    received += [_got(done, good, 2, "completed")] * 2  # a duplicate: allowed, counted
    _event(lost, 2, "completed")  # never reaches the subscriber
    _event(twice, 2, "completed")
    received.append(_got(_event(twice, 3, "completed", "completed"), twice, 3, "completed"))
    # `stale`: its terminal event's body shows the job as it was before the event.
    received.append(_got(_event(stale, 2, "completed"), stale, 2, "completed", status="submitted"))
    # `wrong_body`: the body names another transition than its event id's.
    received.append(_got(_event(wrong_body, 2, "failed"), wrong_body, 2, "completed"))
    received.append(Received("evt_999999999", "job.completed", good, 9, "completed", "completed"))

    report = build_event_report(get_engine(db_url), received, bad_signatures=1, requests=20)

    assert report.events == 12 and report.terminal_events == 6
    assert report.receipts == 12 and report.duplicates == 1 and report.delivered == 10
    assert len(report.lost) == 2  # `lost`'s terminal event and `twice`'s first terminal one
    assert report.unknown == ["evt_999999999"]
    assert {p["job"] for p in report.terminal_event_problems} == {twice, none}
    assert [m["event"] for m in report.body_mismatches] == [report.body_mismatches[0]["event"]]
    assert report.body_mismatches[0]["truth"] == [wrong_body, 2, "failed"]
    assert {m["job"] for m in report.last_mismatches} == {lost, none, stale, wrong_body}
    assert not report.ok
    lines = event_lines(report)
    assert "lost=2 duplicates=1 unknown=1 bad_signatures=1" in lines[0]


def test_a_clean_event_run_passes_and_the_summary_says_so(db_url):
    job = _job(1, status="completed", request_id="r-1", result={"image": IMAGE})
    done = _event(job, 2, "completed")
    received = [_got(_first_event(job), job, 1, "pending"), _got(done, job, 2, "completed")]
    events = build_event_report(get_engine(db_url), received, faults={"error_500": 2}, outages=1)
    assert events.ok and events.exhausted == 0 and events.unsettled == 0
    truth = {"requests": [_request(job, "r-1", "OK", {"image": IMAGE})]}
    report = build_report(get_engine(db_url), truth, expected_jobs=1)
    lines = summary_lines(
        report,
        kills=1,
        redis_restarts=1,
        receiver_restarts=1,
        elapsed_s=1.0,
        database="x",
        run_dir="d",
        events=events,
    )
    assert any("events=2 terminal_events=1 delivered=2/2 lost=0 duplicates=0" in line for line in lines)
    assert "faults error_500=2 outages=1" in lines[-2]
    assert lines[-1].startswith("chaos: PASS"), lines
    events.bad_signatures = 1
    again = summary_lines(
        report,
        kills=1,
        redis_restarts=1,
        receiver_restarts=1,
        elapsed_s=1.0,
        database="x",
        run_dir="d",
        events=events,
    )
    assert again[-1].startswith("chaos: FAIL")


def _lost(request: dict, *callbacks: int) -> dict:
    return {
        **request,
        "submit_response_lost": True,
        "faults": ["submit_response_lost", "drop"] if not callbacks else ["submit_response_lost"],
        "deliveries": [{"http_status": status} for status in callbacks],
    }


def test_a_job_fal_told_nothing_about_is_unknowable_and_nothing_less_is(db_url):
    """Every answer lost and no callback taken: falbridge had nothing to act on, and
    failing it as submit_outcome_unknown is the policy. Any one piece of knowledge it had
    (an answer, a callback our receiver took, a request id) makes it a mismatch again."""
    unknown = {"status": "failed", "error_type": "submit_outcome_unknown", "request_id": None}
    unknowable = _job(1, **unknown, resubmitted_at=utcnow())  # two requests: resubmitted
    answered = _job(2, **unknown, resubmitted_at=utcnow())
    called_back = _job(3, **unknown)
    refused_callbacks = _job(4, **unknown)
    truth = {
        "requests": [
            _lost(_request(unknowable, "r-1a", "OK", {"image": IMAGE})),
            _lost(_request(unknowable, "r-1b", "OK", {"image": IMAGE})),
            _lost(_request(answered, "r-2a", "OK", {"image": IMAGE})),
            {**_request(answered, "r-2b", "OK", {"image": IMAGE}), "submit_response_lost": False},
            _lost(_request(called_back, "r-3", "OK", {"image": IMAGE}), 503, 200),
            # The receiver was down for each attempt: still nothing it was told.
            _lost(_request(refused_callbacks, "r-4", "OK", {"image": IMAGE}), 503, 502),
        ]
    }

    report = build_report(get_engine(db_url), truth, expected_jobs=4)

    assert report.unknowable == 2
    mismatched = {m["job"]: m for m in report.mismatches}
    assert set(mismatched) == {answered, called_back}
    assert mismatched[called_back]["requests"] == [
        {
            "request_id": "r-3",
            "outcome": "OK",
            "faults": ["submit_response_lost"],
            "submit_response_lost": True,
            "callbacks": [503, 200],
        }
    ]
    assert (
        "unknowable=2"
        in summary_lines(
            report,
            kills=0,
            redis_restarts=0,
            receiver_restarts=0,
            elapsed_s=1,
            database="sqlite",
            run_dir="x",
        )[0]
    )
