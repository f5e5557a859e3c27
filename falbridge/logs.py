"""Log lines: JSON objects (FALBRIDGE_LOG_FORMAT=json, the default) or text for people
(`text`, which `make demo` sets).

The significant events of the flow (a job's transition, a callback stored or rejected,
an outgoing event delivered or exhausted, a sweeper action) are logged by `event()`: the
message for people, and as fields the event's name and its ids (job_id, request_id, ...),
never an input, a result or a secret, so a JSON line can be indexed as it is.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

EVENTS = logging.getLogger("falbridge.events")
# What a LogRecord carries of its own: anything else on it came from `extra`.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def event(name: str, message: str, **fields: Any) -> None:
    """One significant event: `fields` are ids and statuses only."""
    EVENTS.info(message, extra={"event": name, **fields})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def use_format(logger: logging.Logger, log_format: str) -> None:
    """Every handler of `logger` (Celery's, once it set them up) writes `log_format`."""
    for handler in logger.handlers:
        handler.setFormatter(formatter(log_format))


# httpx logs each request's URL at INFO: a fal submit's carries the webhook URL and its
# token, a subscriber's URL may carry the user's own; and a line per request was a tenth
# of the worker's logging. Our own lines say what was sent, without query strings.
_HTTP_CLIENT_LOGGERS = ("httpx", "httpcore")


def quiet_http_clients() -> None:
    """In our own processes only (never on import: a user's app keeps its levels)."""
    for name in _HTTP_CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure(log_format: str, level: int = logging.INFO) -> None:
    """The root logger of a process nothing else set up (gunicorn's workers): one handler
    on stderr in `log_format`."""
    quiet_http_clients()
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        root.addHandler(handler)
        root.setLevel(level)
    use_format(root, log_format)
