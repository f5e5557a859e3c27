"""`falbridge`: the one command line, assembled from each layer's commands.

worker/cli.py gives submit, jobs, cancel, db and worker. serve and demo (webhooks.cli)
and sandbox (sandbox.cli) are imported only when used or listed: they pull in Flask and
the sandbox, and a command whose module is missing or broken must not take the rest
of the CLI down with it.
"""

from __future__ import annotations

import importlib

import click

from falbridge.worker.cli import COMMANDS, CliGroup, Failure
from falbridge.worker.cli_ops import download, reconcile

# name -> (module, attribute)
LAZY_COMMANDS = {
    "serve": ("falbridge.webhooks.cli", "serve"),
    "demo": ("falbridge.webhooks.cli", "demo"),
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
        return getattr(importlib.import_module(module), attribute)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            return _unavailable(name, f"cannot import {module}: {exc}")
        return _unavailable(name, f"not built yet ({module} does not exist)")
    except (ImportError, AttributeError) as exc:
        return _unavailable(name, f"cannot import {module}.{attribute}: {exc}")


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
def main() -> None:
    """Run fal.ai model jobs through fal's queue: submit, track, cancel, serve webhooks."""


for _command in COMMANDS:
    main.add_command(_command)

main.add_command(reconcile)
main.commands["jobs"].add_command(download)
