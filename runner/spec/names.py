"""Names close to a misspelt one: the edit distance (transpositions count as one edit) and the
nearest known names, for "did you mean ...?" in errors about parameters and metrics."""

from __future__ import annotations

from collections.abc import Iterable

CLOSE = 2  # at most this many edits away counts as a misspelling


def distance(a: str, b: str) -> int:
    """The Damerau-Levenshtein distance (optimal string alignment) between ``a`` and ``b``."""
    previous: list[int] = []
    row = list(range(len(b) + 1))
    for i, char in enumerate(a, 1):
        before, previous, row = previous, row, [i] + [0] * len(b)
        for j, other in enumerate(b, 1):
            cost = 0 if char == other else 1
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and char == b[j - 2] and a[i - 2] == other:
                row[j] = min(row[j], before[j - 2] + 1)
    return row[len(b)]


def nearest(name: str, known: Iterable[str], within: int = CLOSE) -> list[str]:
    """The known names at most ``within`` edits from ``name``, nearest first (then by name)."""
    scored = sorted((distance(name, k), k) for k in set(known) if k != name)
    return [k for d, k in scored if d <= within]
