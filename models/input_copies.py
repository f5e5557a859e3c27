"""Input files uploaded through falbridge and the jobs that reference their copies.

falbridge keeps one content-addressed copy per digest (`inputs/<2 hex>/<sha256>`), shared
by every upload of the same bytes and every job naming one of those uploads. A copy may go
once nothing names its digest: no `input_uploads` row (an upload a job may still name) and
no `job_inputs` row (a job that did).

Deciding that and deleting the object must not race with a new reference. Both sides take
the digest's lock (`lock_digest`): the writer while it inserts its reference, the purge
while it checks for references, deletes the object and commits. So either the writer's
reference commits first (the purge sees it and keeps the copy), or the purge's delete
does (and the writer, checking for the object only after its own commit, writes it again;
a job created after the purge removed the upload record finds no upload and records no
digest). PostgreSQL: a transaction-scoped advisory lock per digest. SQLite: every
transaction begins IMMEDIATE, so writers are serialised already.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from falbridge.models.db import insert_unless_taken
from falbridge.models.tables import InputUpload, JobInput, utcnow

# Advisory lock keys are one bigint space shared by the whole database: this namespace
# (the first argument of the two-int form) keeps digests apart from any other use.
_LOCK_NAMESPACE = 0x1F4B


def lock_digest(session: Session, sha256: str) -> None:
    """Hold the digest's lock until the transaction ends (PostgreSQL; a no-op elsewhere)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    key = int(sha256[:7], 16)  # fits the int4 of the two-int form; a collision only waits
    session.execute(text("SELECT pg_advisory_xact_lock(:ns, :key)"), {"ns": _LOCK_NAMESPACE, "key": key})


def record_upload(session: Session, url: str, sha256: str, size: int, content_type: str) -> None:
    """Remember an upload (once per URL) so that a job naming the URL records its digest."""
    lock_digest(session, sha256)
    row = {"url": url, "sha256": sha256, "size": size, "content_type": content_type, "uploaded_at": utcnow()}
    session.execute(_insert_upload_once(session.get_bind().dialect.name).values(row))


def copy_kept(session: Session, url: str, storage_key: str) -> None:
    session.execute(update(InputUpload).where(InputUpload.url == url).values(storage_key=storage_key))


@functools.cache
def _insert_upload_once(dialect: str) -> Insert:
    return insert_unless_taken(dialect, InputUpload, InputUpload.__table__.c.url)


def uploads_named(session: Session, urls: Iterable[str]) -> dict[str, InputUpload]:
    """The uploads among `urls`, by URL, each digest locked (for `reference`, in the same
    transaction); URLs nobody uploaded through falbridge are simply absent."""
    wanted = sorted(set(urls))
    if not wanted:
        return {}
    found = {u.url: u for u in session.scalars(select(InputUpload).where(InputUpload.url.in_(wanted)))}
    for digest in sorted({u.sha256 for u in found.values()}):  # one order: no lock cycles
        lock_digest(session, digest)
    # Read again under the locks: a purge that held one may have removed the row meanwhile.
    if found:
        found = {u.url: u for u in session.scalars(select(InputUpload).where(InputUpload.url.in_(wanted)))}
    return found


def reference(session: Session, job_id: uuid.UUID, files: Iterable[dict[str, Any]]) -> None:
    """The job's references to its inputs' copies (one per digest)."""
    sizes = {str(f["sha256"]): int(f["size"]) for f in files}
    session.add_all(JobInput(job_id=job_id, sha256=digest, size=size) for digest, size in sizes.items())


def unreferenced(session: Session, sha256: str) -> bool:
    """Under the digest's lock: True when no upload record and no job names the digest,
    so its copy may be deleted before this transaction commits."""
    lock_digest(session, sha256)
    uploads = select(func.count()).select_from(InputUpload).where(InputUpload.sha256 == sha256)
    jobs = select(func.count()).select_from(JobInput).where(JobInput.sha256 == sha256)
    return not session.scalar(uploads) and not session.scalar(jobs)
