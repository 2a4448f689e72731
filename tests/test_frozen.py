"""``@frozen`` classes behave as ``@dataclass(frozen=True)`` ones do, for what reprun uses."""

from __future__ import annotations

import dataclasses
from dataclasses import field

import pytest

from runner.frozen import frozen, frozen_kw


@frozen
class Point:
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)


@frozen
class Named(Point):
    name: str = "p"


@frozen
class Pair:
    a: int
    b: str


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
        Point(*args, **kwargs)  # type: ignore[arg-type]


def test_frozen_equal_hashable_and_printable_like_a_dataclass() -> None:
    point = Point(1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del point.x
    assert Point(1) != Point(2) and Point(1) != Named(1)
    assert repr(point) == repr(Reference(1, 2)).replace("Reference", "Point")
    assert {Pair(1, "x"): 1}[Pair(1, "x")] == 1 and hash(Pair(1, "x")) == hash(Pair(1, "x"))
    for unhashable in (Point(1), Reference(1)):  # a list field: as with dataclasses
        with pytest.raises(TypeError, match="unhashable"):
            hash(unhashable)
    assert dataclasses.replace(point, y=5) == Point(1, 5)
    assert dataclasses.asdict(Named(1)) == {"x": 1, "y": 0, "tags": [], "name": "p"}


@frozen_kw
class Options:
    first: int = 1
    second: str


def test_keyword_only_fields_may_follow_defaults_and_refuse_positions() -> None:
    assert Options(second="s") == Options(first=1, second="s")
    with pytest.raises(TypeError, match=r"Options\(\) takes 0 positional arguments but 1 were"):
        Options(1, second="s")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"Options\(\) missing required argument: 'second'"):
        Options()  # type: ignore[call-arg]
