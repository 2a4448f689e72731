"""The search space of a sweep: ``-P name=SPEC`` parsed into axes, and axes into trials.

A SPEC is, in this order of recognition::

    =TEXT                  exactly TEXT, one value (the escape: -P 'name==a,b' passes "a,b")
    uniform(LOW,HIGH)      a number drawn uniformly (random search and --optimize only)
    loguniform(LOW,HIGH)   a positive number drawn uniformly on a log scale (idem)
    choice(A,B,...)        one of the values; the same as A,B,... in a grid
    START:STOP:STEP        numbers from START to STOP inclusive, STEP apart (0:1:0.25 is five)
    A..B                   the whole numbers from A to B inclusive
    A,B,...                a list; ``\\,`` is a comma inside a value, ``\\\\`` a backslash
    anything else          one value, as ``reprun run`` takes it

A distribution on an ``int`` parameter draws whole numbers. Everything here is pure: parsing,
the grid (every combination, the first parameter varying slowest), random draws from a seed.
Values are text, as parameters always are; `runner.sweep.spec` checks each trial's values against
the parameters' declared types before anything runs.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation

from runner.errors import UsageError
from runner.frozen import frozen

MAX_GRID = 100_000  # more trials than anyone means to run: a typo in a range
DISTRIBUTIONS = ("uniform", "loguniform")
_CALL = re.compile(r"^(uniform|loguniform|choice)\((.*)\)$", re.DOTALL)
_INT_RANGE = re.compile(r"^([+-]?\d+)\.\.([+-]?\d+)$")
Trial = Mapping[str, str]


@frozen
class Axis:
    """One swept parameter: a finite list of ``values``, or a distribution from low to high."""

    name: str
    spec: str  # as given after name=
    values: tuple[str, ...] = ()
    distribution: str | None = None  # uniform or loguniform
    low: float = 0.0
    high: float = 0.0
    integer: bool = False  # draws are whole numbers (an int parameter)
    step: str | None = None  # a START:STOP:STEP or A..B range: the step (Optuna keeps it)

    @property
    def finite(self) -> bool:
        return self.distribution is None


def parse_axis(name: str, spec: str, integer: bool = False) -> Axis:
    """The axis ``-P name=spec`` says; ``integer``: the parameter is declared ``int``.

    UsageError in one line naming the parameter and the fix."""
    if spec.startswith("="):
        return Axis(name, spec, values=(spec[1:],))
    call = _CALL.match(spec.strip())
    if call is not None:
        kind, inner = call.groups()
        items = split_list(inner)
        if kind == "choice":
            return Axis(name, spec, values=_nonempty(name, spec, items))
        return _distribution(name, spec, kind, items, integer)
    int_range = _INT_RANGE.match(spec.strip())
    if int_range is not None:
        start, stop = (int(x) for x in int_range.groups())
        return Axis(name, spec, values=_int_range(name, spec, start, stop), step="1")
    parts = spec.split(":")
    if len(parts) == 3 and all(_decimal(p) is not None for p in parts):
        return _range(name, spec, *parts)
    return Axis(name, spec, values=tuple(split_list(spec)))


def split_list(text: str) -> list[str]:
    """``a,b\\,c`` -> ``["a", "b,c"]``: commas split; a backslash before a comma or a backslash
    makes it literal; any other backslash is itself (C:\\data stays as it is)."""
    items: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and text[index + 1:index + 2] in (",", "\\"):
            current.append(text[index + 1])
            index += 2
            continue
        if char == ",":
            items.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    items.append("".join(current))
    return items


def _nonempty(name: str, spec: str, items: list[str]) -> tuple[str, ...]:
    if not items or items == [""]:
        raise UsageError(f"-P {name}={spec}: choice() needs at least one value",
                         hint=f"write -P {name}='choice(a,b)'")
    return tuple(items)


def _distribution(name: str, spec: str, kind: str, items: list[str], integer: bool) -> Axis:
    bounds = [_decimal(item.strip()) for item in items]
    if len(items) != 2 or None in bounds:
        raise UsageError(f"-P {name}={spec}: {kind}() takes two numbers, the low and the high",
                         hint=f"write -P '{name}={kind}(1e-4,1e-1)' (quoted for the shell)")
    low, high = (float(b) for b in bounds if b is not None)
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise UsageError(f"-P {name}={spec}: the low bound must be below the high one",
                         hint=f"write -P '{name}={kind}({min(low, high)},{max(low, high)})'")
    if kind == "loguniform" and low <= 0:
        raise UsageError(f"-P {name}={spec}: loguniform() needs bounds above zero",
                         hint=f"use -P '{name}=uniform({low},{high})' to include {low}")
    if integer and (low != int(low) or high != int(high)):
        raise UsageError(f"-P {name}={spec}: '{name}' is an int parameter; its bounds must be "
                         "whole numbers", hint=f"write -P '{name}={kind}(1,100)'")
    return Axis(name, spec, distribution=kind, low=low, high=high, integer=integer)


def _int_range(name: str, spec: str, start: int, stop: int) -> tuple[str, ...]:
    if stop < start:
        raise UsageError(f"-P {name}={spec}: the range ends before it starts",
                         hint=f"write -P {name}={stop}..{start}")
    if stop - start >= MAX_GRID:
        raise UsageError(f"-P {name}={spec}: {stop - start + 1} values is too many for a sweep",
                         hint="narrow the range, or sample it with uniform() and --random N")
    return tuple(str(n) for n in range(start, stop + 1))


def _decimal(text: str) -> Decimal | None:
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _range(name: str, spec: str, first: str, last: str, by: str) -> Axis:
    """START:STOP:STEP, exact in decimal (0:1:0.1 ends at 1.0, not 0.9999999999999999)."""
    start, stop, step = (Decimal(x) for x in (first, last, by))
    if step <= 0:
        raise UsageError(f"-P {name}={spec}: the step must be above zero",
                         hint=f"write -P {name}={first}:{last}:1")
    if stop < start:
        raise UsageError(f"-P {name}={spec}: the range ends before it starts",
                         hint=f"write -P {name}={last}:{first}:{by}")
    count = int((stop - start) / step) + 1
    if count > MAX_GRID:
        raise UsageError(f"-P {name}={spec}: {count} values is too many for a sweep",
                         hint="use a larger step, or sample with uniform() and --random N")
    values = tuple(_plain(start + step * i) for i in range(count))
    return Axis(name, spec, values=values, step=_plain(step))


def _plain(number: Decimal) -> str:
    """A decimal as people write it: 0.25, 1, 1.5 (not 1.50 nor 1E+1)."""
    return format(number.normalize(), "f")


# -- trials ------------------------------------------------------------------------------------


def grid_size(axes: Sequence[Axis]) -> int:
    return math.prod(len(a.values) for a in axes)


def grid(axes: Sequence[Axis]) -> list[dict[str, str]]:
    """Every combination of the axes' values, the first axis varying slowest."""
    infinite = [a for a in axes if not a.finite]
    if infinite:
        first = infinite[0]
        raise UsageError(f"-P {first.name}={first.spec}: a distribution has no grid",
                         hint="add --random N to draw N trials, or --optimize METRIC:min "
                              "--trials N to search")
    size = grid_size(axes)
    if size > MAX_GRID:
        raise UsageError(f"the grid has {size} trials, more than {MAX_GRID}",
                         hint="use --random N to sample it, or fewer values")
    names = [a.name for a in axes]
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(a.values for a in axes))]


def capped(trials: list[dict[str, str]], limit: int | None, seed: int) -> list[dict[str, str]]:
    """At most ``limit`` trials of a grid: a sample drawn with ``seed``, in grid order."""
    if limit is None or len(trials) <= limit:
        return trials
    chosen = sorted(random.Random(seed).sample(range(len(trials)), limit))
    return [trials[i] for i in chosen]


def draw(axes: Sequence[Axis], count: int, seed: int) -> list[dict[str, str]]:
    """``count`` random trials from ``seed``: the same seed gives the same trials.

    A space without distributions is sampled without repeats (at most its size); with one, each
    trial draws every parameter independently."""
    if count > MAX_GRID:
        raise UsageError(f"--random {count}: more than {MAX_GRID} trials",
                         hint=f"draw at most {MAX_GRID}, or search with --optimize")
    rng = random.Random(seed)
    if all(a.finite for a in axes):
        size = grid_size(axes)
        if size <= MAX_GRID:
            every = grid(axes)
            return [every[i] for i in rng.sample(range(size), min(count, size))]
    return [{a.name: draw_one(a, rng) for a in axes} for _ in range(count)]


def draw_one(axis: Axis, rng: random.Random) -> str:
    if axis.finite:
        return rng.choice(axis.values)
    if axis.distribution == "loguniform":
        value = math.exp(rng.uniform(math.log(axis.low), math.log(axis.high)))
    else:
        value = rng.uniform(axis.low, axis.high)
    if axis.integer:
        return str(min(max(round(value), int(axis.low)), int(axis.high)))
    return format_float(value)


def format_float(value: float) -> str:
    """A drawn number as text: 12 significant digits (enough for any parameter, and short)."""
    return repr(float(f"{value:.12g}"))
