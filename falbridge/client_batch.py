"""falbridge.Client's `submit_batch`: `falbridge.submit_batch` over POST /api/jobs/batch,
the same jobs in, the same results out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, BinaryIO, Protocol

from falbridge.batch_values import BatchResult
from falbridge.worker.accept_batch import MAX_BATCH
from falbridge.worker.fal.upload import Uploaded
from falbridge.worker.input_files import prepare_input_files

DEFAULT_CHUNK = 500


class _Calls(Protocol):
    upload_threshold: int

    def _call(self, method: str, path: str, **kwargs: Any) -> Any: ...

    def _upload(self, stream: BinaryIO, size: int, content_type: str, file_name: str) -> Uploaded: ...


class BatchCalls:
    def submit_batch(
        self: _Calls, jobs: Iterable[Mapping[str, Any]], *, chunk_size: int = DEFAULT_CHUNK
    ) -> list[BatchResult]:
        """`falbridge.submit_batch` over HTTP, `chunk_size` jobs a request (at most 1,000,
        the API's limit): one result per job, in order. `Path`, `bytes` and open binary
        file values in an input are uploaded first, as `submit` does."""
        if not 1 <= chunk_size <= MAX_BATCH:
            raise ValueError(f"chunk_size must be 1 to {MAX_BATCH}")
        results: list[BatchResult] = []
        chunk: list[BatchResult | dict[str, Any]] = []
        for job in jobs:
            chunk.append(_with_files_uploaded(self, job))
            if len(chunk) == chunk_size:
                results += _send(self, chunk)
                chunk = []
        return results + (_send(self, chunk) if chunk else [])


def _with_files_uploaded(client: _Calls, job: Mapping[str, Any]) -> BatchResult | dict[str, Any]:
    body = dict(job)
    if isinstance(body.get("input"), Mapping):
        try:
            body["input"] = prepare_input_files(
                dict(body["input"]), client._upload, threshold=client.upload_threshold
            )[0]
        except ValueError as exc:  # a Path that is not a file: refused here, as in process
            details = [{"field": "input", "message": str(exc)}]
            error = {"status": 422, "code": "invalid_input", "message": str(exc), "details": details}
            return BatchResult(None, False, error)
    return body


def _send(client: _Calls, chunk: list[BatchResult | dict[str, Any]]) -> list[BatchResult]:
    bodies = [job for job in chunk if isinstance(job, dict)]
    answer = client._call("POST", "/api/jobs/batch", json={"jobs": bodies}) if bodies else {"results": []}
    sent = iter(BatchResult.from_json(result) for result in answer["results"])
    return [job if isinstance(job, BatchResult) else next(sent) for job in chunk]
