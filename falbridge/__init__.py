"""falbridge: run fal.ai model jobs at volume, webhook-driven, nothing lost, nothing twice.

In process (the database and the broker configured as for a worker):

    import falbridge
    job = falbridge.submit("fal-ai/evf-sam", {"prompt": "cat", "image_url": Path("cat.png")})
    job = falbridge.wait(job.id)        # a falbridge.Job: job.status, job.result, job.files

Over the HTTP API, from anywhere:

    with falbridge.Client("https://falbridge.example.com", token) as client:
        job = client.wait(client.submit("fal-ai/evf-sam", {...}).id)

Both return the same values (falbridge.Job, JobSummary, JobPage, ResultFile, JobEvent,
LiveStatus; for fal's stored callbacks, from list_deliveries, get_delivery and
reapply_delivery: Delivery, DeliverySummary, DeliveryPage, Reapplied) and
raise the same exceptions (falbridge.InvalidInput, ExternalIdConflict, JobNotFound, ...).
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from pkgutil import extend_path
from typing import TYPE_CHECKING, Any

from falbridge.batch_values import BatchResult
from falbridge.delivery_values import Delivery, DeliveryPage, DeliverySummary, Reapplied
from falbridge.errors import (
    AmbiguousJobId,
    ApiError,
    DeliveryNotFound,
    DuplicateSubscription,
    EventNotFound,
    ExternalIdConflict,
    FalbridgeError,
    InvalidInput,
    JobAlreadyFinished,
    JobNotFound,
    SubscriptionNotFound,
    UploadFailed,
    WaitTimeout,
)
from falbridge.values import Job, JobEvent, JobPage, JobSummary, LiveStatus, LogLine, ResultFile

if TYPE_CHECKING:
    from falbridge.client import Client
    from falbridge.local import cancel, get, list, live, submit, wait
    from falbridge.local_batch import submit_batch
    from falbridge.local_deliveries import get_delivery, list_deliveries, reapply_delivery
    from falbridge.local_subscriptions import (
        create_subscription,
        delete_subscription,
        event_deliveries,
        get_subscription,
        replay_event,
        replay_subscription,
        rotate_secret,
        subscriptions,
        update_subscription,
    )
    from falbridge.worker.purge import purge

# The subpackages live in sibling folders of a checkout (models/, worker/, ...) and are
# installed under this name (pyproject's package-dir). Run from a checkout, this folder
# shadows the installed package; extend_path adds the installed tree, where they are.
__path__ = extend_path(__path__, __name__)

try:
    __version__ = version("falbridge")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

# Imported when first used, not here: `import falbridge` (or falbridge.models, or the
# sandbox) must not pull in Celery, Flask and the database layer.
_LAZY = {
    "submit": "falbridge.local",
    "get": "falbridge.local",
    "list": "falbridge.local",
    "cancel": "falbridge.local",
    "live": "falbridge.local",
    "wait": "falbridge.local",
    "Client": "falbridge.client",
    "purge": "falbridge.worker.purge",
    "list_deliveries": "falbridge.local_deliveries",
    "get_delivery": "falbridge.local_deliveries",
    "reapply_delivery": "falbridge.local_deliveries",
    "submit_batch": "falbridge.local_batch",
    **dict.fromkeys(
        (
            "create_subscription",
            "subscriptions",
            "get_subscription",
            "update_subscription",
            "delete_subscription",
            "rotate_secret",
            "event_deliveries",
            "replay_event",
            "replay_subscription",
        ),
        "falbridge.local_subscriptions",
    ),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'falbridge' has no attribute {name!r}")
    return getattr(import_module(module), name)


__all__ = [
    "AmbiguousJobId",
    "ApiError",
    "BatchResult",
    "Client",
    "Delivery",
    "DeliveryNotFound",
    "DeliveryPage",
    "DeliverySummary",
    "DuplicateSubscription",
    "EventNotFound",
    "ExternalIdConflict",
    "FalbridgeError",
    "InvalidInput",
    "Job",
    "JobAlreadyFinished",
    "JobEvent",
    "JobNotFound",
    "JobPage",
    "JobSummary",
    "LiveStatus",
    "LogLine",
    "Reapplied",
    "ResultFile",
    "SubscriptionNotFound",
    "UploadFailed",
    "WaitTimeout",
    "__version__",
    "cancel",
    "create_subscription",
    "delete_subscription",
    "event_deliveries",
    "get",
    "get_delivery",
    "get_subscription",
    "list",
    "list_deliveries",
    "live",
    "purge",
    "reapply_delivery",
    "replay_event",
    "replay_subscription",
    "rotate_secret",
    "submit",
    "submit_batch",
    "subscriptions",
    "update_subscription",
    "wait",
]
