"""Frozen dataclasses that pydantic validates, without importing pydantic until it is needed.

The run record and the loaded MLproject are read on every run; pydantic's import alone costs
about 0.2 s, more than the rest of a cached run. Their types are therefore standard-library
dataclasses carrying pydantic's configuration (``__pydantic_config__``): creating, copying and
writing them needs only the standard library, while validating JSON or a mapping and making the
JSON Schema build a pydantic ``TypeAdapter`` from the same class, the first time it is asked for.
A field's docstring is its description in the schema (read only to make the schema).

`Model` offers the few methods of pydantic's model API the code uses, with the same meaning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from datetime import datetime
from enum import Enum
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, cast

if TYPE_CHECKING:
    from pydantic import TypeAdapter

MODEL_CONFIG: dict[str, Any] = {"extra": "forbid"}
M = TypeVar("M", bound="Model")


class Model:
    """Mix-in for ``@frozen_kw`` dataclasses (`runner.frozen`) validated by pydantic."""

    __pydantic_config__: ClassVar[dict[str, Any]] = MODEL_CONFIG

    def model_copy(self: M, *, update: dict[str, Any] | None = None) -> M:
        """A copy with the fields of ``update`` replaced (not validated, as in pydantic)."""
        copied: M = dataclasses.replace(cast(Any, self), **(update or {}))
        return copied

    def model_dump(self, *, mode: Literal["python", "json"] = "python") -> dict[str, Any]:
        """The fields as a dict, nested models included; ``json`` mode gives JSON values only."""
        dumped = dump(self, json_values=mode == "json")
        assert isinstance(dumped, dict)
        return dumped

    def model_dump_json(self, *, indent: int | None = None) -> str:
        """JSON text, as pydantic writes it (UTC times end in Z, text is not escaped)."""
        return json.dumps(self.model_dump(mode="json"), indent=indent, ensure_ascii=False)

    @classmethod
    def model_validate(cls: type[M], data: Any) -> M:
        """Validate a mapping; raises ``pydantic.ValidationError``."""
        validated: M = adapter(cls).validate_python(data)
        return validated

    @classmethod
    def model_validate_json(cls: type[M], data: str | bytes) -> M:
        """Validate JSON text; raises ``pydantic.ValidationError``."""
        validated: M = adapter(cls).validate_json(data)
        return validated

    @classmethod
    def model_json_schema(
        cls, *, mode: Literal["validation", "serialization"] = "validation"
    ) -> dict[str, Any]:
        """The JSON Schema of the class, each field described by its docstring."""
        from pydantic import TypeAdapter

        with _described_by_docstrings():
            return TypeAdapter(cls).json_schema(mode=mode)


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def adapter(cls: type[Any]) -> TypeAdapter[Any]:
    """The pydantic adapter of a model class (built once per process)."""
    if cls not in _ADAPTERS:
        from pydantic import TypeAdapter

        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


@contextlib.contextmanager
def _described_by_docstrings() -> Iterator[None]:
    """Every model class reads its fields' docstrings while the block runs.

    Only the schema needs them, and reading them parses the classes' source: validating a record
    would take twice as long (a single-threaded, command-line-only path sets and restores them).
    """
    classes = _subclasses(Model)
    saved = {c: c.__dict__.get("__pydantic_config__") for c in classes}
    for c in classes:
        c.__pydantic_config__ = {**c.__pydantic_config__, "use_attribute_docstrings": True}
    try:
        yield
    finally:
        for c, config in saved.items():
            if config is None:
                del c.__pydantic_config__
            else:
                c.__pydantic_config__ = config


def _subclasses(cls: type[Any]) -> list[type[Any]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def dump(value: Any, json_values: bool) -> Any:
    """``value`` with dataclasses turned into dicts, recursively; JSON values if asked."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: dump(getattr(value, f.name), json_values)
                for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [dump(item, json_values) for item in value]
    if isinstance(value, tuple):
        items = [dump(item, json_values) for item in value]
        return items if json_values else tuple(items)
    if isinstance(value, dict):
        return {key: dump(item, json_values) for key, item in value.items()}
    if not json_values:
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, PurePath):
        return str(value)
    return value
