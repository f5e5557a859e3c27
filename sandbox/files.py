"""The sandbox's stand-in for fal's CDN: files served under /files/{token}/{name}.

Model outputs are put here directly; uploads (docs/fal-protocol.md, "Upload API") arrive
whole, in parts (multipart) or through a presigned PUT, and become readable only once
complete. Tokens are random, so a URL is the capability to read its file, as on fal's CDN.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import urllib.parse
from dataclasses import dataclass, field

_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
DEFAULT_NAME = "upload.bin"


@dataclass(frozen=True)
class StoredFile:
    name: str
    content_type: str
    data: bytes


@dataclass
class PendingUpload:
    """A file whose URL was handed out but whose bytes have not all arrived."""

    token: str
    name: str
    content_type: str
    parts: dict[int, bytes] = field(default_factory=dict)


def safe_name(raw: str | None) -> str:
    """A file name fit for a URL path segment; a hostile X-Fal-File-Name loses its tricks."""
    name = _UNSAFE_NAME_CHARS.sub("_", (raw or "").rsplit("/", 1)[-1]).strip("._")[:120]
    return name or DEFAULT_NAME


def part_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


class FileStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, StoredFile] = {}
        self._pending: dict[str, PendingUpload] = {}  # by upload id

    def put(self, base_url: str, name: str, content_type: str, data: bytes) -> dict[str, object]:
        """Store bytes and describe them as a fal `File` object."""
        token = secrets.token_hex(12)
        with self._lock:
            self._files[token] = StoredFile(name, content_type, data)
        return {
            "url": file_url(base_url, token, name),
            "content_type": content_type,
            "file_name": name,
            "file_size": len(data),
        }

    def get(self, token: str, name: str) -> StoredFile | None:
        stored = self._files.get(token)
        return stored if stored is not None and stored.name == name else None

    def lookup_url(self, url: str) -> StoredFile | None:
        """The file behind one of our own URLs, whatever host the caller reached us by."""
        segments = urllib.parse.urlsplit(url).path.split("/")
        if len(segments) != 4 or segments[1] != "files":
            return None
        return self.get(segments[2], urllib.parse.unquote(segments[3]))

    # -- uploads --------------------------------------------------------------------

    def begin(self, name: str, content_type: str) -> tuple[str, PendingUpload]:
        """Reserve a URL; the upload id doubles as the secret of a presigned PUT."""
        upload_id = secrets.token_urlsafe(16)
        pending = PendingUpload(secrets.token_hex(12), name, content_type)
        with self._lock:
            self._pending[upload_id] = pending
        return upload_id, pending

    def pending(self, upload_id: str, token: str, name: str) -> PendingUpload | None:
        with self._lock:
            found = self._pending.get(upload_id)
        return found if found is not None and (found.token, found.name) == (token, name) else None

    def add_part(self, pending: PendingUpload, number: int, data: bytes) -> str:
        with self._lock:
            pending.parts[number] = data
        return part_etag(data)

    def complete(self, upload_id: str, pending: PendingUpload, order: list[tuple[int, str]]) -> str | None:
        """Join the named parts; None (and nothing stored) if one is missing or its ETag differs."""
        with self._lock:
            chunks = []
            for number, etag in order:
                data = pending.parts.get(number)
                if data is None or etag.strip('"') != part_etag(data).strip('"'):
                    return None
                chunks.append(data)
            self._pending.pop(upload_id, None)
            self._files[pending.token] = StoredFile(pending.name, pending.content_type, b"".join(chunks))
        return pending.token

    def store_whole(self, upload_id: str, pending: PendingUpload, data: bytes) -> None:
        with self._lock:
            self._pending.pop(upload_id, None)
            self._files[pending.token] = StoredFile(pending.name, pending.content_type, data)

    def upload(self, name: str, content_type: str, data: bytes) -> str:
        """A single-request upload; the token of the stored file."""
        token = secrets.token_hex(12)
        with self._lock:
            self._files[token] = StoredFile(name, content_type, data)
        return token

    def clear(self) -> None:
        with self._lock:
            self._files.clear()
            self._pending.clear()


def file_url(base_url: str, token: str, name: str) -> str:
    return f"{base_url}/files/{token}/{urllib.parse.quote(name)}"
