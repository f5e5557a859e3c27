"""What `submit_batch` hands back, in process and over HTTP alike: one `BatchResult` per
job, field for field a result of POST /api/jobs/batch."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from falbridge.values import Job, freeze, thaw


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """One job of a batch: the `job` (`created` False when its external_id named it
    already), or the `error` POST /api/jobs would have answered for it alone: `status`,
    `code`, `message`, `details`."""

    job: Job | None
    created: bool
    error: Mapping[str, Any] | None

    @property
    def ok(self) -> bool:
        return self.job is not None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchResult:
        if "job" in data:
            return cls(Job.from_json(data["job"]), bool(data["created"]), None)
        return cls(None, False, freeze(data["error"]))

    def to_json(self) -> dict[str, Any]:
        if self.job is not None:
            return {"job": self.job.to_json(), "created": self.created}
        return {"error": thaw(self.error)}
