"""The wheel installs one top-level name, `falbridge`, and a user's own `models` and
`worker` modules keep working beside it.

The wheel is built offline from this checkout (`pip wheel --no-build-isolation`, with the
setuptools of the test venv) and installed into a fresh venv; falbridge's dependencies come
from the test venv's site-packages, added as a plain path, so nothing is downloaded and the
checkout's own editable install is not visible there.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Source folder -> the package it installs as (pyproject.toml, [tool.setuptools] package-dir).
MAPPED = {
    "falbridge": "falbridge",
    "models": "falbridge/models",
    "worker": "falbridge/worker",
    "webhooks": "falbridge/webhooks",
    "sandbox": "falbridge/sandbox",
    "migrations": "falbridge/migrations",
}


def _run(*argv: str | Path, cwd: Path = ROOT) -> str:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{argv}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "--no-index",
         "--quiet", "-w", out, ROOT)  # fmt: skip
    [built] = out.glob("falbridge-*.whl")
    return built


def test_the_wheel_holds_one_top_level_name_and_every_product_module(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"falbridge"}
    expected = {
        f"{installed}/{path.relative_to(ROOT / folder).as_posix()}"
        for folder, installed in MAPPED.items()
        for path in (ROOT / folder).rglob("*")
        if path.is_file()
        and path.suffix in (".py", ".mako", ".png", ".typed", ".html", ".js", ".css")
        and "__pycache__" not in path.parts
    }
    missing = sorted(expected - set(names))
    assert not missing, f"not in the wheel (add the package to pyproject's packages list?): {missing}"


def test_installed_beside_a_users_own_models_and_worker(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel)
    # The dependencies, from the test venv; a path, not a site dir, so the editable
    # install's .pth file there is not processed.
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    (site / "test-venv-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    app = tmp_path / "users_app"
    app.mkdir()
    (app / "models.py").write_text("OWNER = 'the user'\n")
    (app / "worker.py").write_text("OWNER = 'the user'\n")
    probe = textwrap.dedent(
        """
        import sys
        import models, worker
        import falbridge.models.db
        assert "celery" not in sys.modules, "importing falbridge.models pulled in Celery"
        import falbridge.worker.tasks, falbridge.webhooks.app, falbridge.cli, falbridge.sandbox
        assert models.OWNER == worker.OWNER == "the user"
        print(falbridge.models.db.__file__)
        """
    )
    installed_at = Path(_run(python, "-c", probe, cwd=app).strip())
    assert installed_at.is_relative_to(venv), installed_at
