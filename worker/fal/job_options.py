"""A job's fal options: what a user may ask of fal for one job, checked when the job is
accepted, stored with it, and sent as fal's submit headers on every submit and resubmit
(fal-api.md 1.7 and 10).

    priority          X-Fal-Queue-Priority               normal | low
    start_timeout     X-Fal-Request-Timeout              seconds (> 1) until the job must start
    object_lifecycle  X-Fal-Object-Lifecycle-Preference  seconds until the output files expire
    store_io          X-Fal-Store-IO                     1 | 0: keep the JSON payloads at fal
    tags              X-Fal-Tags                         up to 10 key=value pairs

Tags are kept because fal's billing API reports them per request ("tagged billing events"
built from the X-Fal-Tags set on that request) and fal's newer clients send them; fal's
gateway drops a pair it refuses without saying so, so they are checked here by its rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from falbridge.worker.fal.records import SubmitOptions

OPTION_NAMES = ("priority", "start_timeout", "object_lifecycle", "store_io", "tags")
PRIORITIES = ("normal", "low")
MIN_START_TIMEOUT_S = 1  # both fal clients refuse a start timeout of 1 s or less
MAX_TAGS = 10
MAX_TAG_KEY = 64
MAX_TAG_VALUE = 256
MAX_TAGS_BYTES = 1024
RESERVED_TAG_PREFIX = "fal."
_TAG_KEY = re.compile(r"[a-z0-9._-]+")
_TAG_VALUE = re.compile(r"[ -+\--~]*")  # printable ASCII but the comma, the pair separator
TAGS_HEADER = "X-Fal-Tags"


class InvalidOptions(ValueError):
    """Options refused. ``errors``: ``[{"field": "options.<name>", "message": ...}]``."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))

    def __reduce__(self) -> tuple[type, tuple[list[dict[str, str]]]]:
        return type(self), (self.errors,)


class JobOptions(BaseModel):
    """The options as a user gives them; unset ones are not sent (fal's defaults apply)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    priority: Literal["normal", "low"] | None = None
    start_timeout: Annotated[float, Field(gt=MIN_START_TIMEOUT_S, allow_inf_nan=False)] | None = None
    object_lifecycle: Annotated[int, Field(ge=1)] | None = None
    store_io: bool | None = None
    tags: dict[str, str] | None = None

    @field_validator("object_lifecycle", mode="before")
    @classmethod
    def _whole_number(cls, value: Any) -> Any:
        # JSON has one number type: 3600.0 is the integer 3600 to JSON Schema (and to us).
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    @field_validator("tags")
    @classmethod
    def _fal_tag_rules(cls, tags: dict[str, str] | None) -> dict[str, str] | None:
        if tags is None:
            return None
        if len(tags) > MAX_TAGS:
            raise ValueError(f"at most {MAX_TAGS} tags (got {len(tags)})")
        for key, value in tags.items():
            if not _TAG_KEY.fullmatch(key) or len(key) > MAX_TAG_KEY:
                raise ValueError(f"tag key {key[:64]!r} must be 1-{MAX_TAG_KEY} of a-z 0-9 . _ -")
            if key.startswith(RESERVED_TAG_PREFIX):
                raise ValueError(f"tag key {key[:64]!r}: the {RESERVED_TAG_PREFIX!r} prefix is fal's own")
            if not _TAG_VALUE.fullmatch(value) or len(value) > MAX_TAG_VALUE:
                raise ValueError(
                    f"tag {key!r}: the value must be at most {MAX_TAG_VALUE} printable ASCII "
                    "characters, without a comma"
                )
        if sum(len(k) + len(v) for k, v in tags.items()) > MAX_TAGS_BYTES:
            raise ValueError(f"tags must hold at most {MAX_TAGS_BYTES} bytes of keys and values together")
        return tags


def options_given(
    *,
    priority: str | None = None,
    start_timeout: float | None = None,
    object_lifecycle: int | None = None,
    store_io: bool | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """The Python API's keyword arguments as the `options` of a submit: those not None."""
    given = {
        "priority": priority,
        "start_timeout": start_timeout,
        "object_lifecycle": object_lifecycle,
        "store_io": store_io,
        "tags": dict(tags) if tags is not None else None,
    }
    return {name: value for name, value in given.items() if value is not None} or None


def checked_options(raw: Mapping[str, Any] | JobOptions | None) -> dict[str, Any] | None:
    """The options to store with a job: only those set, or None for none. InvalidOptions
    names each option refused (an unknown name too)."""
    if raw is None:
        return None
    if isinstance(raw, JobOptions):
        options = raw
    elif not isinstance(raw, Mapping):
        raise InvalidOptions([{"field": "options", "message": "must be a JSON object or null"}])
    else:
        try:
            options = JobOptions.model_validate(dict(raw))
        except ValidationError as exc:
            raise InvalidOptions([_readable(error) for error in exc.errors(include_url=False)]) from None
    return options.model_dump(exclude_none=True) or None


def _readable(error: Any) -> dict[str, str]:
    where = ".".join(str(part) for part in error["loc"])
    field = f"options.{where[:64]}"
    if error["type"] == "extra_forbidden":
        return {"field": field, "message": f"unknown option (known: {', '.join(OPTION_NAMES)})"}
    message = str(error["msg"]).removeprefix("Value error, ")
    return {"field": field, "message": message}


def priority_of(options: Mapping[str, Any] | None) -> str:
    """The job's priority column: what claims order by."""
    return str((options or {}).get("priority", "normal"))


def submit_headers(options: Mapping[str, Any] | None) -> dict[str, str]:
    """fal's submit headers for a job's stored options (checked_options' output); {} for
    none. Pure: the same options give the same headers, in every worker."""
    if not options:
        return {}
    headers = SubmitOptions(
        request_timeout=options.get("start_timeout"),
        object_lifecycle=options.get("object_lifecycle"),
        priority=options.get("priority"),
        store_io=options.get("store_io"),
    ).headers()
    tags = options.get("tags")
    if tags:
        # Sorted: PostgreSQL's JSONB does not keep the order the user wrote them in.
        headers[TAGS_HEADER] = ",".join(f"{key}={tags[key]}" for key in sorted(tags))
    return headers
