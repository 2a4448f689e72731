"""A sweep's progress on stderr: a line per trial that ends, and on a terminal a status line
kept at the bottom (trials done, running, failed, left; the best so far). ``rich`` is imported
only when that status line is shown."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

Say = Callable[[str], None]


class Progress:
    def __init__(self, say: Say, live: bool) -> None:
        self._say = say
        self._live = live
        self._console: Any = None
        self._status: Any = None
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        """A line that stays (from any thread)."""
        with self._lock:
            if self._status is not None:
                self._console.print(f"reprun: {text}", markup=False, highlight=False,
                                    soft_wrap=True)
            else:
                self._say(text)

    def status(self, text: str) -> None:
        """The status line, on a terminal; nothing otherwise."""
        with self._lock:
            if self._status is not None:
                self._status.update(f"reprun: {text}")

    @contextlib.contextmanager
    def shown(self) -> Iterator[None]:
        if not self._live:
            yield
            return
        from rich.console import Console

        self._console = Console(stderr=True)
        with self._console.status("reprun: starting the first trial") as status:
            self._status = status
            try:
                yield
            finally:
                with self._lock:
                    self._status = None
