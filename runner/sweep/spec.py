"""From ``-P name=SPEC`` options and an entry point to the checked list of trials.

Every value a grid or a random sample produces is checked against the parameter's declared type
(and a path parameter's file against the disk) before any trial runs; a distribution is checked
against the type of its parameter. Errors are one line naming the parameter and the value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from runner.errors import UsageError
from runner.spec.params import parse_param_args, resolve
from runner.spec.types import EntryPoint, ParamType
from runner.sweep.space import Axis, capped, draw, grid, grid_size, parse_axis

NUMERIC = (ParamType.INT, ParamType.FLOAT)


def parse_specs(items: Sequence[str]) -> dict[str, str]:
    """``-P`` options as name -> SPEC (malformed or repeated ones are errors, as for run)."""
    return parse_param_args(items)


def probe(specs: Mapping[str, str]) -> dict[str, str]:
    """One value per parameter (the first, or a distribution's low bound), to plan with
    before the parameters' types are known."""
    values = {}
    for name, spec in specs.items():
        axis = parse_axis(name, spec)
        low = axis.low if not axis.finite else None
        values[name] = axis.values[0] if low is None else _number_text(low)
    return values


def _number_text(number: float) -> str:
    return str(int(number)) if number == int(number) else repr(number)


def axes_for(entry: EntryPoint, specs: Mapping[str, str]) -> list[Axis]:
    """The axes of the sweep, typed by the entry point's declarations."""
    axes = []
    for name, spec in specs.items():
        _declared_or_refused(entry, name, spec)
        declared = entry.parameters.get(name)
        kind = declared.type if declared is not None else None
        axis = parse_axis(name, spec, integer=kind is ParamType.INT)
        if not axis.finite and kind not in NUMERIC:
            what = f"a {kind.value} parameter" if kind is not None else "not declared"
            raise UsageError(f"-P {name}={spec}: {axis.distribution}() draws numbers, and "
                             f"'{name}' is {what}",
                             hint=f"list its values instead: -P {name}=a,b,c")
        axes.append(axis)
    return axes


def _declared_or_refused(entry: EntryPoint, name: str, spec: str) -> None:
    """A sweep varies only declared parameters: an undeclared one is almost always a typo."""
    if name in entry.parameters:
        return
    from runner.spec.names import nearest

    close = nearest(name, entry.parameters)
    guess = f"; did you mean '{close[0]}'?" if close else ""
    raise UsageError(f"-P {name}={spec}: parameter '{name}' is not declared by the entry "
                     f"point{guess}",
                     hint=f"a sweep varies declared parameters: "
                          f"{', '.join(entry.parameters) or 'none'}")


def expand(axes: Sequence[Axis], mode: str, count: int | None, max_trials: int | None,
           seed: int) -> list[dict[str, str]]:
    """The trials of a grid (capped to ``max_trials``) or of a random search (``count``)."""
    if mode == "random":
        return draw(axes, count or 0, seed)
    if mode == "grid":
        return capped(grid(axes), max_trials, seed)
    return []  # --optimize asks for its trials one at a time


def check_trials(entry: EntryPoint, trials: Sequence[Mapping[str, str]], cwd: Path) -> None:
    """Every trial's values fit the declarations (and required parameters are given)."""
    for trial in trials:
        resolve(entry, trial, cwd)


def describe_size(axes: Sequence[Axis]) -> int | None:
    """How many trials a grid of ``axes`` has (None with a distribution)."""
    return grid_size(axes) if all(a.finite for a in axes) else None
