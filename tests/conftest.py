"""Shared fixtures. Each area's fixtures live in tests/plugins/ and are re-exported here."""

import pytest

from falbridge import config
from tests.plugins.db import *  # noqa: F403
from tests.plugins.fal import *  # noqa: F403
from tests.plugins.pipeline import *  # noqa: F403
from tests.plugins.sandbox import *  # noqa: F403
from tests.plugins.storage import *  # noqa: F403
from tests.plugins.subscriber import *  # noqa: F403


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
