"""The conda_env manager (``conda``, in-process with py-rattler) and conda.yaml from PyPI.

- ``request``: a conda.yaml request made concrete (channels, specs, pip lines) and its key; no
  rattler import.
- ``solve``: solve and install with py-rattler (imported only on this path).
- ``lock``: conda-lock.yml written and read.
- ``activate``: a prefix's activation as data.
- ``builder``: the ``conda`` manager (``CondaBuilder``).
- ``pypi``: a conda.yaml installed from PyPI (``--env-manager uv`` or ``virtualenv``): the mapping;
  ``matchspec`` reads conda match specs and translates their versions to PEP 440.

The names below are what the rest of reprun uses; each is loaded from its module on first use, so
importing the package loads nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.lazy import lazy_exports

if TYPE_CHECKING:
    from runner.envs.conda.lock import read_facts
    from runner.envs.conda.pypi import (
        converted_request,
        explain_not_found,
        key_material,
        summary,
        with_conversion,
    )
    from runner.envs.conda.request import redact_channel

_EXPORTS: dict[str, str] = {
    "converted_request": "pypi",
    "explain_not_found": "pypi",
    "key_material": "pypi",
    "read_facts": "lock",
    "redact_channel": "request",
    "summary": "pypi",
    "with_conversion": "pypi",
}
__all__ = [
    "converted_request",
    "explain_not_found",
    "key_material",
    "read_facts",
    "redact_channel",
    "summary",
    "with_conversion",
]

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
