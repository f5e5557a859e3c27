"""Configuration of the steps of a job's flow: submitting, flow control, the sweeper, the
inbox drain, downloads, uploads, result-file storage, purging and outgoing events (read
and validated by falbridge/config.py)."""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import field_validator

from falbridge.config_base import (
    FAL_CDN_URL,
    FAL_REST_URL,
    MIB,
    UPLOAD_THRESHOLD,
    Section,
    env,
    split_list,
)


class SubmitConfig(Section):
    max_retries: int = env("FALBRIDGE_SUBMIT_MAX_RETRIES", 8, ge=0)
    lease_s: float = env("FALBRIDGE_SUBMIT_LEASE_S", 120.0, gt=0)


# --- issue 17, flow: batched submit and flow control (worker.claim, worker.flow) ---


class FlowConfig(Section):
    """How pending jobs go out to fal: in batches, sent concurrently, under optional caps on
    the jobs in flight at fal and on the submit rate (docs/reliability.md, "Flow control")."""

    batch: int = env("FALBRIDGE_SUBMIT_BATCH", 50, ge=1, le=1000)
    # Submits one worker process has on the wire at once: at most the fal client's pool.
    concurrency: int = env("FALBRIDGE_SUBMIT_CONCURRENCY", 8, ge=1, le=20)
    # 0: no cap. Jobs in flight: submitted, in_progress, outcome_unknown, and pending jobs a
    # worker has claimed (they may be at fal already).
    max_in_flight: int = env("FALBRIDGE_MAX_IN_FLIGHT", 0, ge=0)
    # `endpoint=cap,endpoint=cap`, e.g. `fal-ai/evf-sam=4,fal-ai/flux/dev=2`.
    max_in_flight_per_endpoint: str = env("FALBRIDGE_MAX_IN_FLIGHT_PER_ENDPOINT", "")
    # Jobs per second sent to fal by all workers together (a token bucket in the database);
    # 0: no limit. The bucket holds `burst` tokens (0: one second's worth, at least 1).
    rate_per_s: float = env("FALBRIDGE_SUBMIT_RATE", 0.0, ge=0)
    burst: int = env("FALBRIDGE_SUBMIT_BURST", 0, ge=0)

    @field_validator("max_in_flight_per_endpoint")
    @classmethod
    def _caps(cls, value: str) -> str:
        parse_endpoint_caps(value)
        return value

    def endpoint_caps(self) -> dict[str, int]:
        return parse_endpoint_caps(self.max_in_flight_per_endpoint)

    def capped(self) -> bool:
        """Whether claims must count the jobs in flight."""
        return self.max_in_flight > 0 or bool(self.endpoint_caps())

    def bucket_size(self) -> float:
        return float(self.burst) if self.burst else max(1.0, self.rate_per_s)

    def active(self) -> bool:
        """Whether any flow control is on (claims are then serialised)."""
        return self.capped() or self.rate_per_s > 0


def parse_endpoint_caps(text: str) -> dict[str, int]:
    """`fal-ai/evf-sam=4,fal-ai/flux/dev=2` -> {"fal-ai/evf-sam": 4, "fal-ai/flux/dev": 2}."""
    caps: dict[str, int] = {}
    for item in split_list(text):
        endpoint, sep, number = item.rpartition("=")
        endpoint = endpoint.strip()
        if not sep or not endpoint or not number.strip().isdigit() or int(number) < 1:
            raise ValueError(f"{item!r} is not endpoint=cap with a cap of 1 or more")
        if endpoint in caps:
            raise ValueError(f"{endpoint!r} is given twice")
        caps[endpoint] = int(number)
    return caps


# --- end of issue 17, flow ---


class SweepConfig(Section):
    interval_s: float = env("FALBRIDGE_RECONCILE_INTERVAL_S", 30.0, gt=0)
    pending_grace_s: float = env("FALBRIDGE_PENDING_GRACE_S", 60.0, ge=0)
    delivery_grace_s: float = env("FALBRIDGE_DELIVERY_GRACE_S", 30.0, ge=0)
    # A dropped callback is noticed by polling, and fal keeps a result of 10 KB or more only
    # six minutes after completion: these two plus the interval bound how late a poll finds
    # a finished job (fetch_bound_s), 90 s at the defaults; docs/reliability.md.
    silent_after_s: float = env("FALBRIDGE_SILENT_AFTER_S", 60.0, ge=0)
    poll_every_s: float = env("FALBRIDGE_POLL_EVERY_S", 60.0, ge=0)
    outcome_unknown_grace_s: float = env("FALBRIDGE_OUTCOME_UNKNOWN_GRACE_S", 600.0, ge=0)
    outcome_unknown_policy: Literal["resubmit", "fail"] = env("FALBRIDGE_OUTCOME_UNKNOWN_POLICY", "resubmit")
    batch: int = env("FALBRIDGE_RECONCILE_BATCH", 500, ge=1)
    # Rejected deliveries are evidence (headers, digest, length, first 4 KiB), kept this long.
    rejected_retention_s: float = env("FALBRIDGE_REJECTED_RETENTION_S", 7 * 24 * 3600.0, gt=0)

    def fetch_bound_s(self) -> float:
        """Longest time from fal completing a job whose callback never comes to the sweep
        that polls it (then the poll task's queue wait, one status and one result call):
        a job is first polled `silent_after_s` after its last news, again every
        `poll_every_s`, each found by the next sweep up to `interval_s` later."""
        return max(self.silent_after_s, self.poll_every_s) + self.interval_s


# --- issue 17 part 2: batched callbacks (worker/apply/drain.py) ---
class DrainConfig(Section):
    # Deliveries applied per transaction by the inbox drain, and transactions per drain
    # task: under a steady stream a task hands over to a fresh one rather than run for ever.
    batch: int = env("FALBRIDGE_DRAIN_BATCH", 100, ge=1, le=5000)
    max_batches: int = env("FALBRIDGE_DRAIN_MAX_BATCHES", 50, ge=1)


# --- end of issue 17 part 2 ---


class FetchConfig(Section):
    """Files falbridge downloads itself (result files), through the SSRF-safe fetcher."""

    allow_private: bool = env("FALBRIDGE_FETCH_ALLOW_PRIVATE", False)
    max_bytes: int = env("FALBRIDGE_FETCH_MAX_BYTES", 50 * MIB, ge=1)


class UploadConfig(Section):
    """Input files falbridge is handed (Path, bytes, a file, `POST /api/files`): above the
    threshold they go to fal storage as fal's own clients send them (docs/fal-protocol.md,
    "Upload API") and the job keeps the URL and a digest; smaller ones stay data URIs."""

    rest_url: str = env("FAL_REST_URL", FAL_REST_URL)  # storage token endpoint
    cdn_url: str = env("FAL_CDN_URL", FAL_CDN_URL)  # single-request uploads
    threshold_bytes: int = env("FALBRIDGE_UPLOAD_THRESHOLD_BYTES", UPLOAD_THRESHOLD, ge=0)
    # fal-client's switch to a multipart upload (10 MiB parts).
    multipart_bytes: int = env("FALBRIDGE_UPLOAD_MULTIPART_BYTES", 100 * MIB, ge=1)
    part_bytes: int = env("FALBRIDGE_UPLOAD_PART_BYTES", 10 * MIB, ge=64 * 1024)
    # POST /api/files refuses bigger files (413).
    max_bytes: int = env("FALBRIDGE_MAX_UPLOAD_BYTES", 100 * MIB, ge=1)


class StorageConfig(Section):
    """Where falbridge keeps its own copy of result files (falbridge.worker.storage)."""

    # Empty: a directory under the var dir (file://VAR_DIR/files). Else file:///abs/dir or
    # s3://bucket/prefix (credentials, region and endpoint from the standard AWS_* variables).
    url: str = env("FALBRIDGE_STORAGE_URL", "")
    # `all`, `none`, or a comma-separated list of endpoint ids whose results are stored.
    store: str = env("FALBRIDGE_STORE_FILES", "all")
    max_bytes: int = env("FALBRIDGE_STORE_MAX_BYTES", 512 * MIB, ge=1)
    # Attempts of the storing task for a file whose download or write fails for a reason
    # that may pass (fal's CDN or the backend down) before it is recorded as missing.
    retries: int = env("FALBRIDGE_STORE_RETRIES", 6, ge=0)
    # S3 only: GET /api/jobs/<id>/files/<file_id> redirects to a presigned URL valid this
    # long instead of streaming the bytes through falbridge; 0 streams.
    presign_s: int = env("FALBRIDGE_STORAGE_PRESIGN_S", 0, ge=0, le=7 * 24 * 3600)
    # The sweeper stores the files of a job completed this long ago whose files are still
    # unrecorded (the store task was lost): longer than the task's retries take.
    grace_s: float = env("FALBRIDGE_STORE_GRACE_S", 600.0, ge=0)

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if value and not value.startswith(("file://", "s3://")):
            raise ValueError("must start with file:// or s3://")
        if value.startswith("s3://") and not value[len("s3://") :].split("/", 1)[0]:
            raise ValueError("s3:// URL names no bucket")
        if value.startswith("file://") and not value[len("file://") :].startswith("/"):
            raise ValueError("file:// URL must name an absolute directory (file:///srv/files)")
        return value

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        if not split_list(value):
            raise ValueError("all, none, or a comma-separated list of endpoint ids")
        return value

    def resolved_url(self, var_dir: Path) -> str:
        return self.url or f"file://{var_dir.resolve() / 'files'}"

    def endpoints(self) -> tuple[str, ...] | None:
        """The endpoints whose files are stored; None: all of them."""
        chosen = split_list(self.store)
        if chosen == ["all"]:
            return None
        return () if chosen == ["none"] else tuple(chosen)

    def stores(self, endpoint_id: str) -> bool:
        """Whether a result of this endpoint has its files stored."""
        chosen = self.endpoints()
        return chosen is None or endpoint_id in chosen


_AGE = re.compile(r"(\d+)([smhdw])")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> timedelta:
    """`90d`, `12h`, `2w`, `30m`, `45s`: a positive age (`falbridge purge --older-than`,
    FALBRIDGE_PURGE_OLDER_THAN)."""
    match = _AGE.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not an age such as 90d, 12h, 2w, 30m or 45s")
    return timedelta(seconds=int(match.group(1)) * _AGE_UNITS[match.group(2)])


class PurgeConfig(Section):
    """The scheduled purge of old finished jobs (falbridge.worker.purge); off while
    `older_than` is empty. `falbridge purge` takes the same settings as options."""

    older_than: str = env("FALBRIDGE_PURGE_OLDER_THAN", "")
    # Keep each job's summary (status, times, error) and drop its input, result and files.
    compact: bool = env("FALBRIDGE_PURGE_COMPACT", False)
    interval_s: float = env("FALBRIDGE_PURGE_INTERVAL_S", 3600.0, gt=0)
    # Jobs per transaction: each batch's locks are held for one short transaction.
    batch: int = env("FALBRIDGE_PURGE_BATCH", 500, ge=1, le=10_000)

    @field_validator("older_than")
    @classmethod
    def _age(cls, value: str) -> str:
        if value:
            parse_age(value)
        return value

    def age(self) -> timedelta | None:
        return parse_age(self.older_than) if self.older_than else None


class NotifyConfig(Section):
    """Outgoing webhooks to subscribers (falbridge.worker.notify)."""

    timeout_s: float = env("FALBRIDGE_NOTIFY_TIMEOUT_S", 15.0, gt=0)
    # Multiplies the whole retry schedule (about a day at 1): tests and the chaos run shrink it.
    schedule_scale: float = env("FALBRIDGE_NOTIFY_SCHEDULE_SCALE", 1.0, gt=0)
    disable_after_s: float = env("FALBRIDGE_NOTIFY_DISABLE_AFTER_S", 5 * 24 * 3600.0, gt=0)
    rotation_overlap_s: float = env("FALBRIDGE_NOTIFY_ROTATION_OVERLAP_S", 24 * 3600.0, ge=0)
    # Subscriber URLs must resolve to public addresses, or into one of these networks.
    allowed_networks: str = env("FALBRIDGE_NOTIFY_ALLOWED_NETWORKS", "")

    @field_validator("allowed_networks")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        for position, cidr in enumerate(split_list(value), start=1):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"network {position} is not a CIDR like 10.0.0.0/8") from None
        return value

    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in split_list(self.allowed_networks))
