"""How a run (or a pipeline's step, or a sweep) ended, or that it is still running."""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"
    UNKNOWN = "UNKNOWN"  # it ended, but how could not be learnt (the reason says why)

    @property
    def done(self) -> bool:
        return self is not Status.RUNNING
