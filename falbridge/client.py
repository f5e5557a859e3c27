"""`falbridge.Client`: the Python API over falbridge's HTTP API, for a service that must not
(or cannot) reach the database and the broker. The same calls as `falbridge.submit`, `get`,
`list`, `cancel`, `live`, `wait` (and `list_deliveries`, `get_delivery`, `reapply_delivery`
for fal's stored callbacks), returning the same values and raising the same exceptions.

    with falbridge.Client("https://falbridge.example.com", token) as client:
        job = client.submit("fal-ai/evf-sam", {"prompt": "cat", "image_url": url})
        job = client.wait(job.id)
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, Self

import httpx

from falbridge.client_batch import BatchCalls
from falbridge.client_subscriptions import SubscriptionCalls
from falbridge.config import UPLOAD_THRESHOLD
from falbridge.delivery_values import Delivery, DeliveryPage, Reapplied
from falbridge.errors import (
    AmbiguousJobId,
    ApiError,
    DeliveryNotFound,
    DuplicateSubscription,
    EventNotFound,
    ExternalIdConflict,
    InvalidInput,
    JobAlreadyFinished,
    JobNotFound,
    SubscriptionNotFound,
    UploadFailed,
    require_input_mapping,
)
from falbridge.values import Job, JobPage, LiveStatus
from falbridge.waiting import Progress, wait_until_finished, watch_until_finished
from falbridge.worker.fal.job_options import options_given
from falbridge.worker.fal.upload import Uploaded
from falbridge.worker.input_files import prepare_input_files, upload_stream

# What an answer's `error.code` means to a caller of the Python API.
_INVALID = frozenset(
    {
        "invalid_input",
        "invalid_request",
        "invalid_endpoint_id",
        "invalid_callback",
        "invalid_options",
        "invalid_json",
        "json_too_deep",
    }
    | {"json_too_many_keys", "json_too_many_items", "input_too_large", "metadata_too_large"}
    | {"invalid_cursor"}  # as falbridge.list and list_deliveries in process say of a foreign cursor
)


class Client(SubscriptionCalls, BatchCalls):
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        upload_threshold: int = UPLOAD_THRESHOLD,
    ) -> None:
        """`upload_threshold`: `Path`/`bytes`/file inputs bigger than this go through
        `upload_file` (POST /api/files) and are sent as URLs; smaller ones as data URIs."""
        self.upload_threshold = upload_threshold
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    def __repr__(self) -> str:  # never the token
        return f"Client({str(self._http.base_url)!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def submit(
        self,
        endpoint_id: str,
        input: Mapping[str, Any],
        *,
        external_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        notify_url: str | None = None,
        on_complete: str | None = None,
        on_complete_queue: str | None = None,
        priority: str | None = None,
        start_timeout: float | None = None,
        object_lifecycle: int | None = None,
        store_io: bool | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Job:
        """`falbridge.submit` over HTTP: `Path`, `bytes` and open binary file values bigger
        than `upload_threshold` are uploaded first (`upload_file`) and sent as URLs; fal's
        options as `falbridge.submit` takes them, checked by the API."""
        require_input_mapping(input)
        try:
            prepared = prepare_input_files(dict(input), self._upload, threshold=self.upload_threshold)[0]
        except ValueError as exc:  # a Path that is not a file
            raise InvalidInput(str(exc)) from None
        body = {"endpoint_id": endpoint_id, "input": prepared}
        optional = {
            "external_id": external_id,
            "notify_url": notify_url,
            "on_complete": on_complete,
            "on_complete_queue": on_complete_queue,
        }
        body.update({name: value for name, value in optional.items() if value is not None})
        if metadata is not None:
            body["metadata"] = dict(metadata)
        options = options_given(
            priority=priority,
            start_timeout=start_timeout,
            object_lifecycle=object_lifecycle,
            store_io=store_io,
            tags=tags,
        )
        if options is not None:
            body["options"] = options
        return Job.from_json(self._call("POST", "/api/jobs", json=body))

    def upload_file(self, file: Path | bytes | BinaryIO, name: str | None = None) -> Uploaded:
        """POST /api/files: the file goes to fal storage through falbridge; the answer's
        `url` can be used in any input. UploadFailed if fal storage would not take it."""
        if isinstance(file, Path):
            with file.open("rb") as opened:
                return upload_stream(opened, file.stat().st_size, name or file.name, self._upload)
        stream = io.BytesIO(file) if isinstance(file, (bytes, bytearray)) else file
        start = stream.tell()
        size = stream.seek(0, io.SEEK_END) - start
        stream.seek(start)
        return upload_stream(stream, size, name or getattr(stream, "name", None), self._upload)

    def _upload(self, stream: BinaryIO, size: int, content_type: str, file_name: str) -> Uploaded:
        # httpx streams a file object in a multipart body: the file is never read whole.
        files = {"file": (file_name, stream, content_type)}
        body = self._call("POST", "/api/files", files=files, timeout=max(self._http.timeout.read or 0, 300))
        return Uploaded(str(body["url"]), str(body["sha256"]), int(body["size"]), str(body["content_type"]))

    def get(self, job_id: str) -> Job:
        """`falbridge.get`: the whole job; a unique id prefix of 8 or more hex digits does too."""
        return Job.from_json(self._call("GET", f"/api/jobs/{job_id}", job_id=job_id))

    def list(
        self,
        *,
        status: str | None = None,
        endpoint_id: str | None = None,
        external_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
        updated_after: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        """`falbridge.list`: newest first, or the changes feed from `updated_after`."""
        params: dict[str, str | int] = {"limit": limit}
        for name, value in (
            ("status", status),
            ("endpoint_id", endpoint_id),
            ("external_id", external_id),
            ("cursor", cursor),
        ):
            if value is not None:
                params[name] = value
        for name, when in (
            ("created_after", created_after),
            ("created_before", created_before),
            ("updated_after", updated_after),
        ):
            if when is not None:
                params[name] = when.isoformat()
        for key, value in (metadata or {}).items():
            # As JSON text, always: "7" (a string) must not come back as 7 (a number).
            params[f"metadata[{key}]"] = json.dumps(value)
        return JobPage.from_json(self._call("GET", "/api/jobs", params=params))

    def cancel(self, job_id: str) -> Job:
        """`falbridge.cancel`: JobNotFound, or JobAlreadyFinished for a finished job."""
        try:
            return Job.from_json(self._call("POST", f"/api/jobs/{job_id}/cancel", job_id=job_id))
        except ApiError as exc:
            if exc.code == "already_terminal":
                raise JobAlreadyFinished(self.get(job_id)) from None
            raise

    def live(self, job_id: str) -> LiveStatus:
        """`falbridge.live`: the job with fal's status, queue position and logs right now."""
        return LiveStatus.from_json(self._call("GET", f"/api/jobs/{job_id}/live", job_id=job_id))

    def wait(self, job_id: str, *, timeout: float = 300.0, on_progress: Progress | None = None) -> Job:
        """`falbridge.wait`: until the job is completed, failed or cancelled; with
        `on_progress`, each change of its live status (fal's new log lines in `new_logs`)."""
        if on_progress is None:
            return wait_until_finished(lambda: self.get(job_id), timeout=timeout)
        return watch_until_finished(lambda: self.live(job_id), timeout=timeout, on_progress=on_progress)

    def list_deliveries(
        self,
        *,
        request_id: str | None = None,
        job_id: str | None = None,
        processed: bool | None = None,
        outcome: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> DeliveryPage:
        """`falbridge.list_deliveries`: fal's stored callbacks, newest first."""
        params: dict[str, str | int] = {"limit": limit}
        for name, value in (("request_id", request_id), ("job_id", job_id), ("outcome", outcome)):
            if value is not None:
                params[name] = value
        if processed is not None:
            params["processed"] = "true" if processed else "false"
        if cursor is not None:
            params["cursor"] = cursor
        return DeliveryPage.from_json(self._call("GET", "/api/deliveries", params=params))

    def get_delivery(self, delivery_id: int) -> Delivery:
        """`falbridge.get_delivery`: one stored callback with its body. DeliveryNotFound."""
        path = f"/api/deliveries/{int(delivery_id)}"
        return Delivery.from_json(self._call("GET", path, delivery_id=delivery_id))

    def reapply_delivery(self, delivery_id: int) -> Reapplied:
        """`falbridge.reapply_delivery`: apply it now unless it was processed already
        (`already_processed`, nothing changed). DeliveryNotFound."""
        path = f"/api/deliveries/{int(delivery_id)}/reapply"
        return Reapplied.from_json(self._call("POST", path, delivery_id=delivery_id))

    @contextmanager
    def stored_file(self, job_id: str, file_id: int) -> Iterator[Iterator[bytes]]:
        """falbridge's stored copy of one of the job's files (its `download_url`), streamed."""
        path = f"/api/jobs/{job_id}/files/{int(file_id)}"
        with self._http.stream("GET", path) as response:
            if not response.is_success:
                response.read()
                self._raise(response, job_id=None)
            yield response.iter_bytes()

    def _call(
        self,
        method: str,
        path: str,
        *,
        job_id: str | None = None,
        delivery_id: int | None = None,
        subscription_id: str | None = None,
        event_id: str | None = None,
        **kwargs: Any,
    ) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code == 204:
            return None
        if response.is_success:
            return response.json()
        self._raise(
            response,
            job_id=job_id,
            delivery_id=delivery_id,
            subscription_id=subscription_id,
            event_id=event_id,
        )

    @staticmethod
    def _raise(
        response: httpx.Response,
        *,
        job_id: str | None = None,
        delivery_id: int | None = None,
        subscription_id: str | None = None,
        event_id: str | None = None,
    ) -> NoReturn:
        """The API's error answer as the exception the Python API raises for it."""
        try:
            error = response.json()["error"]
            code, message, details = str(error["code"]), str(error["message"]), error.get("details")
        except (ValueError, KeyError, TypeError):
            raise ApiError(response.status_code, "unexpected_answer", response.text[:200]) from None
        if code == "not_found" and delivery_id is not None:
            raise DeliveryNotFound(delivery_id)
        if code == "not_found" and (subscription_id or event_id):
            raise EventNotFound(event_id) if event_id else SubscriptionNotFound(str(subscription_id))
        raise _error(response.status_code, code, message, details, job_id)


def _error(status: int, code: str, message: str, details: Any, job_id: str | None) -> Exception:
    if code == "not_found" and job_id is not None:
        return JobNotFound(job_id)
    if code == "duplicate_subscription" and isinstance(details, dict):
        return DuplicateSubscription(message, str(details.get("subscription_id")))
    if code == "ambiguous_job_id" and job_id is not None:
        return AmbiguousJobId(job_id)
    if code == "external_id_conflict" and isinstance(details, dict):
        return ExternalIdConflict(message, str(details.get("job_id")))
    if code == "upload_failed":
        return UploadFailed(message)
    if code in _INVALID:
        listed = details if isinstance(details, list) else []
        return InvalidInput(message, listed)
    return ApiError(status, code, message, details)
