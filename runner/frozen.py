"""``@frozen`` and ``@frozen_kw``: frozen dataclasses that are cheap to define.

On Python 3.11 ``@dataclass(frozen=True)`` compiles each generated method from source (``exec``),
about 0.8 ms per class: some 30 ms over the frozen dataclasses a run imports, an eighth of
reprun's start-up. ``@frozen`` lets `dataclasses` collect the fields only (no generated code)
and gives the class generic ``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__``
and ``__delattr__`` that behave as a frozen dataclass's do: positional or keyword arguments,
defaults and default factories, TypeError for a missing, unexpected or repeated argument,
FrozenInstanceError on assignment. `dataclasses.fields`, `replace` and `asdict` work on it, and
mypy sees a frozen dataclass. ``@frozen_kw`` is the same with keyword-only fields: the run
record's types use it, and pydantic validates them as the dataclasses they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

T = TypeVar("T")

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:
    def dataclass_transform(**_options: Any) -> Callable[[T], T]:
        return lambda decorated: decorated


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def frozen(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen dataclass (see the module)."""
    return _make(cls, kw_only=False)


@dataclass_transform(frozen_default=True, kw_only_default=True,
                     field_specifiers=(dataclasses.field,))
def frozen_kw(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen dataclass whose fields are given by keyword only."""
    return _make(cls, kw_only=True)


def _make(cls: type[T], kw_only: bool) -> type[T]:
    dataclasses.dataclass(cls, init=False, repr=False, eq=False, match_args=False,
                          kw_only=kw_only)
    specs = tuple((f.name, f.default, f.default_factory) for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    names = tuple(name for name, _default, _factory in specs)
    positional = 0 if kw_only else len(names)
    title = cls.__name__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > positional:
            raise TypeError(f"{title}() takes {positional} positional arguments but "
                            f"{len(args)} were given")
        values = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key not in names:
                raise TypeError(f"{title}() got an unexpected keyword argument '{key}'")
            if key in values:
                raise TypeError(f"{title}() got multiple values for argument '{key}'")
            values[key] = value
        for name, default, factory in specs:
            if name in values:
                value = values[name]
            elif default is not dataclasses.MISSING:
                value = default
            elif factory is not dataclasses.MISSING:
                value = factory()
            else:
                raise TypeError(f"{title}() missing required argument: '{name}'")
            object.__setattr__(self, name, value)

    def _values(self: Any) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in names)

    def __repr__(self: Any) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{type(self).__qualname__}({shown})"

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return bool(_values(self) == _values(other))

    def __hash__(self: Any) -> int:
        return hash(_values(self))

    def __setattr__(self: Any, name: str, _value: object) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field '{name}'")

    def __delattr__(self: Any, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field '{name}'")

    methods = (__init__, __repr__, __eq__, __hash__, __setattr__, __delattr__)
    for method in methods:
        method.__qualname__ = f"{cls.__qualname__}.{method.__name__}"
        setattr(cls, method.__name__, method)
    return cls
