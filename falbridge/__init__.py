"""falbridge: run fal.ai model jobs at volume, webhook-driven, nothing lost, nothing twice.

import falbridge
job = falbridge.submit("fal-ai/evf-sam", {"prompt": "cat", "image_url": Path("cat.png")})
"""

from __future__ import annotations

from collections.abc import Mapping
from pkgutil import extend_path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uuid

    from falbridge.models.tables import Job

# The subpackages live in sibling folders of a checkout (models/, worker/, ...) and are
# installed under this name (pyproject's package-dir). Run from a checkout, this folder
# shadows the installed package; extend_path adds the installed tree, where they are.
__path__ = extend_path(__path__, __name__)

# The functions below import the worker when first called, not here: `import
# falbridge.models` (or the sandbox, or the config) must not pull in Celery and Flask.


def submit(
    endpoint_id: str,
    input: Mapping[str, Any],
    *,
    external_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Job:
    """Store and enqueue a job; returns it. The same external_id returns the same job."""
    from falbridge.worker.actions import submit as _submit

    job, _created = _submit(endpoint_id, input, external_id=external_id, metadata=metadata)
    return job


def get_job(job_id: uuid.UUID | str) -> Job | None:
    from falbridge.worker.actions import get

    return get(job_id, full=True)


def cancel(job_id: uuid.UUID | str) -> Job | None:
    from falbridge.worker.actions import cancel as _cancel

    return _cancel(job_id)[0]
