"""JSON as falbridge takes it in, wherever it comes from (the API, fal's callbacks and
results, the CLI): what RFC 8259 allows and what PostgreSQL can store.

Python's json module is more lenient than both, and each leniency would surface later as a
500 or a row the database refuses:
- NaN, Infinity and numbers that overflow to infinity (1e999): not JSON, and jsonb
  refuses them;
- nesting deeper than a limit (Python's own decoder raises RecursionError at about a
  thousand levels, which is caught too), and, when asked, objects with more keys or arrays
  with more items than a limit: an oversized object stops the parse as soon as it is built;
- NUL characters and unpaired surrogates (\\u0000, \\ud800) in any key or string:
  PostgreSQL stores neither, in text or in jsonb.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal

Problem = Literal["invalid_json", "too_deep", "too_many_keys", "too_many_items", "unstorable"]

# \x00 and any lone UTF-16 surrogate; a valid pair ("\ud83d\ude00") decodes to one code point.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_PATH_PARTS_SHOWN = 16


class JSONRejected(ValueError):
    """The document is not one falbridge accepts; `problem` says which rule it broke and
    `path` (keys and indexes) where, when there is a where."""

    def __init__(self, problem: Problem, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.problem = problem
        self.path = path


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:32]} is out of range")
    return value


def loads(
    data: bytes | str,
    *,
    max_depth: int | None = None,
    max_keys: int | None = None,
    max_items: int | None = None,
    storable: bool = False,
) -> Any:
    """Parse strictly, refusing an object of more than `max_keys` keys as it is built;
    with `max_depth`, `max_items` or `storable`, also walk the tree and refuse a document
    nested deeper, an array longer, or text the database can't store."""

    def dict_within_limit(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if max_keys is not None and len(pairs) > max_keys:
            raise JSONRejected("too_many_keys", f"JSON object with more than {max_keys} keys")
        return dict(pairs)

    try:
        doc = json.loads(
            data,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            object_pairs_hook=dict_within_limit if max_keys is not None else None,
        )
    except JSONRejected:
        raise
    except RecursionError:
        deeper = f"nesting deeper than {max_depth} levels" if max_depth is not None else "nested too deeply"
        raise JSONRejected("too_deep", f"JSON {deeper}") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, the two hooks above
        # json's messages are short; a UnicodeDecodeError's can quote the input's bytes.
        raise JSONRejected("invalid_json", str(exc)[:200]) from None
    if max_depth is not None or max_items is not None or storable:
        check_tree(doc, max_depth=max_depth, max_items=max_items, storable=storable)
    return doc


def check_tree(
    doc: Any, *, max_depth: int | None = None, max_items: int | None = None, storable: bool = True
) -> None:
    """Depth, array lengths and storable strings, walked without recursion (the document
    may be huge)."""
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(doc, 1, ())]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, str):
            if storable:
                _check_text(value, path)
            continue
        if not isinstance(value, (dict, list)):
            continue  # a number, boolean or null document
        if max_depth is not None and depth > max_depth:
            raise JSONRejected("too_deep", f"JSON nesting deeper than {max_depth} levels{_at(path)}", path)
        if max_items is not None and isinstance(value, list) and len(value) > max_items:
            message = f"JSON array with more than {max_items} items{_at(path)}"
            raise JSONRejected("too_many_items", message, path)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if storable and isinstance(key, str):
                _check_text(key, (*path, key))
            if isinstance(item, (str, dict, list)):
                stack.append((item, depth + 1, (*path, key)))


def is_strict(value: Any) -> bool:
    """True if `value` (already parsed, e.g. by httpx) serialises as strict JSON."""
    try:
        json.dumps(value, allow_nan=False)
    except (ValueError, RecursionError):
        return False
    return True


def compact_size(value: Any) -> int:
    """Bytes of `value` as compact UTF-8 JSON: what the database and fal will get."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def is_storable(text: str) -> bool:
    """True if the database can hold `text` (no NUL, no lone surrogate)."""
    return UNSTORABLE.search(text) is None


def storable(text: str) -> str:
    """`text` with each character the database cannot hold replaced by U+FFFD."""
    return UNSTORABLE.sub("\ufffd", text)


def field_name(path: tuple[str | int, ...]) -> str:
    """`a.b[2].c`, cut short: a field path for a message, not a dump of the document."""
    out = ""
    for part in path[:_PATH_PARTS_SHOWN]:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = storable(part[:64])  # the message itself must be storable
            out += f".{name}" if out else name
    return out or "(body)"


def _at(path: tuple[str | int, ...]) -> str:
    return f" at {field_name(path)}" if path else ""


def _check_text(text: str, path: tuple[str | int, ...]) -> None:
    found = UNSTORABLE.search(text)
    if found is not None:
        what = "a NUL character" if found.group() == "\x00" else "an unpaired UTF-16 surrogate"
        raise JSONRejected("unstorable", f"contains {what}, which cannot be stored", path)
