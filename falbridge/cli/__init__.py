"""`falbridge`: the one command line.

Every command lives in this package (jobs: submit, jobs, cancel; deliveries; run: db,
worker, beat, serve, reconcile, demo; purge) except `sandbox`, the fal emulator's own command, mounted here
from falbridge.sandbox, which stays independent of the rest. Commands are imported when
used or listed: `falbridge jobs list` need not load Flask or gunicorn, and a command whose
module is broken must not take the rest of the CLI down with it.

Before any command runs, the configuration is read and checked (falbridge.config): a bad
value stops it with one `error:` line naming the variable, exit 2.
"""

from __future__ import annotations

import importlib

import click

from falbridge import config
from falbridge.cli.errors import CliGroup, Failure, InputError

# name -> (module, attribute)
LAZY_COMMANDS = {
    "submit": ("falbridge.cli.submit", "submit"),
    "jobs": ("falbridge.cli.jobs", "jobs"),
    "cancel": ("falbridge.cli.jobs", "cancel"),
    "deliveries": ("falbridge.cli.deliveries", "deliveries"),
    "subscriptions": ("falbridge.cli.subscriptions", "subscriptions"),
    "events": ("falbridge.cli.subscriptions", "events"),
    "db": ("falbridge.cli.run", "db"),
    "worker": ("falbridge.cli.run", "worker"),
    "beat": ("falbridge.cli.run", "beat"),
    "serve": ("falbridge.cli.serve", "serve"),
    "reconcile": ("falbridge.cli.run", "reconcile"),
    "purge": ("falbridge.cli.purge", "purge"),
    "demo": ("falbridge.cli.run", "demo"),
    "notify-secret": ("falbridge.cli.notify_secret", "notify_secret"),
    "sandbox": ("falbridge.sandbox.cli", "sandbox"),
}


class Main(CliGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in LAZY_COMMANDS:
            command = _load(name, *LAZY_COMMANDS[name])
        return command


def _load(name: str, module: str, attribute: str) -> click.Command:
    try:
        command = getattr(importlib.import_module(module), attribute)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            return _unavailable(name, f"cannot import {module}: {exc}")
        return _unavailable(name, f"not built yet ({module} does not exist)")
    except (ImportError, AttributeError) as exc:
        return _unavailable(name, f"cannot import {module}.{attribute}: {exc}")
    assert isinstance(command, click.Command)
    return command


def _unavailable(name: str, reason: str) -> click.Command:
    def fail() -> None:
        raise Failure(f"falbridge {name} is {reason}")

    # Any arguments are accepted, so the user sees why the command cannot run rather than
    # a complaint about an option it would have had.
    return click.Command(
        name,
        callback=fail,
        help=f"(unavailable: {reason})",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--api",
    metavar="URL",
    help="Run the job commands (submit, jobs, cancel, deliveries) through this falbridge's HTTP API "
    "instead of the database (FALBRIDGE_API_URL; the token from FALBRIDGE_API_TOKEN).",
)
@click.version_option(package_name="falbridge", prog_name="falbridge")
def main(api: str | None) -> None:
    """Run fal.ai model jobs through fal's queue: submit, track, cancel, serve webhooks."""
    try:
        config.use(config.Config.from_environ())
    except config.ConfigError as exc:
        raise InputError(f"configuration: {exc}") from None
