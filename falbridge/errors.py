"""The exceptions a user of falbridge catches, from the Python API and from
`falbridge.Client` alike. Everything here is a FalbridgeError."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class FalbridgeError(Exception):
    """Base class of everything falbridge raises at its users."""


class InvalidInput(FalbridgeError, ValueError):
    """The request was refused before anything was stored: a bad endpoint id, a model
    input the endpoint's schema refuses, malformed metadata. `errors` lists
    `{"field", "message"}` (at most 20; `omitted` counts the rest)."""

    def __init__(self, message: str, errors: Sequence[dict[str, str]] = (), omitted: int = 0) -> None:
        super().__init__(message)
        self.errors = list(errors)
        self.omitted = omitted


def require_input_mapping(input: object) -> None:
    """A model input is a mapping of the endpoint's fields; say so early, in our words."""
    if not isinstance(input, Mapping):
        kind = type(input).__name__
        raise InvalidInput(f"input: must be a mapping of the endpoint's fields, not {kind}", [])


class ExternalIdConflict(FalbridgeError):
    """The external_id already names a job with another endpoint or input."""

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class UploadFailed(FalbridgeError):
    """An input file could not be uploaded to fal storage, so no job was stored; the
    message says what fal (or the network) answered. Trying again later may work."""


class JobNotFound(FalbridgeError, LookupError):
    """No job has this id (or id prefix)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id[:64]!r}")
        self.job_id = job_id


class DeliveryNotFound(FalbridgeError, LookupError):
    """No stored delivery (fal callback) has this id."""

    def __init__(self, delivery_id: int | str) -> None:
        super().__init__(f"no delivery with id {str(delivery_id)[:64]!r}")
        self.delivery_id = delivery_id


class AmbiguousJobId(FalbridgeError, LookupError):
    """An id prefix that more than one job's id starts with: give more of it."""

    def __init__(self, prefix: str) -> None:
        super().__init__(f"more than one job id starts with {prefix!r}; give more of it")
        self.prefix = prefix


class JobAlreadyFinished(FalbridgeError):
    """Cancel asked of a job that is completed, failed or cancelled already."""

    def __init__(self, job: Any) -> None:
        super().__init__(f"job {job.id} is already {job.status}; nothing to cancel")
        self.job = job


class WaitTimeout(FalbridgeError, TimeoutError):
    """`wait` gave up before the job finished; `job` is how it was last seen."""

    def __init__(self, job: Any, timeout: float) -> None:
        super().__init__(f"job {job.id} is still {job.status} after {timeout:g}s")
        self.job = job


class ApiError(FalbridgeError):
    """falbridge's HTTP API refused a request in a way none of the above describes
    (authentication, a limit, the server itself); `status`, `code` and `details` are its
    JSON error's."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.details = status, code, details


class SubscriptionNotFound(FalbridgeError, LookupError):
    """No webhook subscription has this id."""

    def __init__(self, subscription_id: str) -> None:
        super().__init__(f"no subscription with id {subscription_id[:64]!r}")
        self.subscription_id = subscription_id


class EventNotFound(FalbridgeError, LookupError):
    """No job event has this id (`evt_<n>`, as webhook-id shows it), or the subscription
    named with it does not exist."""

    def __init__(self, event_id: str) -> None:
        super().__init__(f"no event {event_id[:64]!r}, or no such subscription")
        self.event_id = event_id


class DuplicateSubscription(FalbridgeError):
    """Another subscription already sends these event types to this URL."""

    def __init__(self, message: str, subscription_id: str) -> None:
        super().__init__(message)
        self.subscription_id = subscription_id
