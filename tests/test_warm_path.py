"""What a warm run starts besides the command: counted through logging programs put first on
PATH (git, the interpreter of ``--env-manager local``), never timed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from conftest import MakeProject, Reprun, init_repo


def shim(directory: Path, name: str, log: Path) -> None:
    """``name`` on PATH logs its arguments on one line, then runs the real program."""
    real = shutil.which(name)
    assert real is not None
    script = directory / name
    script.write_text(f"#!/bin/sh\necho \"{name} $*\" | tr '\\n' ' ' >> '{log}'\n"
                      f"echo >> '{log}'\nexec '{real}' \"$@\"\n")
    script.chmod(0o755)


def started(log: Path) -> list[str]:
    """The programs and subcommands started: 'git rev-parse', 'python' ..."""
    found = []
    for line in log.read_text().splitlines() if log.exists() else []:
        words = line.split()
        if words[0] == "git":  # skip git's own -c KEY=VALUE and -C DIR options
            rest = words[1:]
            while rest and rest[0] in ("-c", "-C"):
                rest = rest[2:]
            found.append(f"git {rest[0]}")
        else:
            found.append(words[0])
    return found


def test_a_warm_run_starts_three_git_commands_and_the_command(
        reprun: Reprun, make_project: MakeProject, tmp_path: Path) -> None:
    log = tmp_path / "started.log"
    shims = tmp_path / "shims"
    shims.mkdir()
    for name in ("git", "python", "python3"):
        shim(shims, name, log)
    project = make_project("entry_points:\n  main:\n    command: 'echo hi'\n")
    init_repo(project)
    env = {"PATH": f"{shims}{os.pathsep}{os.environ['PATH']}"}
    first = reprun("run", str(project), "-q", "--env-manager", "local", env=env)
    assert first.code == 0, first.stderr
    assert "python" in started(log)  # the first run asked the interpreter what it has
    log.unlink()
    warm = reprun("run", str(project), "-q", "--env-manager", "local", env=env)
    assert warm.code == 0 and warm.stdout == "hi\n", warm.stderr
    # the repository's configuration (read once: its remote comes from the same answer), HEAD,
    # and the working tree's status (clean: no patch to make); no interpreter
    assert started(log) == ["git config", "git rev-parse", "git status"]
