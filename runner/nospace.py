"""A full disk, said in one line that names the place that is full and how to free space.

A write that fails with ``ENOSPC`` (or ``EDQUOT``) often carries no file name (a write to an open
file), so "No space left on device" alone does not say whether the run store (``REPRUN_HOME``)
or the cache (``REPRUN_CACHE_DIR``: environments, clones, the digest cache) is full. The file
name decides when there is one; otherwise the place whose file system has (almost) no room left.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from pathlib import Path

from runner.errors import StoreError

FULL = (errno.ENOSPC, errno.EDQUOT)
NEARLY_FULL = 1 << 20  # bytes free below which a file system counts as the full one


def is_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a full disk or an exceeded quota."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in FULL:
            return True
        seen = seen.__cause__
    return False


def full_error(exc: BaseException, env: Mapping[str, str], consequence: str) -> StoreError:
    """The one-line error for a full disk met by a run or a command of reprun."""
    from runner.envs.cache import cache_root
    from runner.record.home import reprun_home

    home, cache = reprun_home(env), cache_root(env)
    reason = _reason(exc)
    hint_cache = ("free some space (reprun env prune removes environments not used "
                  "recently) and run again")
    found = _named(exc, home, cache) or _fullest(home, cache)
    if found == "cache":
        return StoreError(f"the cache {cache} (REPRUN_CACHE_DIR) is full ({reason}): "
                          f"{consequence}", hint=hint_cache)
    if found == "store":
        return StoreError(f"the run store {home} is full ({reason}): {consequence}",
                          hint="free some space (reprun runs delete removes runs) and run again")
    return StoreError(f"the disk is full ({reason}): {consequence}",
                      hint=f"free some space where the run store {home} and the cache {cache} "
                           "are, and run again")


def _reason(exc: BaseException) -> str:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in FULL:
            return seen.strerror or os.strerror(seen.errno or errno.ENOSPC)
        seen = seen.__cause__
    return os.strerror(errno.ENOSPC)


def _named(exc: BaseException, home: Path, cache: Path) -> str | None:
    """"cache" or "store" when the error names a file under one of them."""
    name = getattr(exc, "filename", None) or getattr(exc.__cause__, "filename", None)
    if not isinstance(name, (str, bytes, os.PathLike)):
        return None
    path = Path(os.fsdecode(name)).absolute()
    for label, place in (("cache", cache), ("store", home)):  # the cache may be in the store
        if path == place.absolute() or place.absolute() in path.parents:
            return label
    return None


def _fullest(home: Path, cache: Path) -> str | None:
    """The place whose file system has less than `NEARLY_FULL` bytes free (the cache first,
    since it is often inside the store)."""
    for label, place in (("cache", cache), ("store", home)):
        free = _free(place)
        if free is not None and free < NEARLY_FULL:
            return label
    return None


def _free(place: Path) -> int | None:
    probe = place.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        stats = os.statvfs(probe)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize
