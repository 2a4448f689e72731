"""The order of a pipeline's steps and which of them may start now (pure: no files, no runs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from runner.record.status import Status

ENDED_BADLY = (Status.FAILED, Status.KILLED, Status.UNKNOWN)


def order(needed: Mapping[str, Sequence[str]]) -> list[str]:
    """The steps, each after those it needs, otherwise in the order written (the graph has no
    cycle: the MLproject was validated)."""
    placed: list[str] = []
    left = list(needed)
    while left:
        step = next(s for s in left if all(n in placed for n in needed[s]))
        placed.append(step)
        left.remove(step)
    return placed


def ready(needed: Mapping[str, Sequence[str]], status: Mapping[str, Status | None],
          pending: Sequence[str]) -> list[str]:
    """The pending steps whose needs all FINISHED, in order."""
    return [s for s in pending if all(status.get(n) is Status.FINISHED for n in needed[s])]


def blocked_by(needed: Mapping[str, Sequence[str]], status: Mapping[str, Status | None],
               blocked: Mapping[str, str], step: str) -> str | None:
    """The step that keeps ``step`` from running (it ended badly, or cannot run itself), or
    None while every step it needs may still finish."""
    for need in needed[step]:
        if status.get(need) in ENDED_BADLY or need in blocked:
            return need
    return None

