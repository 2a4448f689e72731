"""``--env-manager local`` asks the interpreter what it has installed once, and again only when
the interpreter or its site directories change (a package installed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import MakeProject, Reprun


def wrapped_python(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A virtual environment whose ``python`` on PATH is a script that logs each start; the
    bin directory, the log and the environment's site-packages."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    log = tmp_path / "starts.log"
    shims = tmp_path / "shims"
    shims.mkdir()
    for name in ("python", "python3"):
        shim = shims / name
        shim.write_text(f"#!/bin/sh\necho started >> '{log}'\nexec '{venv}/bin/python' \"$@\"\n")
        shim.chmod(0o755)
    site = next(venv.glob("lib/python3*/site-packages"))
    return shims, log, site


def starts(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_a_second_run_starts_no_interpreter_until_a_package_is_installed(
        reprun: Reprun, make_project: MakeProject, tmp_path: Path) -> None:
    shims, log, site = wrapped_python(tmp_path)
    env = {"PATH": f"{shims}{os.pathsep}{os.environ['PATH']}"}
    project = make_project("entry_points:\n  main:\n    command: 'echo hi'\n")

    def run() -> list[str]:
        done = reprun("run", str(project), "-q", "--env-manager", "local", env=env)
        assert done.code == 0, done.stderr
        packages = reprun.last_record()["environment"]["packages"]
        return [f"{p['name']}=={p['version']}" for p in packages]

    assert "demo-pkg==1.0" not in run()
    assert starts(log) == 1
    assert "demo-pkg==1.0" not in run()
    assert starts(log) == 1  # the second run asked nobody
    installed = site / "demo_pkg-1.0.dist-info"  # what an installer writes
    installed.mkdir()
    (installed / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\n")
    assert "demo-pkg==1.0" in run()
    assert starts(log) == 2
    assert "demo-pkg==1.0" in run()
    assert starts(log) == 2
