"""The deployment's own signing secrets, by name. "notify" signs the callback each job
with a `notify_url` gets: one secret for every job, made on first use, shown by
`falbridge notify-secret show`, rotated with the same overlap as a subscription's.

Stored encrypted like subscription secrets (models.secrets), with an id derived from the
name as associated data.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from falbridge.config import Config
from falbridge.models import secrets
from falbridge.models.db import insert_unless_taken
from falbridge.models.tables import DeploymentSecret, utcnow

NOTIFY = "notify"


def _sealed_as(name: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"falbridge:deployment-secret:{name}")


def ensure(session: Session, cfg: Config, name: str) -> DeploymentSecret:
    """The secret `name`, made now if it does not exist yet (racing makers leave one)."""
    found = session.get(DeploymentSecret, name, populate_existing=True)
    if found is not None:
        return found
    values = {
        "name": name,
        "secret_encrypted": secrets.encrypt(cfg, _sealed_as(name), secrets.new_secret()),
        "created_at": utcnow(),
    }
    dialect = session.get_bind().dialect.name
    session.execute(
        insert_unless_taken(dialect, DeploymentSecret, DeploymentSecret.__table__.c.name).values(values)
    )
    return session.scalars(
        select(DeploymentSecret)
        .where(DeploymentSecret.name == name)
        .execution_options(populate_existing=True)
    ).one()


def reveal(session: Session, cfg: Config, name: str) -> str:
    """The current secret, in clear (for the operator's command, never for a log)."""
    return secrets.decrypt(cfg, _sealed_as(name), ensure(session, cfg, name).secret_encrypted)


def rotate(session: Session, cfg: Config, name: str) -> str:
    """A new current secret, returned in clear; the old one keeps signing beside it for
    FALBRIDGE_NOTIFY_ROTATION_OVERLAP_S."""
    row = ensure(session, cfg, name)
    secret, now = secrets.new_secret(), utcnow()
    row.previous_secret_encrypted = row.secret_encrypted
    row.previous_secret_expires_at = now + timedelta(seconds=cfg.notify.rotation_overlap_s)
    row.secret_encrypted = secrets.encrypt(cfg, _sealed_as(name), secret)
    row.rotated_at = now
    session.flush()
    return secret


def signing_secrets(session: Session, cfg: Config, name: str, now: datetime) -> list[str]:
    """The secrets that sign now: the current one, and the previous one in its overlap."""
    row = ensure(session, cfg, name)
    previous, until = row.previous_secret_encrypted, row.previous_secret_expires_at
    return secrets.signing(cfg, _sealed_as(name), row.secret_encrypted, previous, until, now)
