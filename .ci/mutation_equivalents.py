"""The equivalent mutants of .ci/equivalent-mutants.txt, found again after their lines move.

A mutant is named `path:line:col operator[#n]`, so an edit above it in its module changes its
name, and the list would silently stop matching (it did, three times in one day). The list
is in git: a listed mutant its module no longer has at that line is looked for where the
source line it was listed against (the module as of the commit that last wrote its entry)
now is, with the same column, operator and #n. Found: it is the same mutant, moved.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

_ID = re.compile(r"^(?P<module>[^:]+):(?P<line>\d+):(?P<col>\d+) (?P<rest>\S+)$")


@dataclass(frozen=True)
class Listed:
    mutant: str
    reason: str
    entry_line: int  # its line in the list, for git blame


def read(path: Path) -> list[Listed]:
    found = []
    for number, raw in enumerate(path.read_text().splitlines() if path.exists() else [], start=1):
        if raw.strip() and not raw.startswith("#"):
            where, _, reason = raw.partition(" -- ")
            found.append(Listed(where.strip(), reason.strip(), number))
    return found


def resolve(
    root: Path, listing: Path, entries: list[Listed], module: str, source: str, ids: set[str]
) -> dict[str, str]:
    """mutant id as it is now -> reason, for the entries of `module`; moved ones followed."""
    now = source.splitlines()
    resolved: dict[str, str] = {}
    for entry in entries:
        parts = _ID.match(entry.mutant)
        if parts is None or parts["module"] != module:
            continue
        if entry.mutant in ids:
            resolved[entry.mutant] = entry.reason
            continue
        moved = _moved(root, listing, entry, int(parts["line"]), now)
        candidate = moved and f"{module}:{moved}:{parts['col']} {parts['rest']}"
        if candidate and candidate in ids:
            print(f"mutate: {entry.mutant} is at line {moved} now (the same source line)")
            resolved[candidate] = entry.reason
        else:
            print(f"mutate: {listing.name} lists a mutant {module} no longer has: {entry.mutant}")
    return resolved


def _moved(root: Path, listing: Path, entry: Listed, line: int, now: list[str]) -> int | None:
    """Where the source line the entry was written against is now (the nearest copy)."""
    commit = _git(
        root, "blame", "--porcelain", "-L", f"{entry.entry_line},{entry.entry_line}", "--", str(listing)
    )
    sha = commit.split(" ", 1)[0] if commit else ""
    if not sha or set(sha) == {"0"}:  # not committed yet: nothing to compare with
        return None
    module = _ID.match(entry.mutant)
    assert module is not None
    then = _git(root, "show", f"{sha}:{module['module']}").splitlines()
    if not 0 < line <= len(then):
        return None
    text = then[line - 1]
    places = [n for n, current in enumerate(now, start=1) if current == text]
    return min(places, key=lambda n: abs(n - line)) if places else None


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else ""
