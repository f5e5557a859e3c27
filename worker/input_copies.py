"""falbridge's own copies of the input files it was handed (the dashboard draws masks over
them; fal's copy ages out), and the digests a job records for the uploads its input names.

Every upload through falbridge (POST /api/files, a file handed to Python or the CLI) is
recorded by URL before its copy is written, so a job naming that URL later, over HTTP or
not, records the same sha256, size and copy key. The order (record committed, then the
copy checked and written) is what lets the purge delete unreferenced copies safely:
falbridge.models.input_copies says why.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, BinaryIO

from sqlalchemy.orm import Session

from falbridge.models.db import transaction
from falbridge.models.input_copies import copy_kept, record_upload, uploads_named
from falbridge.worker.fal.upload import Uploaded
from falbridge.worker.input_files import InputFile, Location, Uploader
from falbridge.worker.storage.backend import StorageUnavailable, input_key
from falbridge.worker.storage.backend import configured as storage_backend

_COPY_CHUNK = 1024 * 1024

log = logging.getLogger(__name__)


def keeping(upload: Uploader) -> Uploader:
    """`upload`, then the upload recorded and falbridge's copy kept: the server side's
    uploader (a remote client's uploads go through POST /api/files, which keeps them)."""

    def upload_and_keep(stream: BinaryIO, size: int, content_type: str, name: str) -> Uploaded:
        start = stream.tell()
        done = upload(stream, size, content_type, name)
        stream.seek(start)
        keep_input_copy(stream, done)
        return done

    return upload_and_keep


def keep_input_copy(stream: BinaryIO, uploaded: Uploaded) -> None:
    """Record the upload, then make sure its copy is in storage under `inputs/<sha256>`.

    Best effort for the copy: fal storage already holds the file the job will use, so a
    storage backend that is down costs the copy (logged, no key recorded), never the job.
    """
    with transaction() as s:
        record_upload(s, uploaded.url, uploaded.sha256, uploaded.size, uploaded.content_type)
    key = input_key(uploaded.sha256)
    try:
        backend = storage_backend()
        if not backend.exists(key):  # checked only now that the record has committed
            backend.put(key, _chunks(stream, uploaded.size))
    except StorageUnavailable as exc:
        log.warning("input file %s not kept: storage unavailable (%s)", uploaded.sha256, exc)
        return
    with transaction() as s:
        copy_kept(s, uploaded.url, key)


def _chunks(stream: BinaryIO, size: int) -> Iterator[bytes]:
    left = size
    while left > 0:
        chunk = stream.read(min(_COPY_CHUNK, left))
        if not chunk:
            return
        left -= len(chunk)
        yield chunk


def uploaded_inputs(session: Session, value: Any) -> list[InputFile]:
    """The input's URLs (at any depth) that were uploaded through falbridge, described as
    the upload recorded them; in the caller's transaction, which then references them."""
    urls: list[tuple[Location, str]] = []

    def walk(item: Any, location: Location) -> None:
        if isinstance(item, str) and item.startswith(("https://", "http://")):
            urls.append((location, item))
        elif isinstance(item, dict):
            for k, v in item.items():
                walk(v, (*location, k))
        elif isinstance(item, list):
            for i, v in enumerate(item):
                walk(v, (*location, i))

    walk(value, ())
    found = uploads_named(session, (url for _, url in urls))
    return [
        InputFile(where, url, u.sha256, u.size, u.content_type, u.storage_key)
        for where, url in urls
        if (u := found.get(url)) is not None
    ]
