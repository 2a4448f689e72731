"""Metric patterns (``metrics: {stdout: {name: REGEX}}``) matched with a time bound.

A pattern is the project's, and a regular expression can backtrack for longer than any log is
worth (``^(a|aa)+$`` over a line of ``a``s takes years). Python's ``re`` has no time limit and
holds the interpreter while it runs, so patterns are matched with the ``regex`` module (the
same syntax for the patterns a project writes), each call within `TIMEOUT_S`. A pattern that
runs out of time on a chunk of output is reported once and reads no more of it; the run ends
as usual with the metrics the other patterns found. Lines longer than 64 KiB are never given
to a pattern (`runner.tracking.metrics`), so a chunk is at most a few MiB of short lines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

TIMEOUT_S = 2.0  # per pattern and chunk of output (a few MiB): far beyond a sane pattern


class BoundedPatterns:
    """The patterns of one run; ``report(name, message)`` is told once of each one stopped."""

    def __init__(self, patterns: Mapping[str, str], report: Callable[[str, str], None],
                 timeout_s: float = TIMEOUT_S) -> None:
        import regex

        self.compiled = {name: regex.compile(p, regex.MULTILINE | regex.VERSION0)
                         for name, p in patterns.items()}
        self.report = report
        self.timeout_s = timeout_s
        self.count = len(patterns)

    def matches(self, text: str, first_line: int) -> list[tuple[int, str, Any]]:
        """(start, name, match) of every pattern's matches within one line of ``text``."""
        found: list[tuple[int, str, Any]] = []
        for name, pattern in list(self.compiled.items()):
            try:
                found += [(m.start(), name, m) for m in
                          pattern.finditer(text, timeout=self.timeout_s)
                          if "\n" not in m.group(0)]
            except TimeoutError:
                del self.compiled[name]
                last = first_line + text.count("\n")
                self.report(name, f"stdout: the pattern of '{name}' took more than "
                            f"{self.timeout_s:g} s on output lines {first_line}-{last} and was "
                            "stopped: it reads no more lines (a pattern that backtracks, such "
                            "as (a|aa)+ or (x+)+; make it simpler)")
        return found
