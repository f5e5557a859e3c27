"""Uploads to fal storage, the way fal's official client makes them (docs/fal-protocol.md,
"Upload API"), on httpx like the queue client:

1. `POST {rest}/storage/auth/token?storage_type=fal-cdn-v3` with the fal key answers a CDN
   token, its type, the CDN base URL and when it expires (kept until then);
2. `POST {cdn}/files/upload` with the bytes answers `{"access_url"}`; a file bigger than
   `multipart_bytes` goes in parts instead: `POST {base}/files/upload/multipart`, then
   `PUT {access_url}/multipart/{id}/{n}` per part and `POST .../complete` with their ETags.

The body is streamed from a seekable file and hashed on the way, parts included, so a
100 MiB input never sits in memory (measured: a 30 MB upload, whole or in 10 MiB parts,
grows RSS by about 0.5 MB). Nothing here retries; failures are classified like every
other fal call (``classify``). The fal key goes to the REST URL only; the CDN
sees the short-lived token.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

import httpx

from falbridge import config
from falbridge.worker.fal.classify import Operation, error_from_response, error_from_transport
from falbridge.worker.fal.errors import FalConfigError, FinalError
from falbridge.worker.fal.settings import DEFAULT_TIMEOUT, DEFAULT_USER_AGENT, checked_base_url, checked_key
from falbridge.worker.fal.wire import json_or_none

log = logging.getLogger(__name__)

_READ_BYTES = 256 * 1024
_TOKEN_MARGIN = timedelta(seconds=30)  # a token about to expire is renewed, not risked


@dataclass(frozen=True)
class Uploaded:
    url: str
    sha256: str
    size: int
    content_type: str


@dataclass(frozen=True)
class _CdnToken:
    header: str  # "<type> <token>"
    base_url: str
    expires_at: datetime


class StorageClient:
    def __init__(
        self,
        rest_url: str,
        cdn_url: str,
        key: str | None,
        *,
        multipart_bytes: int = 100 * 1024 * 1024,
        part_bytes: int = 10 * 1024 * 1024,
        timeout: httpx.Timeout | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.rest_url = checked_base_url(rest_url)
        self.cdn_url = checked_base_url(cdn_url)
        self.__key = checked_key(key)
        self.multipart_bytes = multipart_bytes
        self.part_bytes = part_bytes
        self._http = httpx.Client(
            timeout=timeout or DEFAULT_TIMEOUT,
            headers={"User-Agent": DEFAULT_USER_AGENT, "Accept": "application/json"},
            follow_redirects=False,  # a redirect would carry the key or token elsewhere
        )
        self._lock = threading.Lock()
        self._token: _CdnToken | None = None
        self._clock = clock  # the token's age (tests set it)

    def __repr__(self) -> str:
        return f"StorageClient(rest_url={self.rest_url!r}, cdn_url={self.cdn_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> StorageClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def upload(self, source: BinaryIO, size: int, content_type: str, file_name: str) -> Uploaded:
        """Upload `size` bytes read from `source` (at its current position)."""
        digest = hashlib.sha256()
        if size > self.multipart_bytes:
            url = self._upload_parts(source, size, content_type, file_name, digest)
        else:
            url = self._upload_whole(source, size, content_type, file_name, digest)
        return Uploaded(url, digest.hexdigest(), size, content_type)

    # -- the two upload shapes ------------------------------------------------------

    def _upload_whole(
        self, source: BinaryIO, size: int, content_type: str, file_name: str, digest: Any
    ) -> str:
        headers = self._cdn_headers(content_type, file_name) | {"Content-Length": str(size)}
        response = self._send(
            "POST", f"{self.cdn_url}/files/upload", content=_chunks(source, size, digest), headers=headers
        )
        return _access_url(response)

    def _upload_parts(
        self, source: BinaryIO, size: int, content_type: str, file_name: str, digest: Any
    ) -> str:
        base_url = self._token_now().base_url
        begun = self._send(
            "POST", f"{base_url}/files/upload/multipart", headers=self._cdn_headers(content_type, file_name)
        )
        access_url, upload_id = _access_url(begun), _field(begun, "uploadId")
        parts, number, left = [], 0, size
        while left > 0:
            number += 1
            length = min(self.part_bytes, left)
            left -= length
            headers = self._cdn_headers(content_type, None) | {"Content-Length": str(length)}
            answer = self._send(
                "PUT",
                f"{access_url}/multipart/{upload_id}/{number}",
                content=_chunks(source, length, digest),  # streamed too: no part is held whole
                headers=headers,
            )
            parts.append({"partNumber": number, "etag": answer.headers.get("etag", "")})
        self._send(
            "POST",
            f"{access_url}/multipart/{upload_id}/complete",
            json={"parts": parts},
            headers=self._cdn_headers(None, None),
        )
        return access_url

    # -- the token ------------------------------------------------------------------

    def _token_now(self) -> _CdnToken:
        with self._lock:
            if self._token is None or self._clock() >= self._token.expires_at - _TOKEN_MARGIN:
                self._token = self._fetch_token()
            return self._token

    def _fetch_token(self) -> _CdnToken:
        response = self._send(
            "POST",
            f"{self.rest_url}/storage/auth/token",
            params={"storage_type": "fal-cdn-v3"},
            json={},
            headers={"Authorization": f"Key {self.__key}"},
        )
        token = _parse_token(json_or_none(response))
        if token is None:
            raise FinalError("fal upload: the storage token answer is incomplete or malformed")
        return token

    def _cdn_headers(self, content_type: str | None, file_name: str | None) -> dict[str, str]:
        headers = {"Authorization": self._token_now().header}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if file_name is not None:
            headers["X-Fal-File-Name"] = file_name
        return headers

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        operation: Operation = "upload"
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.RequestError as exc:
            raise error_from_transport(exc, operation=operation, target=_path_of(url)) from exc
        if not response.is_success:
            raise error_from_response(response, operation=operation, target=_path_of(url))
        log.debug("fal upload %s %s -> %d", method, _path_of(url), response.status_code)
        return response


def _parse_token(body: Any) -> _CdnToken | None:
    if not isinstance(body, dict):
        return None
    try:
        expires_at = datetime.fromisoformat(body["expires_at"])
        return _CdnToken(
            f"{body['token_type']} {body['token']}",
            checked_base_url(body["base_url"]),
            expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC),
        )
    except (KeyError, TypeError, ValueError, FalConfigError):
        return None


def _chunks(source: BinaryIO, size: int, digest: Any) -> Iterator[bytes]:
    left = size
    while left > 0:
        data = source.read(min(_READ_BYTES, left))
        if not data:
            raise FinalError(f"fal upload: the file ended {left} bytes early")
        digest.update(data)
        left -= len(data)
        yield data


def _access_url(response: httpx.Response) -> str:
    url = _field(response, "access_url")
    if not url.startswith(("https://", "http://")):
        raise FinalError("fal upload: the storage answered an access_url that is not an http(s) URL")
    return url


def _field(response: httpx.Response, name: str) -> str:
    body = json_or_none(response)
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise FinalError(f"fal upload: the storage answer has no {name}", status_code=response.status_code)
    return value


def _path_of(url: str) -> str:
    # Tokens never sit in our URLs, but a presigned one could carry a secret in its query.
    return str(httpx.URL(url).copy_with(query=None))


_shared_lock = threading.Lock()
_shared: tuple[int, StorageClient] | None = None


def get_storage_client() -> StorageClient:
    """The process-wide client from the configuration (rebuilt after a fork, like the queue's)."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared[0] != os.getpid():
            current = config.current()
            upload = current.upload
            _shared = (
                os.getpid(),
                StorageClient(
                    upload.rest_url,
                    upload.cdn_url,
                    current.fal.api_key(),
                    multipart_bytes=upload.multipart_bytes,
                    part_bytes=upload.part_bytes,
                ),
            )
        return _shared[1]


def close_storage_client() -> None:
    global _shared
    with _shared_lock:
        if _shared is not None and _shared[0] == os.getpid():
            _shared[1].close()
        _shared = None


def upload_to_fal(source: BinaryIO, size: int, content_type: str, file_name: str) -> Uploaded:
    return get_storage_client().upload(source, size, content_type, file_name)
