"""A job's own callbacks, asked for at submit: `notify_url` (one signed POST of the job's
terminal event, under the deployment's notify secret) and `on_complete` (a Celery task
name of the user's, sent `(job_id, event_id)` on `on_complete_queue`, Celery's default
queue otherwise). Both go through the outbox: at least once, retried on its schedule.

Checked before anything is stored: the URL by the subscribers' rule (public, or inside
FALBRIDGE_NOTIFY_ALLOWED_NETWORKS), the names by Celery's usual shape.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from falbridge.worker.notify.address import Network, refusal

# Dotted Python names (myapp.tasks.crop), and the ':' and '-' some projects use.
CELERY_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:-]{0,254}$"
_CELERY_NAME = re.compile(CELERY_NAME_PATTERN)
NAME_RULE = "must be 1 to 255 letters, digits, '_', '.', ':' or '-', not starting with a digit"


class CallbackRefused(ValueError):
    """A callback the job cannot have; `field` names it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


@dataclass(frozen=True)
class JobCallbacks:
    notify_url: str | None = None
    on_complete: str | None = None
    on_complete_queue: str | None = None

    def columns(self) -> dict[str, str | None]:
        return asdict(self)


def checked(callbacks: JobCallbacks, allowed: Sequence[Network]) -> JobCallbacks:
    """The callbacks, if falbridge will make them; CallbackRefused naming the field if not."""
    why = refusal(callbacks.notify_url, allowed) if callbacks.notify_url is not None else None
    if why is not None:
        raise CallbackRefused("notify_url", why)
    for field in ("on_complete", "on_complete_queue"):
        value = getattr(callbacks, field)
        if value is not None and not _CELERY_NAME.fullmatch(value):
            raise CallbackRefused(field, NAME_RULE)
    if callbacks.on_complete_queue is not None and callbacks.on_complete is None:
        raise CallbackRefused("on_complete_queue", "needs on_complete (the task to send)")
    return callbacks
