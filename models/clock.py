"""The database's clock, for the times that order the changes feed.

Every writer stamps `jobs.updated_at` from the one clock all of them share, the
database's, so the feed's order does not depend on which machine's clock a worker or a
receiver reads. PostgreSQL: clock_timestamp() (the moment of the statement, not of the
transaction's start, so a stamp is as close to its commit as it can be). SQLite: its
'now', with microseconds written as SQLAlchemy writes its own datetimes, so stored values
compare as strings in time order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from falbridge.models.tables import UTCDateTime


class db_now(FunctionElement[datetime]):  # read in SQL as a function call
    """The database's current time, `seconds_ago` seconds back (a bound parameter, so a
    statement's cached form serves every value)."""

    type = UTCDateTime()
    inherit_cache = True
    name = "db_now"

    def __init__(self, seconds_ago: float = 0.0) -> None:
        super().__init__(literal(float(seconds_ago), Float()))


@compiles(db_now, "postgresql")
def _postgresql(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    seconds = compiler.process(element.clauses, **kw)
    return f"(clock_timestamp() - make_interval(secs => {seconds}))"


@compiles(db_now, "sqlite")
def _sqlite(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    # %f is seconds with milliseconds (SS.SSS); three zeros make the microseconds of
    # SQLAlchemy's own "YYYY-MM-DD HH:MM:SS.ffffff".
    seconds = compiler.process(element.clauses, **kw)
    return f"(strftime('%Y-%m-%d %H:%M:%f', 'now', printf('-%f seconds', {seconds})) || '000')"
