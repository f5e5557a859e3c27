"""A job's address in fal's queue, as the submit response gave it."""

from __future__ import annotations

from falbridge.models.tables import Job
from falbridge.worker.fal import RequestRef


def request_ref(job: Job) -> RequestRef:
    """The stored URLs are used verbatim: fal's status and result URLs drop an endpoint's
    sub-path, so rebuilding them from the endpoint id would be wrong."""
    assert job.request_id is not None, "only a job fal accepted has a queue address"
    return RequestRef(
        endpoint_id=job.endpoint_id,
        request_id=job.request_id,
        status_url=job.status_url,
        response_url=job.response_url,
        cancel_url=job.cancel_url,
    )
