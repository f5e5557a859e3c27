"""Copies of the checkout for `make mutate` to plant bugs in, one per worker.

cosmic-ray rewrites a module's file in place while its tests run. Two modules mutated at once
in one tree would each see the other's bug, so each worker gets a tree of its own: the files
git knows (tracked and untracked-but-not-ignored, as they are now in the working tree) and a
copy of the editable install's link tree whose symlinks point into the copy. Tests run with
the copy as their working directory and its link tree first on PYTHONPATH, so
`falbridge.models` is the copy's `models/`. The checkout itself is never mutated.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

LINK_TREE = ".linktree"


def tracked_files(root: Path) -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (root / name).is_file()]


def editable_link_tree(root: Path) -> Path:
    found = sorted((root / "build").glob("__editable__.falbridge-*"))
    if not found:
        raise SystemExit("mutate: no editable link tree under build/: run `make mutate` (it installs one)")
    return found[-1]


def make_tree(root: Path, tree: Path) -> Path:
    """A fresh copy of the checkout at `tree`; returns the link tree to put on PYTHONPATH."""
    if tree.exists():
        shutil.rmtree(tree)
    for name in tracked_files(root):
        target = tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
    links = tree / LINK_TREE
    source_links = editable_link_tree(root)
    for dirpath, _dirnames, filenames in os.walk(source_links):
        here = Path(dirpath)
        mirrored = links / here.relative_to(source_links)
        mirrored.mkdir(parents=True, exist_ok=True)
        for name in filenames:
            _mirror_link(here / name, mirrored / name, root, tree)
    return links


def _mirror_link(link: Path, copy: Path, root: Path, tree: Path) -> None:
    if not link.is_symlink():
        shutil.copy2(link, copy)
        return
    points_to = Path(os.readlink(link))
    try:
        inside = points_to.relative_to(root)
    except ValueError:  # a file outside the checkout: share it
        copy.symlink_to(points_to)
        return
    copy.symlink_to(tree / inside)


def test_environment(tree: Path) -> dict[str, str]:
    """The environment a mutant's tests run in: the tree's own link tree first, and no
    plugins pytest would load from entry points (schemathesis and hypothesis alone cost about
    1.5 s of start-up per mutant; pytest-timeout is named with -p where it is needed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(tree / LINK_TREE), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return env
