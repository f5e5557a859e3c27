"""The configuration: read once, from one place, validated, and a bad value named."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from falbridge.config import Config, ConfigError

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("falbridge", "models", "worker", "webhooks", "sandbox", "migrations")
TOKEN = "falbridge-config-test-token-0123456789"


def test_defaults_are_the_embedded_setup():
    cfg = Config.from_environ({})
    assert cfg.database.url == "" and cfg.broker.redis_url == ""
    assert cfg.fal.queue_url == "https://queue.fal.run" and cfg.fal.api_key() is None
    assert cfg.fal.webhook_url_base == "http://127.0.0.1:8000/webhooks/fal"
    assert cfg.api.auth == "on" and cfg.sweep.outcome_unknown_policy == "resubmit"


def test_an_empty_variable_counts_as_unset():
    assert Config.from_environ({"FALBRIDGE_SUBMIT_LEASE_S": "", "FAL_KEY": ""}) == Config.from_environ({})


def test_values_are_parsed_and_normalised():
    cfg = Config.from_environ(
        {
            "DATABASE_URL": "postgres://u:p@db/x",
            "FALBRIDGE_SUBMIT_LEASE_S": "30",
            "FALBRIDGE_API_AUTH": " OFF ",
            "FALBRIDGE_FETCH_ALLOW_PRIVATE": "1",
            "PUBLIC_BASE_URL": "https://example.com/",
        }
    )
    assert cfg.database.resolved_url() == "postgresql+psycopg://u:p@db/x"
    assert cfg.submit.lease_s == 30.0 and cfg.api.auth == "off" and cfg.fetch.allow_private
    assert cfg.fal.webhook_url_base == "https://example.com/webhooks/fal"


def test_the_fal_key_is_fal_key_or_id_and_secret():
    assert (
        Config.from_environ({"FAL_KEY": " k:s\n", "FAL_KEY_ID": "x", "FAL_KEY_SECRET": "y"}).fal.api_key()
        == "k:s"
    )
    assert Config.from_environ({"FAL_KEY_ID": "id", "FAL_KEY_SECRET": "secret"}).fal.api_key() == "id:secret"
    with pytest.raises(ConfigError, match=r"^FAL_KEY_SECRET: not set"):
        Config.from_environ({"FAL_KEY_ID": "id"})


@pytest.mark.parametrize(
    "variable, value, says",
    [
        ("FALBRIDGE_SUBMIT_LEASE_S", "soon", "FALBRIDGE_SUBMIT_LEASE_S: Input should be a valid number"),
        (
            "FALBRIDGE_SUBMIT_LEASE_S",
            "0",
            "FALBRIDGE_SUBMIT_LEASE_S: Input should be greater than 0 (got '0')",
        ),
        (
            "FALBRIDGE_MAX_JSON_DEPTH",
            "-1",
            "FALBRIDGE_MAX_JSON_DEPTH: Input should be greater than or equal to 1",
        ),
        ("FALBRIDGE_OUTCOME_UNKNOWN_POLICY", "retry", "should be 'resubmit' or 'fail' (got 'retry')"),
        ("FALBRIDGE_API_AUTH", "maybe", "FALBRIDGE_API_AUTH: Input should be 'on' or 'off'"),
        ("FALBRIDGE_RECEIVER_PORT", "70000", "FALBRIDGE_RECEIVER_PORT: Input should be less than or equal"),
        (
            "FALBRIDGE_FETCH_ALLOW_PRIVATE",
            "perhaps",
            "FALBRIDGE_FETCH_ALLOW_PRIVATE: Input should be a valid boolean",
        ),
        (
            "FALBRIDGE_API_TOKENS",
            f"{TOKEN},short",
            "FALBRIDGE_API_TOKENS: token 2 is shorter than 16 characters",
        ),
    ],
)
def test_a_bad_value_is_one_message_naming_its_variable(variable, value, says):
    with pytest.raises(ConfigError) as caught:
        Config.from_environ({variable: value})
    assert says in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "variable, value",
    [
        ("FALBRIDGE_API_TOKENS", "a secret token with spaces in it"),
        ("DATABASE_URL", "postgresql://user:hunter2-password@db/x"),
    ],
)
def test_secrets_and_urls_are_never_echoed(variable, value):
    cfg_or_error: object
    try:
        cfg_or_error = Config.from_environ({variable: value})
    except ConfigError as exc:
        cfg_or_error = exc
    assert value not in str(cfg_or_error) and value not in repr(cfg_or_error)
    assert "hunter2" not in repr(cfg_or_error)


def test_variables_lists_each_alias_once():
    names = Config.variables()
    assert len(names) == len(set(names)) and "DATABASE_URL" in names and "FAL_KEY" in names


def _environment_reads(tree: ast.AST) -> list[int]:
    """Lines that read a variable: os.environ[...], os.environ.get(...), os.getenv(...)."""
    lines = []
    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            text = ast.unparse(node.value)
        elif isinstance(node, ast.Call):
            text = ast.unparse(node.func)
        if text in ("os.environ", "os.environ.get", "os.environ.setdefault", "os.getenv"):
            lines.append(node.lineno)
    return lines


def test_only_the_config_module_reads_the_environment():
    offenders = []
    for folder in PRODUCT:
        for path in (ROOT / folder).rglob("*.py"):
            if path == ROOT / "falbridge" / "config.py":
                continue
            for line in _environment_reads(ast.parse(path.read_text(), str(path))):
                offenders.append(f"{path.relative_to(ROOT)}:{line}")
    assert offenders == [], "read the variable through falbridge.config instead"
