"""A run's first line ("run ID started: ..."), said only once there is something more to say.

An error found before anything was built or started (a missing extra, an image name the engine
does not know) is then the run's one line: the user fixes what they typed, and the run is not
kept (`runner.execute`).
"""

from __future__ import annotations

from collections.abc import Callable


class Announce:
    """``notify`` that says ``first`` before its first message (or at `now`)."""

    def __init__(self, notify: Callable[[str], None], first: str) -> None:
        self.notify = notify
        self.first: str | None = first

    def now(self) -> None:
        if self.first is not None:
            first, self.first = self.first, None
            self.notify(first)

    @property
    def said(self) -> bool:
        return self.first is None

    def __call__(self, message: str) -> None:
        self.now()
        self.notify(message)
