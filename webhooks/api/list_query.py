"""`GET /api/jobs`'s query string: filters, a page, and either newest first (a listing) or
oldest change first (the changes feed, from `updated_after` or a feed cursor). Every
problem is a 422 naming its parameter, as for bodies (webhooks.api.params)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from werkzeug.datastructures import MultiDict

from falbridge.models.feed import feed_cursor_position
from falbridge.models.listing import MAX_PAGE, CursorError, JobFilters, decode_cursor
from falbridge.models.metadata_filter import MAX_METADATA_FILTERS, check_filter, parse_value
from falbridge.models.states import ALL_STATUSES
from falbridge.webhooks.api.params import field_error, invalid_request, unknown_names
from falbridge.webhooks.api.schemas import MAX_CURSOR, MAX_FILTER
from falbridge.webhooks.errors import ApiError

DEFAULT_PAGE = 50
TIMES = ("created_after", "created_before", "updated_after")
LIST_PARAMS = ("status", "endpoint_id", "external_id", *TIMES, "limit", "cursor")
_METADATA = re.compile(r"metadata\[(.*)\]", re.S)
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ListQuery:
    filters: JobFilters
    limit: int
    cursor: str | None
    updated_after: datetime | None


def list_query(args: MultiDict[str, str]) -> ListQuery:
    metadata, errors = _metadata_filters(args)
    named = [name for name in args if not _METADATA.fullmatch(name)]
    errors += unknown_names([name for name in named if name not in LIST_PARAMS], LIST_PARAMS, "parameter")
    errors += [field_error(name, "given more than once") for name in args if len(args.getlist(name)) > 1]
    # An empty value means "not given", as an HTML form would send it.
    value = {name: args.get(name) or None for name in LIST_PARAMS}
    for name in LIST_PARAMS:
        # NUL: PostgreSQL refuses it in a query parameter (a 500, not "no match").
        text = value[name]
        if text is not None and "\x00" in text:
            errors.append(field_error(name, "must not contain a NUL character"))
            value[name] = None
    for name, most in (("endpoint_id", MAX_FILTER), ("external_id", MAX_FILTER), ("cursor", MAX_CURSOR)):
        text = value[name]
        if text is not None and len(text) > most:
            errors.append(field_error(name, f"must be at most {most} characters long"))
            value[name] = None
    if value["status"] is not None and value["status"] not in ALL_STATUSES:
        errors.append(field_error("status", f"must be one of {', '.join(ALL_STATUSES)}"))
    times: dict[str, datetime | None] = {}
    for name in TIMES:
        try:
            times[name] = parse_time(value[name])
        except ValueError:
            errors.append(field_error(name, "must be an ISO-8601 date or time, e.g. 2024-05-01T12:00:00Z"))
    limit = _parse_limit(value["limit"], errors)
    if errors:
        raise invalid_request(errors)
    updated_after = times.pop("updated_after")
    _check_cursor(value["cursor"], feed=updated_after is not None)
    filters = JobFilters(
        status=value["status"],
        endpoint_id=value["endpoint_id"],
        external_id=value["external_id"],
        metadata=metadata,
        created_after=times["created_after"],
        created_before=times["created_before"],
    )
    return ListQuery(filters, limit, value["cursor"], updated_after)


def _metadata_filters(args: MultiDict[str, str]) -> tuple[tuple[tuple[str, Any], ...], list[dict[str, str]]]:
    """metadata[<key>]=<value>, the value read by models.metadata_filter.parse_value."""
    found, errors = [], []
    for name in args:
        match = _METADATA.fullmatch(name)
        if match is None:
            continue
        key, text = match[1], args.get(name) or ""
        value = parse_value(text)
        problem = check_filter(key, value) or ("\x00" in text and "must not contain a NUL character")
        if problem:
            errors.append(field_error(name[:80], problem))
        else:
            found.append((key, value))
    if len(found) > MAX_METADATA_FILTERS:
        errors.append(field_error("metadata", f"at most {MAX_METADATA_FILTERS} metadata filters"))
    return tuple(found), errors


def _check_cursor(cursor: str | None, *, feed: bool) -> None:
    """A cursor of the listing or of the feed (the only kind with `updated_after`)."""
    if cursor is None:
        return
    try:
        try:
            at = feed_cursor_position(cursor)
        except CursorError:
            if feed:  # updated_after with a listing's cursor: two different orders
                raise
            at, _ = decode_cursor(cursor)
        # The database layer converts to UTC; a crafted instant outside datetime's range
        # (year 1 with a positive offset) would overflow there, as a 500.
        at.astimezone(UTC)
    # AttributeError: decode_cursor lets a crafted cursor holding a number as the id through.
    # RecursionError: a crafted cursor can hold deeply nested JSON.
    except (CursorError, AttributeError, RecursionError, OverflowError):
        raise ApiError(
            422,
            "invalid_cursor",
            "cursor is not one this API issued",
            [field_error("cursor", "not a cursor from a previous page")],
        ) from None


def _parse_limit(raw: str | None, errors: list[dict[str, str]]) -> int:
    # Only plain digits: int() would also take "+5", " 5" and "5_0".
    if raw is None:
        return DEFAULT_PAGE
    if raw.isascii() and raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= MAX_PAGE:
        return int(raw)
    errors.append(field_error("limit", f"must be an integer from 1 to {MAX_PAGE}"))
    return DEFAULT_PAGE


def parse_time(raw: str | None) -> datetime | None:
    """ISO-8601; a time without an offset is taken as UTC."""
    if raw is None:
        return None
    at = datetime.fromisoformat(raw)
    if at.tzinfo is None:
        return at.replace(tzinfo=UTC)
    try:
        return at.astimezone(UTC)
    except OverflowError:
        # A valid instant just outside datetime's range (0001-01-01T00:00+05:00): as a
        # bound it means "since forever" or "until forever", so clamp rather than refuse.
        return _EARLIEST if at.year == 1 else _LATEST
