"""The lock seam of reproduction, in-process: drift between a lock and what is here."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from runner.envs.base import EnvSpec, Lock, PythonFacts, ResolvedEnv, facts_drift, restore
from runner.envs.local import freeze, thaw
from runner.errors import Drift, LockNotHonouredError
from runner.spec.project import EnvRequest

LOCKED = PythonFacts("3.11.7", "/opt/py/bin/python", (("numpy", "1.26.4"), ("Pandas", "2.2.0")))


def test_local_lock_round_trips() -> None:
    assert thaw(freeze(LOCKED)) == LOCKED


def test_facts_drift_names_every_entry() -> None:
    here = PythonFacts("3.12.1", "/usr/bin/python3", (("numpy", "2.0.1"), ("rich", "13.0")))
    assert facts_drift(LOCKED, here) == [
        Drift("python", "3.11.7", "3.12.1"),
        Drift("numpy", "1.26.4", "2.0.1"),
        Drift("Pandas", "2.2.0", None),
        Drift("rich", None, "13.0"),
    ]
    assert facts_drift(LOCKED, LOCKED) == []
    # names compare case-insensitively, as installers do
    same = PythonFacts("3.11.7", None, (("NumPy", "1.26.4"), ("pandas", "2.2.0")))
    assert facts_drift(LOCKED, same) == []


def test_drift_messages() -> None:
    assert Drift("numpy", "1.26.4", None).render() == "numpy 1.26.4 is locked but not installed"
    assert Drift("rich", None, "13.0").render() == "rich 13.0 is installed but not in the lock"
    assert Drift("torch", "2.3.0", None, "no wheel for linux-aarch64").render() == (
        "torch 2.3.0: no wheel for linux-aarch64")


class Unhonourable:
    """A builder whose recorded lock names a package this machine cannot get."""

    kind: ClassVar[str] = "test"

    def __init__(self) -> None:
        self.resolved = False

    def lock(self, spec: EnvSpec, refresh: bool) -> Lock:
        self.resolved = True
        return Lock(self.kind, "test.lock", "fresh\n")

    def ensure(self, spec: EnvSpec, lock: Lock) -> ResolvedEnv:
        if lock.content != "fresh\n":
            gone = Drift("gone", "1.0", None, "not on the index")
            raise LockNotHonouredError(lock.filename, [gone])
        return ResolvedEnv(self.kind, lock, lock.sha256)


def test_restore_stops_or_records_the_drift(tmp_path: Path) -> None:
    spec = EnvSpec(EnvRequest("none"), tmp_path, "test", {})
    recorded = Lock.recorded("test", "test.lock", "old\n")
    builder = Unhonourable()
    with pytest.raises(LockNotHonouredError, match=r"gone 1\.0: not on the index"):
        restore(builder, spec, recorded, False, PythonFacts())
    assert not builder.resolved  # never re-resolved without --allow-drift
    resolved, drift = restore(builder, spec, recorded, True, PythonFacts())
    assert builder.resolved and resolved.lock.content == "fresh\n"
    assert drift == (Drift("gone", "1.0", None, "not on the index"),)
