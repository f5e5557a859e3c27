"""Reading one row back after the code under test committed it."""

from __future__ import annotations

from typing import Any, TypeVar

from falbridge.models.db import transaction

Row = TypeVar("Row")


def row(model: type[Row], key: Any) -> Row:
    """The row of `model` with primary key `key`, loaded and detached from its session."""
    with transaction() as s:
        found = s.get(model, key)
        assert found is not None, f"no {model.__name__} {key!r}"
        s.expunge(found)
        return found
