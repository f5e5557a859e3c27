"""Settings of a sandbox instance.

`SandboxConfig` is fixed when the server starts; a subset of it (RUNTIME_KEYS) and all
of `Faults` can be changed while it runs through the admin API. Both are validated in
one place so the CLI, the admin API and the in-process API reject the same mistakes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


class SettingsError(ValueError):
    """A setting name or value the sandbox refuses; the message names the culprit."""


# Knobs decided once per submit, in this order. The order is part of the reproducibility
# contract: each knob consumes exactly one draw from the request's random stream.
SUBMIT_KNOBS = (
    "submit_5xx",
    "submit_429",
    "submit_response_lost",
    "submit_delay",
    "webhook_before_response",
    "drop",
    "duplicate",
    "delay",
    "reorder",
    "payload_error",
    "error",
)
# Knobs decided again for every delivery attempt.
ATTEMPT_KNOBS = ("bad_signature", "stale_timestamp")
# Knobs decided for every call to the storage API (token, upload), in their own stream.
STORAGE_KNOBS = ("storage_auth_down", "upload_refused")
# Knobs about a job's result, decided once per submit in their own stream (so adding them
# shifted no draw of SUBMIT_KNOBS): `large_result` pads a successful result to 10 KB or
# more (fal keeps those six minutes); `drop_large_callbacks` drops the callbacks of that
# share of the large results; `result_error` refuses every GET of the result for good
# (`result_error_status`, an HTML page such as a gateway sends: nothing a model answered);
# `unstorable_result` puts a NUL character in a successful result's text (a model may
# answer any string; PostgreSQL stores no NUL).
RESULT_KNOBS = ("large_result", "drop_large_callbacks", "result_error", "unstorable_result")
PROBABILITY_KNOBS = SUBMIT_KNOBS + ATTEMPT_KNOBS + STORAGE_KNOBS + RESULT_KNOBS
# fal keeps a JSON result an hour after completion, six minutes once it is 10 KB or more
# (docs/fal-protocol.md, "Result"); `retention_scale` shrinks both for tests.
LARGE_RESULT_BYTES = 10 * 1024


@dataclass(frozen=True)
class Faults:
    """Fault probabilities (0..1) plus the values that shape each fault."""

    drop: float = 0.0
    duplicate: float = 0.0
    duplicate_copies: int = 1
    delay: float = 0.0
    delay_s: float = 1.0
    reorder: float = 0.0
    reorder_window_s: float = 1.0
    webhook_before_response: float = 0.0
    submit_5xx: float = 0.0
    submit_5xx_status: int = 503
    submit_429: float = 0.0
    retry_after_s: float = 1.0
    submit_response_lost: float = 0.0
    submit_delay: float = 0.0
    submit_delay_s: float = 1.0
    payload_error: float = 0.0
    error: float = 0.0
    bad_signature: float = 0.0
    stale_timestamp: float = 0.0
    stale_by_s: float = 600.0
    storage_auth_down: float = 0.0
    upload_refused: float = 0.0
    upload_refused_status: int = 403
    large_result: float = 0.0
    drop_large_callbacks: float = 0.0
    result_error: float = 0.0
    result_error_status: int = 403
    unstorable_result: float = 0.0

    def updated(self, changes: dict[str, Any]) -> Faults:
        known = {f.name for f in dataclasses.fields(self)}
        checked = {}
        for name, value in changes.items():
            if name not in known:
                raise SettingsError(f"unknown fault knob: {name}")
            checked[name] = _check_fault_value(name, value)
        return dataclasses.replace(self, **checked)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_fault_value(name: str, value: Any) -> Any:
    if name in PROBABILITY_KNOBS:
        return _number(name, value, low=0.0, high=1.0)
    if name == "duplicate_copies":
        return _integer(name, value, low=0, high=100)
    if name == "submit_5xx_status":
        return _integer(name, value, low=500, high=599)
    if name in ("upload_refused_status", "result_error_status"):
        return _integer(name, value, low=400, high=599)
    return _number(name, value, low=0.0)


def geometric_backoff(first: float = 1.0, count: int = 9) -> list[float]:
    return [first * 2**i for i in range(count)]


@dataclass
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = 0
    latency_s: float = 0.03
    queue_latency_s: float = 0.0
    concurrency: int = 8
    retention_s: float = 3600.0
    large_result_retention_s: float = 360.0
    retention_scale: float = 1.0
    user_id: str = "sandbox-user"
    delivery_attempts: int = 10
    delivery_backoff_s: list[float] = field(default_factory=geometric_backoff)
    delivery_timeout_s: float = 15.0
    delivery_workers: int = 16
    duplicate_spacing_s: float = 0.05
    seed: int | str = 0
    faults: Faults = field(default_factory=Faults)
    allowed_keys: frozenset[str] | set[str] | None = None
    webhook_on_cancel: bool = True
    florence_image_probability: float = 1.0
    # fal documents status/result/cancel under owner/app only; full-path URLs get 404
    # unless this is set (fal's generated per-model OpenAPI shows the full form).
    accept_full_path_urls: bool = False
    fetch_timeout_s: float = 5.0
    # The scheme://host[:port] put in status/response/cancel and file URLs; without it the
    # caller's own (X-Forwarded-Proto/-Host first), so a client behind TLS stays on https.
    public_url: str | None = None

    def updated(self, changes: dict[str, Any]) -> SandboxConfig:
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            check = RUNTIME_KEYS.get(name)
            if check is None:
                raise SettingsError(f"not adjustable at runtime: {name}")
            checked[name] = check(name, value)
        return dataclasses.replace(self, **checked)

    def retention_for(self, result_bytes: int) -> float:
        """Seconds a finished request of this result size stays fetchable."""
        kept = self.large_result_retention_s if result_bytes >= LARGE_RESULT_BYTES else self.retention_s
        return kept * self.retention_scale

    def runtime_view(self) -> dict[str, Any]:
        return {name: _jsonable(getattr(self, name)) for name in RUNTIME_KEYS}


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _number(name: str, value: Any, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SettingsError(f"{name} must be a number")
    if not low <= value <= high or math.isnan(value):
        raise SettingsError(f"{name} must be between {low} and {high}")
    return float(value)


def _integer(name: str, value: Any, low: int, high: int | float = math.inf) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(f"{name} must be an integer")
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}")
    return value


def _backoff(name: str, value: Any) -> list[float]:
    if not isinstance(value, (list, tuple)):
        raise SettingsError(f"{name} must be a list of seconds")
    return [_number(name, item, low=0.0) for item in value]


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise SettingsError(f"{name} must be a non-empty string")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SettingsError(f"{name} must be true or false")
    return value


def _seed(name: str, value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SettingsError(f"{name} must be an integer or a string")
    return value


RUNTIME_KEYS = {
    "latency_s": lambda n, v: _number(n, v, low=0.0),
    "queue_latency_s": lambda n, v: _number(n, v, low=0.0),
    "concurrency": lambda n, v: _integer(n, v, low=1, high=512),
    "retention_s": lambda n, v: _number(n, v, low=0.0),
    "large_result_retention_s": lambda n, v: _number(n, v, low=0.0),
    "retention_scale": lambda n, v: _number(n, v, low=0.0),
    "delivery_attempts": lambda n, v: _integer(n, v, low=1, high=1000),
    "delivery_backoff_s": _backoff,
    "delivery_timeout_s": lambda n, v: _number(n, v, low=0.001),
    "duplicate_spacing_s": lambda n, v: _number(n, v, low=0.0),
    "user_id": _text,
    "seed": _seed,
    "webhook_on_cancel": _flag,
    "florence_image_probability": lambda n, v: _number(n, v, low=0.0, high=1.0),
    "accept_full_path_urls": _flag,
}


def backoff_delay(backoff: list[float], failed_attempt: int) -> float:
    """Delay after attempt number `failed_attempt` (1-based); the last entry repeats."""
    if not backoff:
        return 0.0
    return backoff[min(failed_attempt, len(backoff)) - 1]
