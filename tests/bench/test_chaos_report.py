"""The chaos judge must catch what it claims to: each rule of bench/chaos_report.py is
broken once on purpose here, against a real migrated database and a made-up ground truth."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from bench.chaos_report import build_report, count_files
from falbridge.models.db import get_engine, transaction
from falbridge.models.jobs import add_result_files, create_job
from falbridge.models.tables import Job, utcnow

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
