"""Bearer-token authentication on /api: who gets in, who doesn't, and what they are told."""

from __future__ import annotations

import logging

import pytest

from falbridge import config
from falbridge.config import Config, ConfigError
from falbridge.webhooks.api.auth import NOT_CONFIGURED, ApiAuth
from falbridge.webhooks.app import create_app
from tests.plugins.pipeline import API_HEADERS, TEST_API_TOKEN

OTHER_TOKEN = "second-token-for-rotation-0123456789"
JOB = {"endpoint_id": "fal-ai/some/model", "input": {"n": 1}}
# Every /api route, plus paths that don't exist: those must not answer differently
# (404 vs 401) to someone without a token.
ROUTES = [
    ("GET", "/api/jobs"),
    ("POST", "/api/jobs"),
    ("GET", "/api/jobs/x"),
    ("POST", "/api/jobs/x/cancel"),
    ("GET", "/api/nope"),
    ("DELETE", "/api/jobs"),
    ("GET", "/api"),
]


@pytest.fixture
def make_app(db_url, redis_url, monkeypatch, tmp_path):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("FALBRIDGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("FALBRIDGE_API_TOKENS", raising=False)
    monkeypatch.delenv("FALBRIDGE_API_AUTH", raising=False)

    def make(**env):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        config.use(None)  # the environment changed: read it again, as a new process would
        return create_app()

    return make


@pytest.fixture
def client(make_app):
    return make_app(FALBRIDGE_API_TOKENS=f"{TEST_API_TOKEN}, {OTHER_TOKEN}").test_client()


def unauthorized(response, fragment: str) -> None:
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="falbridge"')
    error = response.get_json()["error"]
    assert error["code"] == "unauthorized" and fragment in error["message"]


@pytest.mark.parametrize("method, path", ROUTES)
def test_every_api_route_needs_a_token(client, method, path):
    unauthorized(client.open(path, method=method, json=JOB), "missing bearer token")


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer",
        "Bearer ",
        f"Basic {TEST_API_TOKEN}",
        f"Token {TEST_API_TOKEN}",
        TEST_API_TOKEN,
        f"Bearer{TEST_API_TOKEN}",
    ],
)
def test_malformed_authorization_is_401(client, header):
    unauthorized(client.get("/api/jobs", headers={"Authorization": header}), "missing bearer token")


@pytest.mark.parametrize(
    "token",
    [
        "wrong",
        TEST_API_TOKEN[:-1],
        TEST_API_TOKEN + "x",
        TEST_API_TOKEN.upper(),
        "x" * 10_000,
        f"{TEST_API_TOKEN},{OTHER_TOKEN}",
        "ünïcödé",
        "\x00" + TEST_API_TOKEN,
    ],
)
def test_wrong_token_is_401_and_never_echoed(client, token):
    response = client.get("/api/jobs", headers={"Authorization": f"Bearer {token}"})
    unauthorized(response, "invalid bearer token")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert token not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {TEST_API_TOKEN}",
        f"bearer {TEST_API_TOKEN}",
        f"BEARER  {TEST_API_TOKEN} ",
        f"Bearer {OTHER_TOKEN}",
    ],
)
def test_each_configured_token_is_accepted(client, header):
    response = client.get("/api/jobs", headers={"Authorization": header})
    assert response.status_code == 200, response.get_data(as_text=True)


def test_the_token_is_checked_before_the_body_is_read(client):
    # An anonymous 20 MB upload is refused at the door, not parsed and then refused.
    big = b"{" + b" " * (20 * 1024 * 1024) + b"}"
    unauthorized(client.post("/api/jobs", data=big, content_type="application/json"), "missing bearer token")


@pytest.mark.parametrize("path", ["/healthz", "/api/openapi.json"])
def test_public_paths_need_no_token(client, path):
    assert client.get(path).status_code == 200


def test_the_webhook_receiver_needs_no_token_but_a_signature(client):
    response = client.post("/webhooks/fal", data=b"{}")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_signature"


def test_without_tokens_the_api_refuses_to_serve(make_app, caplog):
    with caplog.at_level(logging.ERROR):
        client = make_app().test_client()
    assert NOT_CONFIGURED in caplog.text
    for method, path in ROUTES:
        response = client.open(path, method=method, headers=API_HEADERS, json=JOB)
        assert response.status_code == 503
        assert response.get_json()["error"] == {
            "code": "auth_not_configured",
            "message": NOT_CONFIGURED,
            "details": None,
        }
    assert client.get("/healthz").status_code == 200


def test_auth_off_is_explicit_and_loud(make_app, caplog):
    with caplog.at_level(logging.WARNING):
        client = make_app(FALBRIDGE_API_AUTH="off").test_client()
    assert "API authentication is OFF" in caplog.text
    assert client.get("/api/jobs").status_code == 200
    # "off" beats configured tokens: the switch means what it says.
    assert (
        make_app(FALBRIDGE_API_AUTH="OFF", FALBRIDGE_API_TOKENS=TEST_API_TOKEN)
        .test_client()
        .get("/api/jobs")
        .status_code
        == 200
    )


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"FALBRIDGE_API_AUTH": "false"}, "should be 'on' or 'off'"),
        ({"FALBRIDGE_API_AUTH": "0"}, "should be 'on' or 'off'"),
        ({"FALBRIDGE_API_TOKENS": "s3cr3t"}, "token 1 is shorter than 16"),
        ({"FALBRIDGE_API_TOKENS": f"{TEST_API_TOKEN},tiny9"}, "token 2 is shorter than 16"),
        ({"FALBRIDGE_API_TOKENS": "has a space in the middle of it"}, "token 1 has characters"),
        ({"FALBRIDGE_API_TOKENS": 'quote"inside-the-token-value'}, "token 1 has characters"),
    ],
)
def test_unusable_settings_stop_the_app_from_starting(make_app, env, fragment):
    with pytest.raises(ConfigError, match=fragment) as caught:
        make_app(**env)
    secret = env.get("FALBRIDGE_API_TOKENS", "")
    assert not secret or secret.split(",")[-1] not in str(caught.value)


def test_explicit_on_with_tokens_works(make_app):
    client = make_app(FALBRIDGE_API_AUTH="on", FALBRIDGE_API_TOKENS=TEST_API_TOKEN).test_client()
    assert client.get("/api/jobs", headers=API_HEADERS).status_code == 200


def test_tokens_are_held_only_as_digests():
    auth = ApiAuth.from_config(
        Config.from_environ({"FALBRIDGE_API_TOKENS": f"{TEST_API_TOKEN},{OTHER_TOKEN}"}).api
    )
    assert len(auth.digests) == 2 and all(len(d) == 32 for d in auth.digests)
    held = repr(auth) + repr(vars(auth))
    assert TEST_API_TOKEN not in held and OTHER_TOKEN not in held
    assert repr(auth) == "ApiAuth(enabled=True, tokens=2)"
    assert all(TEST_API_TOKEN.encode() not in d for d in auth.digests)
