"""What a Python interpreter says about itself (version, path, installed distributions), asked
once and remembered.

Asking means starting the interpreter (about 0.1-0.2 s), which ``--env-manager local`` would do
on every run. The answer is kept under ``REPRUN_CACHE_DIR/local-python/`` keyed by the
interpreter's path and the environment variables that change what it finds, and it is used
again only while the interpreter is the same file (path, inode, modification time and size of
the path and of the file it resolves to) and the directories it finds distributions in (its
``sys.path``, and its user site directory even when that does not exist yet) have the same
modification times: installing, upgrading or removing a distribution adds or removes a
``*.dist-info`` directory in one of them, which changes that directory's modification time.
An answer given while one of them had just changed is not kept (the next change could fall in
the same tick of the file system's clock).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.envs.base import PythonFacts
from runner.fsutil import atomic_write_text
from runner.process import capture

# Runs in the interpreter: its version, its path, every installed distribution and where it
# looked (sys.path without the script's own first entry, and the user site directory).
INSPECT = """
import importlib.metadata as md, json, os, platform, site, sys
path = [p for p in sys.path[1:] if p]
seen = {}
for dist in md.distributions(path=path):
    name = dist.metadata["Name"]
    if name and name.lower() not in seen:
        seen[name.lower()] = (name, dist.version)
user = [site.getusersitepackages()] if site.ENABLE_USER_SITE else []
print(json.dumps({"version": platform.python_version(), "executable": sys.executable,
                  "packages": sorted(seen.values(), key=lambda p: p[0].lower()),
                  "paths": [os.path.abspath(p) for p in path + user]}))
"""
# What changes where an interpreter finds its distributions, besides the interpreter itself.
AFFECTING = ("PYTHONPATH", "PYTHONHOME", "PYTHONNOUSERSITE", "PYTHONUSERBASE", "HOME",
             "VIRTUAL_ENV")
SUBDIR = "local-python"
# A directory changed this close to the question may change again within the same tick of the
# file system's clock, leaving its modification time as it was: such an answer is not kept.
RACY_NS = 100_000_000


def inspect(python: str, env: Mapping[str, str],
            cwd: Path | None = None) -> tuple[PythonFacts, list[str]]:
    """Ask ``python`` (started once); its facts and the directories it looked in. Empty facts
    if it cannot answer."""
    try:
        done = capture([python, "-c", INSPECT], env=dict(env), cwd=cwd, timeout=60)
    except (FileNotFoundError, PermissionError, TimeoutError):
        return PythonFacts(), []
    if not done.ok:
        return PythonFacts(executable=python), []
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    packages = tuple((str(n), str(v)) for n, v in facts["packages"])
    return (PythonFacts(str(facts["version"]), str(facts["executable"]), packages),
            [str(p) for p in facts["paths"]])


def cached(python: str, env: Mapping[str, str], cache_dir: Path) -> PythonFacts:
    """The facts of ``python``: remembered while it and its site directories are unchanged,
    else asked (and remembered)."""
    key = hashlib.sha256(json.dumps([python, [env.get(n) for n in AFFECTING]]).encode())
    entry_path = cache_dir / SUBDIR / f"{key.hexdigest()[:32]}.json"
    identity = _identity(python)
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        entry = json.loads(entry_path.read_text())
        paths = entry["paths"]
        if entry["identity"] == identity and paths == _states(list(paths)):
            return PythonFacts(entry["version"], entry["executable"],
                               tuple((str(n), str(v)) for n, v in entry["packages"]))
    asked = time.time_ns()
    facts, looked = inspect(python, env)
    states = _states(looked)
    racy = any(t is not None and t >= asked - RACY_NS for t in states.values())
    if facts.version is not None and identity is not None and not racy:
        entry = {"identity": identity, "paths": states, "version": facts.version,
                 "executable": facts.executable, "packages": facts.packages}
        with contextlib.suppress(OSError):  # a cache that cannot be written: asked next time
            entry_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(entry_path, json.dumps(entry))
    return facts


def _identity(python: str) -> list[Any] | None:
    """The interpreter's path and the file it is (and resolves to), or None when it is gone."""
    try:
        given = Path(python).lstat()
        real = Path(python).resolve()
        resolved = real.stat()
    except OSError:
        return None
    return [python, _stamp(given), str(real), _stamp(resolved)]


def _stamp(stat: os.stat_result) -> list[int]:
    return [stat.st_ino, stat.st_mtime_ns, stat.st_size]


def _states(paths: list[str]) -> dict[str, int | None]:
    """Each directory's modification time (None where there is nothing)."""
    states: dict[str, int | None] = {}
    for path in paths:
        try:
            states[path] = Path(path).stat().st_mtime_ns
        except OSError:
            states[path] = None
    return states
