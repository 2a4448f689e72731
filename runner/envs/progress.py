"""Progress of resolving and installing: a spinner on a terminal, plain lines otherwise.

``rich`` is imported only when a spinner is actually shown.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

Notify = Callable[[str], None]


class Progress:
    def __init__(self, notify: Notify | None, live: bool) -> None:
        self.notify = notify
        self.live = live and notify is not None

    def say(self, message: str) -> None:
        if self.notify is not None:
            self.notify(message)

    @contextlib.contextmanager
    def phase(self, doing: str,
              since: float | None = None) -> Iterator[Callable[[str], None]]:
        """Show ``doing`` while the block runs; the block may set the closing words.

        ``with progress.phase("resolving") as done: ...; done("3 packages")`` ends with
        ``resolving: 3 packages (1.2 s)``; the time counts from ``since`` (a ``time.monotonic``
        value) for work that started earlier, in the background.
        """
        start = time.monotonic() if since is None else since
        summary: list[str] = []
        status: Any = None
        if self.live:
            from rich.console import Console

            status = Console(stderr=True).status(f"reprun: {doing}...")
            status.start()
        else:
            self.say(f"{doing}...")
        try:
            yield summary.append
        finally:
            if status is not None:
                status.stop()
        elapsed = time.monotonic() - start
        self.say(f"{doing}: {summary[-1] if summary else 'done'} ({elapsed:.1f} s)")
