"""The library installed without any service (``uv sync --package hookline``): every
module imports, and the ``hookline`` command works with only the library's own commands,
because the library never imports a service (services register theirs as plugins)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from support.deploy import REPO, uv

pytestmark = pytest.mark.e2e

IMPORT_ALL = """
import pkgutil, importlib, hookline
names = [m.name for m in pkgutil.walk_packages(hookline.__path__, "hookline.")
         if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def test_the_library_alone_imports_and_its_command_runs(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_COMPILE_BYTECODE": "0"}
    env.update(UV_LINK_MODE="symlink")
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        [*uv(), "sync", "--locked", "--no-dev", "--package", "hookline"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    python, command = venv / "bin" / "python", venv / "bin" / "hookline"
    for service in ("ingress", "dispatcher", "worker", "status"):
        absent = subprocess.run(
            [str(python), "-c", f"import hookline_{service}"], capture_output=True, check=False
        )
        assert absent.returncode != 0, f"hookline_{service} should not be installed"
    imported = subprocess.run(
        [str(python), "-c", IMPORT_ALL], capture_output=True, text=True, check=False
    )
    assert imported.returncode == 0, imported.stderr
    assert int(imported.stdout) > 20
    helped = subprocess.run([str(command), "--help"], capture_output=True, text=True, check=False)
    assert helped.returncode == 0, helped.stderr
    commands = {line.split()[0] for line in helped.stdout.splitlines() if line.startswith("    ")}
    assert {"up", "requeue", "webhook"} <= commands
    assert not commands & {"worker", "ingress", "dispatcher", "status"}  # no service, none
    assert "warning" not in helped.stderr
    version = subprocess.run(
        [str(command), "--version"], capture_output=True, text=True, check=False
    )
    assert version.stdout.startswith("hookline ")
    assert "hookline-worker" not in version.stdout
    up = subprocess.run(
        [str(command), "up"], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert up.returncode == 2  # one line naming what is missing, no traceback
    assert up.stderr.count("\n") == 1
    assert "hookline-status, hookline-dispatcher, hookline-worker, hookline-ingress" in up.stderr
