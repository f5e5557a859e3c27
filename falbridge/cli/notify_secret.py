"""`falbridge notify-secret show|rotate`: the deployment's secret that signs every job's
notify_url callback (models.deployment_secrets). Made on first use; read and rotated on
the database directly, by an operator holding FALBRIDGE_SECRET_KEY, never over the API."""

from __future__ import annotations

import click

from falbridge import config
from falbridge.cli.errors import CliGroup
from falbridge.models import deployment_secrets
from falbridge.models.db import transaction


@click.group("notify-secret", cls=CliGroup)
def notify_secret() -> None:
    """The secret that signs each job's notify_url callback (Standard Webhooks)."""


@notify_secret.command()
def show() -> None:
    """Print the current secret (whsec_...), for the services that verify callbacks."""
    with transaction() as s:
        secret = deployment_secrets.reveal(s, config.current(), deployment_secrets.NOTIFY)
    click.echo(secret)


@notify_secret.command()
def rotate() -> None:
    """Make a new secret and print it; the old one keeps signing beside it for
    FALBRIDGE_NOTIFY_ROTATION_OVERLAP_S, time to give the new one to every verifier."""
    cfg = config.current()
    with transaction() as s:
        secret = deployment_secrets.rotate(s, cfg, deployment_secrets.NOTIFY)
    click.echo(secret)
    click.echo(
        f"the previous secret signs too for {cfg.notify.rotation_overlap_s:g} s "
        "(FALBRIDGE_NOTIFY_ROTATION_OVERLAP_S)",
        err=True,
    )
