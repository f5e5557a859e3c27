"""How every command fails: one line on stderr, `error: ...`, never a traceback.

Exit codes: 0 done; 2 the request itself is wrong and would fail the same way again (bad
usage, input or configuration, an unknown job id, a conflict with what is stored: what
the HTTP API answers with a 4xx); 1 it failed while running (database unreachable, the
job did not finish in time or did not complete).
"""

from __future__ import annotations

import re
from typing import IO, Any

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from falbridge.models.db import database_url


class InputError(click.UsageError):
    """The request is wrong: exit 2."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class Failure(click.ClickException):
    """It failed while running: exit 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class CliGroup(click.Group):
    """Turns click's usage errors and database errors into one `error:` line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (InputError, Failure):
            raise
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            raise InputError(exc.format_message() + hint) from None
        except SQLAlchemyError as exc:
            raise Failure(database_problem(exc)) from None


def database_problem(exc: SQLAlchemyError) -> str:
    # The driver's message only: str(exc) would add the SQL and its parameters (inputs).
    reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
    where = where_the_database_is()
    if re.search(r"no such (table|column)|(relation|column) \S+ does not exist", reason):
        return f"{where} is not set up ({reason}); run `falbridge db upgrade`"
    return f"database error at {where}: {reason}"


def where_the_database_is() -> str:
    return make_url(database_url()).render_as_string(hide_password=True)
