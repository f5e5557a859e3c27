"""falbridge's configuration: every variable it reads, read once per process and validated
before anything starts.

Each field names its environment variable (its alias); an unset or empty variable takes the
default. `Config.from_environ()` is the one place the environment is read: a value that
can't be used raises ConfigError naming the variable (the CLI prints it as one `error:`
line and exits 2), and nothing reads os.environ afterwards. docs/configuration.md lists
the same variables; tests/test_config_docs.py checks that the two agree.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any, Literal, Self, get_origin

from pydantic import ValidationError

from falbridge.config_base import (
    FAL_CDN_URL,
    FAL_JWKS_URL,
    FAL_QUEUE_URL,
    FAL_REST_URL,
    MIB,
    MIN_SECRET_KEY_LENGTH,
    MIN_TOKEN_LENGTH,
    UPLOAD_THRESHOLD,
    ConfigError,
    Section,
    env,
    normalize_database_url,
    split_list,
    split_tokens,
)
from falbridge.config_edges import (
    ApiConfig,
    BrokerConfig,
    ClientConfig,
    DatabaseConfig,
    DemoConfig,
    FalConfig,
    ObservabilityConfig,
    ReceiverConfig,
    SecretConfig,
)
from falbridge.config_flow import (
    DrainConfig,
    FetchConfig,
    FlowConfig,
    NotifyConfig,
    PurgeConfig,
    StorageConfig,
    SubmitConfig,
    SweepConfig,
    UploadConfig,
    parse_age,
    parse_endpoint_caps,
)

__all__ = [
    "FAL_CDN_URL",
    "FAL_JWKS_URL",
    "FAL_QUEUE_URL",
    "FAL_REST_URL",
    "MIB",
    "MIN_SECRET_KEY_LENGTH",
    "MIN_TOKEN_LENGTH",
    "UPLOAD_THRESHOLD",
    "ApiConfig",
    "BrokerConfig",
    "ClientConfig",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "DemoConfig",
    "DrainConfig",
    "FalConfig",
    "FetchConfig",
    "FlowConfig",
    "NotifyConfig",
    "ObservabilityConfig",
    "PurgeConfig",
    "ReceiverConfig",
    "SecretConfig",
    "Section",
    "StorageConfig",
    "SubmitConfig",
    "SweepConfig",
    "UploadConfig",
    "current",
    "env",
    "normalize_database_url",
    "parse_age",
    "parse_endpoint_caps",
    "split_list",
    "split_tokens",
    "use",
]


class Config(Section):
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


def _section_type(name: str) -> type[Section]:
    annotation = Config.model_fields[name].annotation
    assert isinstance(annotation, type) and issubclass(annotation, Section)
    return annotation


def _read_section(section: type[Section], environ: Mapping[str, str]) -> Section:
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


def _field_of(section: type[Section], alias: str) -> str:
    return next((name for name, f in section.model_fields.items() if f.alias == alias), alias)


def _check_fal_key(fal: FalConfig) -> None:
    if fal.key is None and (fal.key_id is None) != (fal.key_secret is None):
        missing = "FAL_KEY_SECRET" if fal.key_secret is None else "FAL_KEY_ID"
        raise ConfigError(f"{missing}: not set, but its other half is (set both, or FAL_KEY)")


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
