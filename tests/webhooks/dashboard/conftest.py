from __future__ import annotations

import pytest

from falbridge.webhooks.app import create_app
from tests.plugins.pipeline import TEST_API_TOKEN, TEST_SECRET_KEY


@pytest.fixture
def app(db_url, redis_url, monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FALBRIDGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FALBRIDGE_API_TOKENS", TEST_API_TOKEN)
    monkeypatch.setenv("FALBRIDGE_SECRET_KEY", TEST_SECRET_KEY)
    return create_app()


@pytest.fixture
def client(app):
    """A browser's view: cookies kept, no bearer token."""
    return app.test_client()
