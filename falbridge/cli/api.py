"""Where the CLI's job commands go: the database, through the Python API in process, or a
falbridge's HTTP API (`falbridge --api URL`, FALBRIDGE_API_URL), through falbridge.Client.
Both give the commands the same calls and the same values."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

import click

from falbridge import config, local, local_batch
from falbridge.batch_values import BatchResult
from falbridge.client import Client
from falbridge.models.states import EventSource
from falbridge.values import Job, JobPage, LiveStatus
from falbridge.waiting import Progress
from falbridge.worker.fal.job_options import options_given
from falbridge.worker.notify.job_callbacks import JobCallbacks
from falbridge.worker.storage.read import stored_chunks


class JobsApi(Protocol):
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
    ) -> Job: ...

    def submit_batch(self, jobs: Iterable[Mapping[str, Any]]) -> builtins.list[BatchResult]: ...

    def get(self, job_id: str) -> Job: ...

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
    ) -> JobPage: ...

    def cancel(self, job_id: str) -> Job: ...

    def live(self, job_id: str) -> LiveStatus: ...

    def wait(self, job_id: str, *, timeout: float = 300.0, on_progress: Progress | None = None) -> Job: ...

    def stored_file(self, job_id: str, file_id: int) -> AbstractContextManager[Iterable[bytes]]: ...


class _InProcess:
    """falbridge.local, recording the CLI as the source of what it submits."""

    get = staticmethod(local.get)
    list = staticmethod(local.list)
    cancel = staticmethod(local.cancel)
    live = staticmethod(local.live)
    wait = staticmethod(local.wait)
    stored_file = staticmethod(stored_chunks)

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
        return local.submit_as(
            EventSource.CLI,
            endpoint_id,
            input,
            external_id=external_id,
            metadata=metadata,
            callbacks=JobCallbacks(notify_url, on_complete, on_complete_queue),
            options=options_given(
                priority=priority,
                start_timeout=start_timeout,
                object_lifecycle=object_lifecycle,
                store_io=store_io,
                tags=tags,
            ),
        )

    def submit_batch(self, jobs: Iterable[Mapping[str, Any]]) -> builtins.list[BatchResult]:
        return local_batch.submit_batch_as(EventSource.CLI, jobs)


def jobs_api(ctx: click.Context) -> JobsApi:
    """The API the root command's `--api` (else FALBRIDGE_API_URL) names, else in process."""
    remote = remote_client(ctx)
    return _InProcess() if remote is None else remote


def remote_client(ctx: click.Context) -> Client | None:
    """A client of the falbridge the root command's `--api` (else FALBRIDGE_API_URL) names,
    closed with the command; None when neither names one (work in process)."""
    client = config.current().client
    url = ctx.find_root().params.get("api") or client.api_url
    if not url:
        return None
    token = client.api_token.get_secret_value() if client.api_token is not None else None
    remote = Client(url, token)
    ctx.call_on_close(remote.close)
    return remote
