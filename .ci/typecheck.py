"""Type-check the product with mypy, and fail if mypy did not see all of it.

The folders models/, worker/, webhooks/, ... are installed as falbridge.* (pyproject's
package-dir), a mapping mypy can only follow through the editable install's link tree
under build/. So mypy runs on that tree, and two things can go wrong silently:

- its report names link-tree paths: they are rewritten here to the source files;
- the tree holds the files that existed at install time: a file added since is simply not
  checked. mypy's line-count report says which modules it checked; every module of the
  product must be among them, or this fails and says to run `make install`.

Usage: .venv/bin/python .ci/typecheck.py  (exit status 0 only when both hold)
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import tomllib
from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parent.parent
LINK_TREE_PATH = re.compile(r"[^\s:\"']*__editable__[^\s:\"']*")


def main() -> int:
    os.chdir(ROOT)
    tree = link_tree()
    if tree is None:
        print("typecheck: falbridge is not installed from build/__editable__: run make install")
        return 1
    expected = product_modules()
    with tempfile.TemporaryDirectory(prefix="typecheck-") as report_dir:
        stdout, stderr, status = api.run(
            ["--config-file", "pyproject.toml", "--linecount-report", report_dir, os.path.relpath(tree)]
        )
        checked = checked_modules(Path(report_dir) / "linecount.txt")
    sys.stdout.write(to_source_paths(stdout))
    sys.stderr.write(to_source_paths(stderr))
    errors = sum(1 for line in stdout.splitlines() if ": error:" in line)
    return verdict(expected, checked, errors, status)


def link_tree() -> Path | None:
    """The installed `falbridge` package folder inside the editable link tree."""
    import falbridge

    for entry in falbridge.__path__:
        if any(part.startswith("__editable__") for part in Path(entry).parts):
            return Path(entry)
    return None


def product_modules() -> dict[str, Path]:
    """Every module of the product, by import name: each *.py file under the folders that
    pyproject's package-dir installs (falbridge/, models/, worker/, webhooks/, ...)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    modules = {}
    for package, folder in pyproject["tool"]["setuptools"]["package-dir"].items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if "__pycache__" in parts:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path.relative_to(ROOT)
    return modules


def checked_modules(linecount: Path) -> set[str]:
    """Module names in mypy's line-count report ("lines ... funcs ... name" per module)."""
    if not linecount.exists():
        return set()
    names = (line.split()[-1] for line in linecount.read_text(encoding="utf-8").splitlines() if line.strip())
    return {name for name in names if name != "total"}


def to_source_paths(text: str) -> str:
    """Link-tree paths in mypy's output, as the source paths they link to."""
    return LINK_TREE_PATH.sub(lambda m: os.path.relpath(os.path.realpath(ROOT / m.group()), ROOT), text)


def verdict(expected: dict[str, Path], checked: set[str], errors: int, status: int) -> int:
    missing = sorted(set(expected) - checked)
    stale = sorted(name for name in checked - set(expected) if name.startswith("falbridge"))
    for name in missing:
        print(f"typecheck: not checked by mypy (not in the link tree): {expected[name]}")
    for name in stale:
        print(f"typecheck: checked by mypy but no longer in the sources: {name}")
    print(
        f"typecheck: {len(expected) - len(missing)}/{len(expected)} product modules checked by mypy, "
        f"{errors} error{'' if errors == 1 else 's'}"
    )
    if missing or stale:
        print("typecheck: the editable install is out of date: run make install")
    if status == 2:
        print("typecheck: mypy could not run (see above)")
    return 0 if status == 0 and errors == 0 and not missing and not stale else 1


if __name__ == "__main__":
    sys.exit(main())
