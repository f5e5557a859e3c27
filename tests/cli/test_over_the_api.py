"""The job commands through a falbridge's HTTP API (`--api URL`): the same answers as from
the database, for a machine that can reach only the API."""

from __future__ import annotations

import json

from click.testing import CliRunner

import falbridge
from falbridge.cli import main
from tests.plugins.pipeline import TEST_API_TOKEN
from tests.sandbox.helpers import png_bytes


def _cli(pipeline, monkeypatch, *args: str):
    monkeypatch.setenv("FALBRIDGE_API_TOKEN", TEST_API_TOKEN)
    result = CliRunner().invoke(main, ["--api", pipeline.receiver_url, *args], prog_name="falbridge")
    assert TEST_API_TOKEN not in result.output
    return result


def test_submit_wait_show_list_and_cancel_over_the_api(pipeline, monkeypatch):
    submitted = _cli(pipeline, monkeypatch, "submit", "fal-ai/some/model", "--input", '{"n": 1}', "--wait")
    assert submitted.exit_code == 0, submitted.output
    job_id = submitted.stdout.split()[0]
    shown = _cli(pipeline, monkeypatch, "jobs", "show", job_id[:8], "--json")
    assert json.loads(shown.stdout) == falbridge.get(job_id).to_json()
    listed = json.loads(_cli(pipeline, monkeypatch, "jobs", "list", "--json", "--limit", "1").stdout)
    assert [j["id"] for j in listed["jobs"]] == [job_id]
    done = _cli(pipeline, monkeypatch, "cancel", job_id)
    assert (
        done.exit_code == 2 and done.stderr.startswith("error: job ") and "already completed" in done.stderr
    )


def test_waiting_shows_fals_progress_on_stderr(pipeline, monkeypatch):
    pipeline.sandbox.set_config(latency_s=1.5)  # running long enough to be seen running
    submitted = _cli(pipeline, monkeypatch, "submit", "fal-ai/some/model", "--input", '{"n": 2}', "--wait")
    assert submitted.exit_code == 0, submitted.output
    progress = submitted.stderr.splitlines()
    assert progress[-1] == "completed"
    running = progress.index("in_progress: running at fal")
    assert progress[running + 1].endswith(" Starting fal-ai/some/model")
    job_id = submitted.stdout.split()[0]
    again = _cli(pipeline, monkeypatch, "jobs", "wait", job_id[:8])
    assert again.exit_code == 0 and again.stderr == "completed\n" and f"job {job_id}" in again.stdout


def test_a_wrong_token_and_an_unknown_job_are_one_line_each(pipeline, monkeypatch):
    monkeypatch.setenv("FALBRIDGE_API_TOKEN", "not-the-token-at-all-0123456789")
    refused = CliRunner().invoke(main, ["--api", pipeline.receiver_url, "jobs", "list"])
    assert refused.exit_code == 2 and refused.stderr.startswith("error: HTTP 401 unauthorized")
    missing = _cli(pipeline, monkeypatch, "jobs", "show", "0" * 32)
    assert (missing.exit_code, missing.stderr.strip()) == (2, f"error: no job with id {'0' * 32!r}")


def test_an_unreachable_api_is_a_failure_at_run_time(monkeypatch):
    result = CliRunner().invoke(main, ["--api", "http://127.0.0.1:9", "jobs", "list"])
    assert result.exit_code == 1 and result.stderr.startswith("error: cannot reach the falbridge API")


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"falbridge, version {falbridge.__version__}"


def test_a_local_image_goes_through_the_apis_upload(pipeline, monkeypatch, tmp_path):
    image = tmp_path / "big.png"
    image.write_bytes(png_bytes(32, 32) + b"\x00" * 400_000)  # over the 256 KiB threshold
    submitted = _cli(
        pipeline, monkeypatch, "submit", "fal-ai/evf-sam", "--prompt", "cat", "--image", str(image)
    )
    assert submitted.exit_code == 0, submitted.output
    job = pipeline.wait_terminal(submitted.stdout.split()[0], timeout=30)[0]
    assert job.status == "completed", job.error
    assert job.input["image_url"].startswith(f"{pipeline.sandbox.url}/files/")
    assert pipeline.sandbox.request(job.request_id)["input"]["image_url"] == job.input["image_url"]
