"""Reading a stored copy back in process (`falbridge jobs download` on the database; the
HTTP API serves the same bytes from webhooks/api/files.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from falbridge.models.db import transaction
from falbridge.models.jobs import parse_uuid
from falbridge.models.stored_files import stored_for
from falbridge.worker.storage import backend as backends

CHUNK = 256 * 1024


@contextmanager
def stored_chunks(job_id: str, file_id: int) -> Iterator[Iterator[bytes]]:
    """The stored copy of the job's file `file_id`, chunk by chunk. LookupError when there
    is none (not stored, recorded missing, gone from storage); StorageUnavailable (an
    OSError) when the backend cannot be read."""
    job_uuid = parse_uuid(job_id)
    with transaction() as s:
        found = stored_for(s, job_uuid, file_id) if job_uuid is not None else None
        stored = found[1] if found is not None else None
        key = stored.storage_key if stored is not None and stored.status == "stored" else None
    if key is None:
        raise LookupError(f"file {file_id} of job {job_id} has no stored copy")
    with backends.configured().open(key) as reader:
        yield iter(lambda: reader.read(CHUNK), b"")
