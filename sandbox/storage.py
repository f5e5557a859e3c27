"""fal's storage API as fal's clients use it (docs/fal-protocol.md, "Upload API"), plus the CDN.

- `POST /storage/auth/token` (fal key) hands out a short-lived CDN token and the CDN base URL.
- `POST /files/upload` (CDN token) stores a body whole; `POST /files/upload/multipart`, then
  `PUT {access_url}/multipart/{id}/{n}` and `POST {access_url}/multipart/{id}/complete`
  store it in parts.
- `POST /storage/upload/initiate` (fal key) answers a presigned `upload_url` to PUT to and
  the `file_url` it will be read from (fal-client's fallback repository).
- `GET /files/{token}/{name}` reads a file. Any other `/storage/...` call is a 404: it is
  never mistaken for a queue submit.

Faults `storage_auth_down` (token endpoint answers 503) and `upload_refused` (an upload
answers `upload_refused_status`) are drawn per storage call from the sandbox seed.
"""

from __future__ import annotations

import datetime
import itertools
import secrets
import threading
import time
from typing import Any

from werkzeug.wrappers import Request, Response

from falbridge.sandbox.core import Sandbox
from falbridge.sandbox.faults import decide_storage_fault
from falbridge.sandbox.files import file_url, safe_name
from falbridge.sandbox.web import check_fal_auth, detail, json_response, public_base_url, read_json

TOKEN_LIFETIME_S = 15 * 60
_OCTET_STREAM = "application/octet-stream"


class StorageApi:
    def __init__(self, core: Sandbox) -> None:
        self.core = core
        self._tokens: dict[str, float] = {}  # CDN token -> expiry (epoch seconds)
        self._lock = threading.Lock()
        self._calls = itertools.count(1)

    # -- rest.fal.ai ----------------------------------------------------------------

    def rest(self, request: Request) -> Response:
        path, method = request.path, request.method
        if path == "/storage/auth/token" and method == "POST":
            return self._issue_token(request)
        if path == "/storage/upload/initiate" and method == "POST":
            return self._initiate(request)
        return detail(f"Not Found: {method} {path}", 404)

    def _issue_token(self, request: Request) -> Response:
        denied = check_fal_auth(request, self.core.config.allowed_keys)
        if denied is not None:
            return denied
        if self._fault("storage_auth_down"):
            return detail("Storage authentication is unavailable (injected)", 503)
        token, expires = secrets.token_urlsafe(24), time.time() + TOKEN_LIFETIME_S
        with self._lock:
            self._tokens = {t: at for t, at in self._tokens.items() if at > time.time()}
            self._tokens[token] = expires
        stamp = datetime.datetime.fromtimestamp(expires, datetime.UTC).isoformat()
        body = {
            "token": token,
            "token_type": "Bearer",
            "base_url": public_base_url(request, self.core.config.public_url),
            "expires_at": stamp,
        }
        return json_response(body)

    def _initiate(self, request: Request) -> Response:
        denied = check_fal_auth(request, self.core.config.allowed_keys)
        if denied is not None:
            return denied
        ok, body = read_json(request)
        if not ok or not isinstance(body, dict):
            return detail("Body must be a JSON object with file_name and content_type", 422)
        name = safe_name(body.get("file_name") if isinstance(body.get("file_name"), str) else None)
        content_type = body.get("content_type")
        content_type = content_type if isinstance(content_type, str) and content_type else _OCTET_STREAM
        upload_id, pending = self.core.files.begin(name, content_type)
        url = file_url(public_base_url(request, self.core.config.public_url), pending.token, name)
        return json_response({"upload_url": f"{url}?upload_id={upload_id}", "file_url": url})

    # -- v3.fal.media ---------------------------------------------------------------

    def cdn(self, request: Request) -> Response:
        segments = request.path.split("/")[2:]  # after "/files/"
        method = request.method
        if segments == ["upload"] and method == "POST":
            return self._upload_whole(request)
        if segments == ["upload", "multipart"] and method == "POST":
            return self._begin_multipart(request)
        if len(segments) == 2 and method in ("GET", "HEAD"):
            return self._read(*segments)
        if len(segments) == 2 and method == "PUT":
            return self._presigned_put(request, *segments)
        if len(segments) == 5 and segments[2] == "multipart":
            return self._multipart_step(request, segments)
        return detail("Not Found", 404) if method in ("GET", "HEAD") else detail("Method Not Allowed", 405)

    def _read(self, token: str, name: str) -> Response:
        stored = self.core.files.get(token, name)
        if stored is None:
            return detail("File not found", 404)
        return Response(stored.data, content_type=stored.content_type)

    def _upload_whole(self, request: Request) -> Response:
        refused = self._check_cdn_token(request) or self._refusal()
        if refused is not None:
            return refused
        name, content_type = _name_and_type(request)
        token = self.core.files.upload(name, content_type, request.get_data())
        return json_response({"access_url": self._url(request, token, name)})

    def _begin_multipart(self, request: Request) -> Response:
        refused = self._check_cdn_token(request) or self._refusal()
        if refused is not None:
            return refused
        name, content_type = _name_and_type(request)
        upload_id, pending = self.core.files.begin(name, content_type)
        return json_response({"access_url": self._url(request, pending.token, name), "uploadId": upload_id})

    def _multipart_step(self, request: Request, segments: list[str]) -> Response:
        token, name, _, upload_id, step = segments
        denied = self._check_cdn_token(request)
        if denied is not None:
            return denied
        pending = self.core.files.pending(upload_id, token, name)
        if pending is None:
            return detail("Upload not found", 404)
        if step == "complete" and request.method == "POST":
            return self._complete(request, upload_id, pending)
        if step.isdigit() and request.method == "PUT" and 1 <= int(step) <= 10_000:
            etag = self.core.files.add_part(pending, int(step), request.get_data())
            return Response(b"", status=200, headers={"ETag": etag})
        return detail("Method Not Allowed", 405)

    def _complete(self, request: Request, upload_id: str, pending: Any) -> Response:
        ok, body = read_json(request)
        parts = body.get("parts") if ok and isinstance(body, dict) else None
        order = _part_order(parts)
        if order is None:
            return detail("Body must be {'parts': [{'partNumber': int, 'etag': str}, ...]}", 422)
        token = self.core.files.complete(upload_id, pending, order)
        if token is None:
            return detail("A part is missing or its ETag does not match", 400)
        return json_response({"access_url": self._url(request, token, pending.name)})

    def _presigned_put(self, request: Request, token: str, name: str) -> Response:
        upload_id = request.args.get("upload_id", "")
        pending = self.core.files.pending(upload_id, token, name)
        if pending is None:
            return detail("Upload URL not valid", 403)
        refused = self._refusal()
        if refused is not None:
            return refused
        self.core.files.store_whole(upload_id, pending, request.get_data())
        return Response(b"", status=200)

    # -- helpers --------------------------------------------------------------------

    def _check_cdn_token(self, request: Request) -> Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        with self._lock:
            expires = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if expires is None or expires <= time.time():
            return detail("Missing, unknown or expired CDN token", 401)
        return None

    def _refusal(self) -> Response | None:
        if not self._fault("upload_refused"):
            return None
        return detail("Upload refused (injected)", self.core.faults.upload_refused_status)

    def _fault(self, knob: str) -> bool:
        return decide_storage_fault(self.core.faults, self.core.config.seed, next(self._calls), knob)

    def _url(self, request: Request, token: str, name: str) -> str:
        return file_url(public_base_url(request, self.core.config.public_url), token, name)


def _name_and_type(request: Request) -> tuple[str, str]:
    content_type = request.headers.get("Content-Type") or _OCTET_STREAM
    return safe_name(request.headers.get("X-Fal-File-Name")), content_type


def _part_order(parts: Any) -> list[tuple[int, str]] | None:
    if not isinstance(parts, list) or not parts:
        return None
    order = []
    for part in parts:
        if not isinstance(part, dict):
            return None
        number, etag = part.get("partNumber"), part.get("etag")
        if isinstance(number, bool) or not isinstance(number, int) or not isinstance(etag, str):
            return None
        order.append((number, etag))
    return sorted(order)
