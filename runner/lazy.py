"""Names a package exports from its modules, each module imported only when a name is first used.

A package's ``__init__`` maps each exported name to the module that defines it and sets
``__getattr__ = lazy_exports(__name__, EXPORTS, globals())`` (PEP 562); type checkers see the names
through imports under ``TYPE_CHECKING``. Importing the package itself loads nothing more.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str],
                 namespace: MutableMapping[str, Any]) -> Callable[[str], object]:
    """A module ``__getattr__`` that loads ``name`` from ``package.exports[name]`` and keeps it."""

    def load(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value: object = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    return load
