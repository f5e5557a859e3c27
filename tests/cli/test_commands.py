"""`falbridge` through click's CliRunner, against the real database and embedded Redis.

Submitting publishes a real task to the session's Redis; a worker from the pipeline
tests may pick it up, so a submitted job's status is only checked as printed.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from falbridge.cli import LAZY_COMMANDS, main
from falbridge.models.db import transaction
from falbridge.models.jobs import add_result_files, create_job, get_job, lock_job, transition
from falbridge.models.serialize import job_detail, job_summary
from falbridge.models.states import EventSource, JobStatus
from falbridge.models.tables import Job

EVF = "fal-ai/evf-sam"
REGION = "fal-ai/florence-2-large/region-proposal"
SECRET = "fal-key-id:do-not-print-this-secret"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def cli(db_url, redis_url, monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FALBRIDGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FAL_KEY", SECRET)
    monkeypatch.setenv("FALBRIDGE_SECRET_KEY", "cli-test-secret-key-" + "k" * 24)  # a deployment's settings
    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        result = runner.invoke(main, list(args), input=input, prog_name="falbridge")
        assert SECRET not in result.output
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return run


def one_error_line(result, exit_code: int) -> str:
    assert result.exit_code == exit_code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def png(path: Path) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x80\x00" * 2 for _ in range(2))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path


def submitted(result) -> Job:
    assert result.exit_code == 0, result.output
    job_id, status = result.stdout.split()[:2]
    assert status == "pending"
    with transaction() as s:
        return get_job(s, job_id)


def job_count() -> int:
    with transaction() as s:
        return s.scalar(select(func.count()).select_from(Job))


def make_jobs(*specs: dict) -> list[Job]:
    with transaction() as s:
        jobs = []
        for i, spec in enumerate(specs):
            job, _ = create_job(s, spec.get("endpoint", EVF), {"n": i}, external_id=spec.get("external_id"))
            job.status = spec.get("status", "pending")
            job.created_at = T0 + timedelta(hours=i)
            jobs.append(job)
    return jobs


# -- submit ----------------------------------------------------------------------


def test_submit_with_input_json(cli):
    payload = {"prompt": "cat", "image_url": "https://example.com/cat.png", "blur_mask": 5}
    job = submitted(cli("submit", EVF, "--input", json.dumps(payload), "--metadata", '{"k": 1}'))
    assert (job.endpoint_id, job.input, job.meta) == (EVF, payload, {"k": 1})


def test_submit_records_the_cli_as_the_source(cli):
    job = submitted(cli("submit", REGION, "--image", "https://example.com/a.png"))
    with transaction() as s:
        (event,) = get_job(s, job.id, full=True).events
    assert (event.to_status, event.source) == ("pending", "cli")


def test_submit_with_input_from_a_file(cli, tmp_path):
    (tmp_path / "in.json").write_text('{"image_url": "https://example.com/a.png"}')
    job = submitted(cli("submit", REGION, "--input", f"@{tmp_path / 'in.json'}"))
    assert job.input == {"image_url": "https://example.com/a.png"}


def test_submit_with_prompt_and_local_image(cli, tmp_path):
    image = png(tmp_path / "cat.png")
    job = submitted(
        cli("submit", EVF, "--prompt", "a [bold] cat", "--negative-prompt", "dog", "--image", str(image))
    )
    assert job.input["prompt"] == "a [bold] cat" and job.input["negative_prompt"] == "dog"
    assert job.input["image_url"].startswith("data:image/png;base64,")


def test_submit_region_proposal_with_image_url(cli):
    job = submitted(cli("submit", REGION, "--image", "https://example.com/a.png"))
    assert job.input == {"image_url": "https://example.com/a.png"}


def test_same_external_id_returns_the_same_job(cli):
    args = ("submit", REGION, "--image", "https://example.com/a.png", "--external-id", "e-1")
    first, again = cli(*args), cli(*args)
    assert again.exit_code == 0 and "existing job" in again.stdout
    assert again.stdout.split()[0] == first.stdout.split()[0]
    conflict = cli("submit", REGION, "--image", "https://example.com/b.png", "--external-id", "e-1")
    assert "already names job" in one_error_line(conflict, 2)
    assert job_count() == 1


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--input", '{"prompt": '], "error: --input is not valid JSON: Expecting value"),
        (["--input", "[1]"], "--input must be a JSON object, not an array"),
        (["--input", '{"prompt": NaN}'], "NaN is not valid JSON"),
        (["--input", "@/no/such/file.json"], "cannot read"),
        (
            ["--metadata", "nope", "--prompt", "cat", "--image", "https://e.com/a.png"],
            "--metadata is not valid JSON",
        ),
        (
            ["--prompt", "cat", "--image", "https://e.com/a.png", "--input", '{"blur_mask": 4}'],
            "fal-ai/evf-sam: blur_mask: must be odd",
        ),
        (["--prompt", "cat", "--image", "/no/such/image.png"], "--image: no such file"),
        (
            ["--prompt", "cat", "--input", '{"prompt": "dog", "image_url": "https://e.com/a.png"}'],
            "--prompt conflicts with 'prompt'",
        ),
        (["--prompt", "cat", "--image", "https://e.com/a.png", "--external-id", ""], "--external-id"),
        (["--prompt", "cat"], "image_url: field required"),
        (["--timeout", "soon"], "Invalid value for '--timeout'"),
    ],
)
def test_bad_submit_arguments_exit_2_with_one_line(cli, args, expected):
    assert expected in one_error_line(cli("submit", EVF, *args), 2)
    assert job_count() == 0


def test_bad_endpoint_id_exits_2(cli):
    assert "looks like a URL" in one_error_line(cli("submit", "https://fal.run/fal-ai/evf-sam"), 2)


def test_wait_gives_up_at_the_timeout(cli):
    result = cli("submit", "fal-ai/x/never", "--input", "{}", "--wait", "--timeout", "0.3")
    if result.exit_code == 0 or not result.stderr:
        return  # a live worker from the pipeline tests finished the job within 0.3 s
    progress, error = result.stderr.splitlines()  # the progress so far, then why it stopped
    assert progress == "pending" and result.exit_code == 1
    assert re.search(r"^error: .* is still \w+ after 0.3s; is a worker running", error)


# -- jobs list / show -------------------------------------------------------------------


def test_jobs_list_filters_and_json(cli):
    a, b, c = make_jobs(
        {"status": "completed"}, {"status": "failed", "endpoint": REGION}, {"external_id": "ext-c"}
    )
    listed = json.loads(cli("jobs", "list", "--json").stdout)
    assert [j["id"] for j in listed["jobs"]] == [str(c.id), str(b.id), str(a.id)]
    assert listed["next_cursor"] is None

    def ids(*args):
        result = cli("jobs", "list", "--json", *args)
        assert result.exit_code == 0, result.output
        return [j["id"] for j in json.loads(result.stdout)["jobs"]]

    assert ids("--status", "completed") == [str(a.id)]
    assert ids("--endpoint", REGION) == [str(b.id)]
    assert ids("--external-id", "ext-c") == [str(c.id)]
    assert ids("--since", "2024-05-01T13:00:00") == [str(c.id), str(b.id)]
    assert ids("--until", "2024-05-01T13:00:00+00:00") == [str(a.id)]
    first = json.loads(cli("jobs", "list", "--json", "--limit", "2").stdout)
    assert ids("--limit", "2", "--cursor", first["next_cursor"]) == [str(a.id)]


def test_jobs_list_table(cli):
    a, b = make_jobs({"status": "completed"}, {"status": "failed"})
    with transaction() as s:
        s.get(Job, b.id).error_type = "validation_error"
    result = cli("jobs", "list", "--limit", "1")
    assert result.exit_code == 0
    assert str(b.id) in result.stdout and "validation_error" in result.stdout
    assert str(a.id) not in result.stdout and "--cursor" in result.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--limit", "0"], "--limit"),
        (["--status", "done"], "--status"),
        (["--since", "yesterday"], "--since"),
        (["--cursor", "garbage"], "--cursor"),
    ],
)
def test_jobs_list_bad_arguments(cli, args, expected):
    assert expected in one_error_line(cli("jobs", "list", *args), 2)


def finished_job() -> Job:
    [job] = make_jobs({"status": "pending"})
    with transaction() as s:
        locked = lock_job(s, job.id)
        transition(
            s,
            locked,
            JobStatus.COMPLETED,
            EventSource.WEBHOOK,
            {"request_id": "r-1"},
            result={"image": {"url": "https://v3.fal.media/files/m.png"}},
        )
        add_result_files(
            s,
            job.id,
            [
                {
                    "path": "image",
                    "url": "https://v3.fal.media/files/m.png",
                    "content_type": "image/png",
                    "file_size": 812,
                    "width": 2,
                    "height": 3,
                }
            ],
        )
    with transaction() as s:
        return get_job(s, job.id, full=True)


def test_jobs_show_table_and_json(cli):
    job = finished_job()
    table = cli("jobs", "show", str(job.id))
    assert table.exit_code == 0
    for text in (str(job.id), "completed", "https://v3.fal.media/files/m.png", "2x3", "812", "webhook"):
        assert text in table.stdout
    shown = json.loads(cli("jobs", "show", str(job.id), "--json").stdout)
    assert shown == job_detail(job)  # the CLI and the HTTP API agree on the shape
    listed = json.loads(cli("jobs", "list", "--json").stdout)["jobs"]
    assert listed == [job_summary(job)]


def test_jobs_show_unknown_id(cli):
    assert "no job with id" in one_error_line(cli("jobs", "show", str(uuid.uuid4())), 2)
    assert "no job with id 'not-a-uuid'" in one_error_line(cli("jobs", "show", "not-a-uuid"), 2)


# -- download ----------------------------------------------------------------------------


def job_with_files(urls: dict[str, str]) -> Job:
    [job] = make_jobs({"status": "completed"})
    with transaction() as s:
        add_result_files(s, job.id, [{"path": path, "url": url} for path, url in urls.items()])
    return job


def test_jobs_download_saves_every_file(cli, monkeypatch, tmp_path, webhook_sink):
    monkeypatch.setenv("FALBRIDGE_FETCH_ALLOW_PRIVATE", "1")
    job = job_with_files(
        {
            "images[0]": webhook_sink.serve_file("/a.png", b"A", "image/png"),
            "images[1]": webhook_sink.serve_file("/b.png", b"B", "image/png"),
        }
    )
    result = cli("jobs", "download", str(job.id), "--to", str(tmp_path))
    assert result.exit_code == 0 and result.stderr == ""
    saved = [Path(line) for line in result.stdout.splitlines()]
    assert [p.read_bytes() for p in saved] == [b"A", b"B"] and saved[0].parent == tmp_path / str(job.id)


def test_jobs_download_reports_each_bad_file_and_saves_the_rest(cli, monkeypatch, tmp_path, webhook_sink):
    monkeypatch.setenv("FALBRIDGE_FETCH_ALLOW_PRIVATE", "1")
    webhook_sink.respond_with(404)  # the one GET for a path it does not serve
    job = job_with_files(
        {
            "images[0]": webhook_sink.serve_file("/a.png", b"A", "image/png"),
            "images[1]": "http://a:80:80/x",
            "images[2]": "file:///etc/passwd",
            "images[3]": webhook_sink.base_url + "/gone.png",
            "images[4]": webhook_sink.serve_file("/e.png", b"E", "image/png"),
        }
    )
    result = cli("jobs", "download", str(job.id), "--to", str(tmp_path))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert [Path(line).read_bytes() for line in result.stdout.splitlines()] == [b"A", b"E"]
    *failed, last = result.stderr.splitlines()
    assert failed == [
        "failed: images[1] http://a:80:80/x: not a valid URL: Invalid port: '80:80'",
        "failed: images[2] file:///etc/passwd: only http and https URLs are fetched, not 'file'",
        f"failed: images[3] {webhook_sink.base_url}/gone.png: HTTP 404 Not Found",
    ]
    assert last == "error: 3 of 5 result files could not be downloaded"


# -- cancel ------------------------------------------------------------------------------


def test_cancel_pending_then_again(cli):
    [job] = make_jobs({"status": "pending"})
    result = cli("cancel", str(job.id))
    assert result.exit_code == 0 and "cancelled" in result.stdout
    assert "already cancelled" in one_error_line(cli("cancel", str(job.id)), 2)
    assert "no job with id" in one_error_line(cli("cancel", str(uuid.uuid4())), 2)


# -- db, help, errors ------------------------------------------------------------------


def test_db_upgrade_is_idempotent(cli):
    for _ in range(2):
        result = cli("db", "upgrade")
        assert result.exit_code == 0 and "is at revision" in result.stdout


def test_unmigrated_database_says_to_run_db_upgrade(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'fresh.db'}")
    runner = CliRunner()
    result = runner.invoke(main, ["jobs", "list"])
    assert "falbridge db upgrade" in one_error_line(result, 1)
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    assert runner.invoke(main, ["jobs", "list"]).exit_code == 0


def test_help_lists_every_command(cli):
    result = cli("--help")
    assert result.exit_code == 0
    listed = result.stdout.split("Commands:")[1]
    for name in ("submit", "jobs", "cancel", "serve", "worker", "db", "sandbox", "demo"):
        assert f"  {name} " in listed


def test_usage_errors_are_one_line(cli):
    assert "No such command" in one_error_line(cli("jobz"), 2)
    assert "--pool" in one_error_line(cli("worker", "--pool", "gevent"), 2)
    assert "give ENDPOINT_ID, or --batch" in one_error_line(cli("submit"), 2)


def test_worker_refuses_to_start_without_a_fal_key(cli, monkeypatch):
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    assert "no fal key" in one_error_line(cli("worker", "--pool", "solo"), 1)


def test_a_command_whose_module_is_missing_says_so_when_run(cli, monkeypatch):
    monkeypatch.setitem(LAZY_COMMANDS, "ghost", ("falbridge.webhooks.ghost_cli", "ghost"))
    assert "ghost" in cli("--help").stdout
    message = one_error_line(cli("ghost", "--port", "1"), 1)
    assert message == "error: falbridge ghost is not built yet (falbridge.webhooks.ghost_cli does not exist)"


def test_python_dash_m_falbridge():
    result = subprocess.run(
        [sys.executable, "-m", "falbridge", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0 and "submit" in result.stdout
