"""The sandbox's stand-in for fal's CDN: output files served under /files/{token}/{name}."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class StoredFile:
    name: str
    content_type: str
    data: bytes


class FileStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, StoredFile] = {}

    def put(self, base_url: str, name: str, content_type: str, data: bytes) -> dict[str, object]:
        """Store bytes and describe them as a fal `File` object."""
        token = secrets.token_hex(12)
        with self._lock:
            self._files[token] = StoredFile(name, content_type, data)
        return {
            "url": f"{base_url}/files/{token}/{name}",
            "content_type": content_type,
            "file_name": name,
            "file_size": len(data),
        }

    def get(self, token: str, name: str) -> StoredFile | None:
        stored = self._files.get(token)
        return stored if stored is not None and stored.name == name else None

    def clear(self) -> None:
        with self._lock:
            self._files.clear()
