"""The pieces every configuration section is built from (falbridge/config.py reads
them all): the error, the field reader, the section base, the shared limits and the
parsers of list-valued variables."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

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
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9._~+/=-]+")


class ConfigError(ValueError):
    """A variable's value can't be used; the message names the variable and never quotes
    a secret's value."""


def env(name: str, default: Any, **constraints: Any) -> Any:
    """A field read from the environment variable `name`."""
    return Field(default, alias=name, **constraints)


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, str_strip_whitespace=True)


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
