"""``@frozen`` classes behave as ``@dataclass(frozen=True)`` ones do, for what reprun uses."""

from __future__ import annotations

import dataclasses
from dataclasses import field

import pytest

from runner.frozen import frozen


@frozen
class Point:
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)


@frozen
class Named(Point):
    name: str = "p"


@dataclasses.dataclass(frozen=True)
class Reference:
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)


def test_arguments_defaults_and_factories() -> None:
    assert Point(1) == Point(x=1, y=0) == Point(1, 0, [])
    assert Point(1).tags is not Point(1).tags
    assert (Point(1, 2).x, Point(1, 2).y) == (1, 2)
    assert Named(1, 2, ["a"], "n").name == "n"
    assert [f.name for f in dataclasses.fields(Named)] == ["x", "y", "tags", "name"]


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    ((), {}, "Point() missing required argument: 'x'"),
    ((1,), {"z": 2}, "Point() got an unexpected keyword argument 'z'"),
    ((1,), {"x": 2}, "Point() got multiple values for argument 'x'"),
    ((1, 2, [], 4), {}, "Point() takes 3 positional arguments but 4 were given"),
])
def test_bad_arguments_are_type_errors(args: tuple[object, ...], kwargs: dict[str, object],
                                       message: str) -> None:
    with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Point(*args, **kwargs)


def test_frozen_equal_hashable_and_printable_like_a_dataclass() -> None:
    point = Point(1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del point.x  # type: ignore[misc]
    assert Point(1) != Point(2) and Point(1) != Named(1)
    assert repr(point) == repr(Reference(1, 2)).replace("Reference", "Point")
    assert hash(Point(1, 2, ())) == hash(Point(1, 2, ()))  # type: ignore[arg-type]
    assert dataclasses.replace(point, y=5) == Point(1, 5)
    assert dataclasses.asdict(Named(1)) == {"x": 1, "y": 0, "tags": [], "name": "p"}
