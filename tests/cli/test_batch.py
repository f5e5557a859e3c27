"""`falbridge submit --batch jobs.jsonl`: every good line submitted, bad ones reported with
their line numbers, a results file of one line per input line, a summary; the same file
again submits nothing twice; in process and over the API alike."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner

import falbridge
from falbridge.cli import main
from falbridge.cli.batch import derived_external_id
from tests.plugins.pipeline import TEST_API_TOKEN

SOME = "fal-ai/some/model"
LOW = {"priority": "low"}
LINES = [
    json.dumps({"endpoint_id": SOME, "input": {"n": 1}}),
    "{not json",
    "",
    json.dumps(
        {"endpoint_id": SOME, "input": {"n": 2}, "external_id": "mine-2", "options": {"priority": "low"}}
    ),
    json.dumps({"endpoint_id": SOME, "input": {"n": 3}, "options": {"priority": "urgent"}}),
    json.dumps(["not", "an", "object"]),
    json.dumps({"endpoint_id": SOME, "input": {"n": 4}}),
]


def _cli(monkeypatch, pipeline, over_the_api: bool, *args: str):
    monkeypatch.setenv("FALBRIDGE_API_TOKEN", TEST_API_TOKEN)
    where = ["--api", pipeline.receiver_url] if over_the_api else []
    return CliRunner().invoke(main, [*where, "submit", *args], prog_name="falbridge")


@pytest.mark.parametrize("over_the_api", [False, True])
def test_a_file_is_submitted_line_by_line_and_again_submits_nothing(
    pipeline, monkeypatch, tmp_path, over_the_api
):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(LINES) + "\n")
    digest = hashlib.sha256(jobs.read_bytes()).hexdigest()

    first = _cli(monkeypatch, pipeline, over_the_api, "--batch", str(jobs), "--chunk-size", "2")
    assert first.exit_code == 1, first.output  # some lines failed; the good ones went
    assert first.stdout.strip() == (
        f"6 jobs: 3 submitted, 0 already submitted, 3 failed (1 blank lines skipped); "
        f"results in {jobs}.results.jsonl"
    )
    assert [line.split(":")[0] for line in first.stderr.splitlines()] == ["line 2", "line 5", "line 6"]
    results = [json.loads(line) for line in (tmp_path / "jobs.jsonl.results.jsonl").read_text().splitlines()]
    assert [r["line"] for r in results] == list(range(1, 8))
    assert [r["error"]["code"] for r in results if "error" in r] == [
        "invalid_json",
        "invalid_options",
        "invalid_json",
    ]
    assert results[2] == {"line": 3, "skipped": "blank line"}
    ids = {r["line"]: r["job_id"] for r in results if "job_id" in r}
    assert falbridge.get(ids[1]).external_id == derived_external_id(digest, 1) == f"jsonl-{digest[:32]}-1"
    assert falbridge.get(ids[4]).external_id == "mine-2" and falbridge.get(ids[4]).priority == "low"
    events = falbridge.get(ids[7]).events
    assert events[0].source == ("api" if over_the_api else "cli")

    again = _cli(monkeypatch, pipeline, over_the_api, "--batch", str(jobs), "--results", str(tmp_path / "r2"))
    assert again.exit_code == 1 and again.stdout.startswith(
        "6 jobs: 0 submitted, 3 already submitted, 3 failed"
    )
    rerun = [json.loads(line) for line in (tmp_path / "r2").read_text().splitlines()]
    assert {r["line"]: r["job_id"] for r in rerun if "job_id" in r} == ids
    assert not any(r.get("created") for r in rerun)
    done = pipeline.wait_terminal(*ids.values(), timeout=60)
    assert [job.status for job in done] == ["completed"] * 3
    assert len(pipeline.sandbox.ground_truth()["requests"]) == 3  # nothing submitted twice


def test_a_file_of_good_lines_exits_0(pipeline, monkeypatch, tmp_path):
    jobs = tmp_path / "ok.jsonl"
    jobs.write_text("".join(json.dumps({"endpoint_id": SOME, "input": {"n": n}}) + "\n" for n in range(5)))
    done = _cli(monkeypatch, pipeline, False, "--batch", str(jobs))
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("5 jobs: 5 submitted, 0 already submitted, 0 failed; results in ")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--batch", "{missing}"], "cannot read"),
        (["--batch", "{file}", "fal-ai/x/y"], "drop ENDPOINT_ID"),
        (["--batch", "{file}", "--priority", "low"], "drop --priority"),
        (["--batch", "{file}", "--wait"], "drop --wait"),
        ([], "give ENDPOINT_ID, or --batch"),
        (["fal-ai/x/y", "--results", "r.jsonl"], "--results goes with --batch"),
    ],
)
def test_bad_usage_exits_2_with_one_line(db_url, tmp_path, args, says):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"endpoint_id": SOME, "input": {}}) + "\n")
    argv = [a.format(missing=tmp_path / "nope.jsonl", file=jobs) for a in args]
    result = CliRunner().invoke(main, ["submit", *argv], prog_name="falbridge")
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
