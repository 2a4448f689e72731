"""Sweep records under REPRUN_HOME: ``sweeps/<id>/sweep.json``, written atomically."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

from runner.errors import RunNotFoundError, StoreError
from runner.fsutil import atomic_write_text
from runner.process import hostname, process_alive
from runner.record.types import Status
from runner.sweep.record import SweepRecord

SWEEPS = "sweeps"
RECORD = "sweep.json"
ID_LENGTH = 12  # hex digits: short enough to type, and --where "sweep = ID" takes it whole


def new_sweep_id() -> str:
    """A new id: 12 hex digits beginning with a letter (never read as a number)."""
    return "s" + secrets.token_hex(ID_LENGTH // 2)[1:]


class SweepStore:
    def __init__(self, home: Path) -> None:
        self.root = home / SWEEPS
        self._lock = threading.Lock()

    def directory(self, sweep_id: str) -> Path:
        return self.root / sweep_id

    def save(self, record: SweepRecord) -> None:
        """The record replaced atomically (from any thread)."""
        directory = self.directory(record.sweep_id)
        with self._lock:
            try:
                directory.mkdir(parents=True, exist_ok=True)
                atomic_write_text(directory / RECORD, record.model_dump_json(indent=2) + "\n")
            except OSError as exc:
                raise StoreError(f"cannot write the sweep record in {directory}: "
                                 f"{exc.strerror or exc}",
                                 hint="free space or fix permissions, then 'reprun sweep resume "
                                      f"{record.sweep_id}'") from None

    def load(self, sweep_id: str) -> SweepRecord:
        path = self.directory(sweep_id) / RECORD
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RunNotFoundError(f"no sweep '{sweep_id}'",
                                   hint="see 'reprun sweep list'") from None
        from pydantic import ValidationError

        try:
            return SweepRecord.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise StoreError(f"{path}: {where}: {first['msg']}",
                             hint="the sweep record is damaged; its runs are still in "
                                  f"'reprun runs list --where \"sweep = {sweep_id}\"'") from None

    def reconcile(self, record: SweepRecord) -> SweepRecord:
        """A RUNNING sweep whose reprun process is gone is shown KILLED (not saved: a resume
        saves it), its RUNNING trials FAILED."""
        runner = record.runner
        if record.status is not Status.RUNNING or runner is None or \
                runner.hostname != hostname() or process_alive(runner.pid, runner.start_ticks):
            return record
        trials = [t.model_copy(update={"status": Status.FAILED,
                                       "reason": "the reprun process ended during the trial"})
                  if t.status is Status.RUNNING else t for t in record.trials]
        return record.model_copy(update={
            "status": Status.KILLED, "trials": trials, "runner": None,
            "reason": f"the reprun process (pid {runner.pid}) ended without finishing the sweep;"
                      f" 'reprun sweep resume {record.sweep_id}' runs the trials left"})

    def resolve_id(self, prefix: str) -> str:
        """The one sweep id that starts with ``prefix``."""
        matches = [i for i in self.ids() if i.startswith(prefix)] if prefix else []
        if not matches:
            raise RunNotFoundError(f"no sweep matches '{prefix}'",
                                   hint="see 'reprun sweep list'")
        if len(matches) > 1:
            raise RunNotFoundError(f"'{prefix}' matches {len(matches)} sweeps "
                                   f"({', '.join(matches[:5])})", hint="give more of the id")
        return matches[0]

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / RECORD).is_file())

    def newest(self) -> SweepRecord:
        """The sweep started last."""
        records = [self.reconcile(self.load(i)) for i in self.ids()]
        if not records:
            raise RunNotFoundError("no sweep is recorded yet",
                                   hint="start one with 'reprun sweep URI -P name=a,b'")
        return max(records, key=lambda r: r.created_at)

    def get(self, prefix: str) -> SweepRecord:
        """The sweep whose id starts with ``prefix``, reconciled."""
        return self.reconcile(self.load(self.resolve_id(prefix)))
