"""The optional parts of reprun and the extra that installs each one.

``pip install reprun`` installs what a local run of a python_env (or plain) project needs. The
libraries of the other features come with extras, and every import of them goes through
`needs_extra`, so a missing one is one line naming the exact install command (exit 2)::

    with needs_extra("conda", "conda environments"):
        import rattler

Only the paths that really use a library import it: a Docker run whose image is already built
(by content tag) talks to the engine with reprun's own client and needs no docker SDK; a conda
prefix that is already built needs no rattler; ``--dry-run`` and ``reprun validate`` of a
Kubernetes config need no Kubernetes client.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator

from runner.errors import MissingExtraError

# The extras of pyproject.toml that features need ("all" installs every one), and the top-level
# modules each one installs.
EXTRAS: dict[str, tuple[str, ...]] = {
    "docker": ("docker",),
    "kubernetes": ("kubernetes", "docker"),
    "conda": ("rattler", "conda_lock"),
    "optuna": ("optuna",),
    "ui": ("plotly",),
}


def require(extra: str, feature: str) -> None:
    """Fail early (before a run starts) when ``extra`` is not installed; imports nothing."""
    for module in EXTRAS[extra]:
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(extra, feature)


@contextlib.contextmanager
def needs_extra(extra: str, feature: str) -> Iterator[None]:
    """Turn a missing module, while importing the libraries of ``extra``, into the one-line
    error that names ``pip install 'reprun[extra]'``. Wrap imports only."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}")
    try:
        yield
    except ModuleNotFoundError:  # the library, or one of its own dependencies
        raise MissingExtraError(extra, feature) from None
