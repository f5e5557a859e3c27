"""`metadata[<key>] = <value>`: a job's metadata holds `value` under `key`.

Values are JSON scalars, compared as JSON: 7 matches 7 (and 7.0), not "7"; "gold" matches
"gold"; true, false and null match themselves. PostgreSQL asks `metadata @> {key: value}`,
which its GIN index (ix_jobs_metadata) answers; SQLite compares the value's JSON type and
value, key by key, on the rows the other conditions leave.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from sqlalchemy import ColumnElement, and_, func, literal
from sqlalchemy.dialects.postgresql import JSONB

from falbridge.models.tables import Job

# Keys that need no quoting in a SQLite JSON path (and read well in a URL).
KEY_PATTERN = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
MAX_METADATA_FILTERS = 10
SCALARS = (str, int, float, bool, type(None))


def parse_value(text: str) -> Any:
    """A value as a query string or the command line writes it: the JSON scalar it spells
    (7, 2.5, true, null, "7"), else the text itself (gold, [1])."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return text
    scalar = isinstance(value, SCALARS) and not (isinstance(value, float) and not math.isfinite(value))
    return value if scalar else text


def check_filter(key: str, value: Any) -> str | None:
    """What is wrong with this filter, or None."""
    if not KEY_PATTERN.fullmatch(key):
        return "a metadata key is 1 to 64 letters, digits or _ . : -"
    if not isinstance(value, SCALARS) or (isinstance(value, float) and not math.isfinite(value)):
        return "a metadata filter compares one value: a string, number, true, false or null"
    return None


def metadata_equals(key: str, value: Any, dialect: str) -> ColumnElement[bool]:
    problem = check_filter(key, value)
    if problem is not None:
        raise ValueError(f"metadata[{key[:64]}]: {problem}")
    if dialect == "postgresql":
        return Job.meta.op("@>")(literal({key: value}, JSONB))
    path = f'$."{key}"'
    kind = func.json_type(Job.meta, path)
    if value is None or isinstance(value, bool):
        return kind == {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, str):
        return and_(kind == "text", func.json_extract(Job.meta, path) == value)
    return and_(kind.in_(("integer", "real")), func.json_extract(Job.meta, path) == value)
