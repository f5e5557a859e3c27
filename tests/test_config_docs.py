"""docs/configuration.md lists exactly the environment variables falbridge reads.

The variables are the aliases of falbridge.config's fields (`Config.variables()`); the
document's table names each in backticks in its first column, one or several per row.
"""

from __future__ import annotations

import re
from pathlib import Path

from falbridge.config import Config

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
_VARIABLE = re.compile(r"`([A-Z][A-Z0-9_]*)`")
# A cell boundary is a `|` not escaped as `\|`.
_CELL_BOUNDARY = re.compile(r"(?<!\\)\|")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in _CELL_BOUNDARY.split(line.strip().strip("|"))]


def documented_variables(text: str) -> list[str]:
    """The variable names in the first column of the table whose first header is `Variable`."""
    lines = text.splitlines()
    start = next(
        (
            i
            for i, line in enumerate(lines)
            if line.lstrip().startswith("|") and _cells(line)[0].lower() == "variable"
        ),
        None,
    )
    assert start is not None, f"{DOC}: no table with a 'Variable' column"
    names: list[str] = []
    for line in lines[start + 2 :]:  # past the header and its |---| separator
        if not line.lstrip().startswith("|"):
            break  # the table ends at the first line that is not a row
        names.extend(_VARIABLE.findall(_cells(line)[0]))
    return names


def test_configuration_table_lists_every_variable_and_nothing_else() -> None:
    documented = documented_variables(DOC.read_text(encoding="utf-8"))
    read = Config.variables()
    missing = sorted(set(read) - set(documented))
    unknown = sorted(set(documented) - set(read))
    repeated = sorted({name for name in documented if documented.count(name) > 1})
    problems = [
        f"read by falbridge.config but not in the table: {', '.join(missing)}" if missing else "",
        f"in the table but not read by falbridge.config: {', '.join(unknown)}" if unknown else "",
        f"listed more than once: {', '.join(repeated)}" if repeated else "",
    ]
    problems = [p for p in problems if p]
    assert not problems, f"{DOC.name} and falbridge.config disagree:\n  " + "\n  ".join(problems)
