"""Every registered backend and environment builder implements its contract in full."""

from __future__ import annotations

import importlib
import inspect

import pytest

from backends import BACKENDS
from backends.base import RunHandle
from runner.envs import BUILDERS
from runner.envs.base import EnvironmentBuilder


def load(target: str) -> type:
    module, _, name = target.partition(":")
    cls: type = getattr(importlib.import_module(module), name)
    return cls


def members(protocol: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(protocol, inspect.isfunction)
            if not name.startswith("_")}


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_backend_and_its_handle_implement_the_contract(name: str) -> None:
    backend = load(BACKENDS[name])
    assert backend.name == name  # type: ignore[attr-defined]
    handle_type = inspect.get_annotations(backend.submit, eval_str=True)["return"]
    assert handle_type is RunHandle
    module = importlib.import_module(backend.__module__)
    handles = [cls for _, cls in inspect.getmembers(module, inspect.isclass)
               if cls.__module__ == module.__name__ and cls.__name__.endswith("Handle")]
    assert handles, f"{name}: no handle class"
    for handle in handles:
        missing = members(RunHandle) - set(dir(handle))
        assert not missing, f"{handle.__name__} lacks {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builders_implement_the_contract(name: str) -> None:
    builder = load(BUILDERS[name])
    assert builder.kind == name  # type: ignore[attr-defined]
    missing = members(EnvironmentBuilder) - set(dir(builder))
    assert not missing, f"{builder.__name__} lacks {sorted(missing)}"
