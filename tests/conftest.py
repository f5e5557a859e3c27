"""Shared fixtures. Each area's fixtures live in tests/plugins/ and are re-exported here."""

import os
import tempfile

import pytest

from falbridge import config
from falbridge.worker import metrics
from tests.plugins.browser import *  # noqa: F403
from tests.plugins.db import *  # noqa: F403
from tests.plugins.fal import *  # noqa: F403
from tests.plugins.pipeline import *  # noqa: F403
from tests.plugins.sandbox import *  # noqa: F403
from tests.plugins.storage import *  # noqa: F403
from tests.plugins.subscriber import *  # noqa: F403

# The test process's metric files (set up once per process, by whatever counts first):
# out of the working directory's var/.
os.environ.setdefault("FALBRIDGE_METRICS_DIR", tempfile.mkdtemp(prefix="falbridge-metrics-"))
# And its var dir (the default SQLite file, stored files, the embedded Redis) out of the
# checkout's var/, which is the developer's own (`make demo`'s): code that reads the
# configuration outside a test's own settings, from a thread or a later test, found none and
# wrote there.
os.environ.setdefault("FALBRIDGE_VAR_DIR", tempfile.mkdtemp(prefix="falbridge-var-"))
# Under a role of its own: the `falbridge serve` and `falbridge worker` processes tests start
# inherit that directory and, as in production, empty their role's files when they start,
# which took this process's with them (its later counts went to unlinked files, so a
# scrape in the full suite never saw them move).
metrics.setup("test-process")


@pytest.fixture(autouse=True)
def fresh_config(monkeypatch):
    """A process reads its configuration once; to the code under test, every change a test
    makes to the environment is a new process, so the configuration is read again after it.
    (The Celery worker's threads may read it at any moment: each reset comes after the
    change, so whatever they cached before it is dropped.)"""
    setenv, delenv = monkeypatch.setenv, monkeypatch.delenv

    def setenv_then_forget(*args, **kwargs):
        setenv(*args, **kwargs)
        config.use(None)

    def delenv_then_forget(*args, **kwargs):
        delenv(*args, **kwargs)
        config.use(None)

    monkeypatch.setenv, monkeypatch.delenv = setenv_then_forget, delenv_then_forget
    config.use(None)
    yield
    config.use(None)


@pytest.fixture(autouse=True)
def store_tasks_only_beside_the_test_worker(request):
    """Completing a job with files enqueues its storing. Outside the tests that run the
    Celery worker there is no test broker: enqueuing would start the embedded one (the
    product's default) under the working directory and bind the Celery app to it, and a
    later session-wide worker would then not hear its control commands. There, as with a
    broker down, stored files wait for the sweeper or an explicit store_files call."""
    if "pipeline_env" in request.fixturenames:
        yield
        return
    from falbridge.worker.storage import dispatch

    previous = dispatch.set_dispatcher(None)
    try:
        yield
    finally:
        dispatch.set_dispatcher(previous)
