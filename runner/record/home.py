"""Where the run store is (REPRUN_HOME) and whether its parts are usable."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from runner.errors import UsageError

if TYPE_CHECKING:
    from runner.record.store import RunStore


def reprun_home(env: Mapping[str, str]) -> Path:
    """REPRUN_HOME, or ~/.reprun."""
    configured = env.get("REPRUN_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".reprun"


def check_layout(store: RunStore) -> None:
    """Refuse a store whose parts are of the wrong kind (REPRUN_HOME or runs/ a file,
    index.sqlite a directory...) before anything is written to it."""
    for path, want_dir in ((store.home, True), (store.runs_dir, True),
                           (store.index_path, False)):
        if not path.exists() and not path.is_symlink():
            continue
        is_dir = path.is_dir()
        if is_dir != want_dir or (not want_dir and not path.is_file()):
            what = "a directory" if want_dir else "a file"
            found = "a directory" if is_dir else "a broken link" if not path.exists() else (
                "a file" if path.is_file() else "not a regular file")
            name = "REPRUN_HOME" if path == store.home else str(path.relative_to(store.home))
            fix = ("set REPRUN_HOME to a directory" if path == store.home else
                   f"move '{path}' away" + (" and run 'reprun runs reindex'" if not want_dir
                                            else ""))
            raise UsageError(f"the run store is not usable: {name} ('{path}') is {found}, not "
                             f"{what}", hint=fix)
