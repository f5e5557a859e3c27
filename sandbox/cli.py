"""`falbridge sandbox` / `python -m falbridge.sandbox`: run the sandbox in the foreground."""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

import click

from falbridge.sandbox.config import Faults, SandboxConfig, SettingsError
from falbridge.sandbox.server import SandboxServer


def _parse_faults(ctx: click.Context, param: click.Parameter, value: str | None) -> Faults:
    if not value:
        return Faults()
    try:
        knobs = json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}") from exc
    if not isinstance(knobs, dict):
        raise click.BadParameter("must be a JSON object, e.g. '{\"drop\": 0.1}'")
    try:
        return Faults().updated(knobs)
    except SettingsError as exc:
        raise click.BadParameter(str(exc)) from exc


def _parse_seed(ctx: click.Context, param: click.Parameter, value: str | None) -> int | str | None:
    if value is None:
        return None
    return int(value) if value.lstrip("-").isdigit() else value


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port", default=8765, show_default=True, type=int, help="Port to listen on (0 = any free port)."
)
@click.option("--latency", type=float, help="Seconds each job spends IN_PROGRESS.")
@click.option("--concurrency", type=int, help="Jobs IN_PROGRESS at once; the rest wait IN_QUEUE.")
@click.option("--retention", type=float, help="Seconds a finished request stays fetchable [3600].")
@click.option(
    "--retention-scale",
    type=float,
    help="Multiplies fal's result retention (1 h, 6 min for results of 10 KB or more); 0.01 for tests.",
)
@click.option(
    "--public-url",
    metavar="URL",
    help="scheme://host[:port] put in the URLs handed back (default: the caller's, X-Forwarded-* first).",
)
@click.option("--seed", callback=_parse_seed, help="Seed for reproducible faults and model outputs.")
@click.option("--user-id", help="fal user id sent in X-Fal-Webhook-User-Id.")
@click.option(
    "--faults",
    "faults",
    callback=_parse_faults,
    metavar="JSON",
    help='Initial fault settings, e.g. \'{"drop": 0.1, "duplicate": 0.2}\'.',
)
def sandbox(
    host: str,
    port: int,
    latency: float | None,
    concurrency: int | None,
    retention: float | None,
    retention_scale: float | None,
    public_url: str | None,
    seed: int | str | None,
    user_id: str | None,
    faults: Faults,
) -> None:
    """Run a local emulator of fal.ai's queue API until Ctrl-C or SIGTERM."""
    overrides: dict[str, Any] = {
        name: value
        for name, value in (
            ("latency_s", latency),
            ("concurrency", concurrency),
            ("retention_s", retention),
            ("retention_scale", retention_scale),
            ("seed", seed),
            ("user_id", user_id),
        )
        if value is not None
    }
    try:
        config = SandboxConfig(host=host, port=port, faults=faults, public_url=public_url).updated(overrides)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        server = SandboxServer(config).start()
    except OSError as exc:
        raise click.ClickException(str(exc)) from exc
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        click.echo(f"fal sandbox listening on {server.url} (JWKS: {server.jwks_url})")
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
