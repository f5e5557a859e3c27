"""Dependency floors sit above the fixes for every advisory known to us: a release the
floor admits must not be one with a published vulnerability. (`make audit` checks the
installed versions against OSV's database when it can reach it.)"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
# package -> the first release with every advisory we know of fixed (and which advisory).
FIXED_IN = {
    "gunicorn": ("23.0.0", "CVE-2024-1135, CVE-2024-6827: request smuggling"),
    "cryptography": ("44.0.1", "CVE-2024-12797; 42.0.0-42.0.3: CVE-2024-26130"),
    "flask": ("3.1.1", "CVE-2025-47278"),
    "werkzeug": ("3.1.4", "CVE-2024-49766, CVE-2024-49767, CVE-2025-66221"),
    "jinja2": ("3.1.6", "CVE-2024-56326, CVE-2025-27516"),
    "h11": ("0.16.0", "CVE-2025-43859: request smuggling"),
    "setuptools": ("78.1.1", "CVE-2025-47273"),
}


def _floors() -> dict[str, Version]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    floors = {}
    for line in requirements:
        requirement = Requirement(line)
        lower = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==", "~=")]
        floors[requirement.name.lower()] = max(lower, default=Version("0"))
    return floors


def test_no_floor_admits_a_release_with_a_known_advisory():
    floors = _floors()
    too_low = {
        name: f"floor {floors.get(name, 'none')} admits {why}; fixed in {fixed}"
        for name, (fixed, why) in FIXED_IN.items()
        if floors.get(name, Version("0")) < Version(fixed)
    }
    assert too_low == {}
