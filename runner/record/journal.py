"""The store's journal of runs the index may be missing: one empty file per run in ``pending/``.

A run's entry is written before its directory is made and removed once its row is in the index
(`runner.record.store.RunStore.save`); a save whose index update fails (a full disk, a locked or
read-only index) writes it again. Listing reads this small directory instead of all of ``runs/``
to find the runs the index does not know (or knows in an older state); ``reprun runs reindex``
empties it. An entry whose run has no record yet (a run being started, or one whose reprun
stopped before its first record) is kept and skipped.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

PENDING = "pending"


class Journal:
    def __init__(self, home: Path) -> None:
        self.directory = home / PENDING

    def add(self, run_id: str) -> None:
        """Note the run; OSError when the store refuses the (empty) file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / run_id).touch()

    def remove(self, run_id: str) -> None:
        """Forget the run (its row is in the index now); best effort."""
        with contextlib.suppress(OSError):
            (self.directory / run_id).unlink(missing_ok=True)

    def run_ids(self) -> list[str]:
        """The runs noted, in no particular order; none when the journal cannot be read."""
        try:
            return [p.name for p in self.directory.iterdir() if not p.name.startswith(".")]
        except OSError:  # none yet (FileNotFoundError), or unreadable
            return []

    def clear(self) -> None:
        for run_id in self.run_ids():
            self.remove(run_id)

