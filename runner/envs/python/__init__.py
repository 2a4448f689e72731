"""The python_env managers (``uv``, ``virtualenv``) and the hashed lock they share.

- ``request``: a python_env request made concrete (requirement lines anchored to the project) and
  its key.
- ``lock``: request -> lock (``uv pip compile --generate-hashes``); uv failures as one-line errors;
  what a lock pins.
- ``build``: what both managers share: lock through the cache, build through it.
- ``uv``: the ``uv`` manager (``uv venv`` + ``uv pip install --require-hashes``, or ``uv sync``).
- ``virtualenv``: the ``virtualenv`` manager (virtualenv + ``pip install --require-hashes``).

The builders are registered in ``runner.envs.BUILDERS``. The names below are what the rest of
reprun uses; each is loaded from its module on first use, so importing the package loads nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.lazy import lazy_exports

if TYPE_CHECKING:
    from runner.envs.python.build import default_interpreter, tool_env
    from runner.envs.python.lock import (
        Compiling,
        anchor_entry,
        explain,
        log_path,
        pinned_packages,
        project_location,
        redact_text,
        run_logged,
        start_compile,
        uv_bin,
    )
    from runner.envs.python.request import make_request
    from runner.envs.python.virtualenv import uv_sources_for_pip

_EXPORTS: dict[str, str] = {
    "Compiling": "lock",
    "anchor_entry": "lock",
    "default_interpreter": "build",
    "explain": "lock",
    "log_path": "lock",
    "make_request": "request",
    "pinned_packages": "lock",
    "project_location": "lock",
    "redact_text": "lock",
    "run_logged": "lock",
    "start_compile": "lock",
    "tool_env": "build",
    "uv_bin": "lock",
    "uv_sources_for_pip": "virtualenv",
}
__all__ = [
    "Compiling",
    "anchor_entry",
    "default_interpreter",
    "explain",
    "log_path",
    "make_request",
    "pinned_packages",
    "project_location",
    "redact_text",
    "run_logged",
    "start_compile",
    "tool_env",
    "uv_bin",
    "uv_sources_for_pip",
]

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
