"""Solve and install conda packages in-process with py-rattler; its failures as one-line errors.

Imported only on the conda path: rattler is a large native library. Its coroutines are run with
``asyncio.run``. A Rust panic arrives as a ``BaseException``; it is turned into an EnvBuildError.
py-rattler can crash at interpreter exit right after an awaited call (its runtime threads still
finishing); a short pause at exit avoids that, and is only registered once rattler is used.
"""

from __future__ import annotations

import asyncio
import atexit
import re
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from runner.envs.conda.request import CondaRequest, redact_channel, spec_name
from runner.errors import EnvBuildError, Interrupted, Problem, SpecError
from runner.extras import needs_extra

with needs_extra("conda", "conda environments"):
    import rattler
    from rattler import Gateway, Subdir
    from rattler.exceptions import GatewayError, InvalidMatchSpecError, SolverError

from runner.frozen import frozen

atexit.register(time.sleep, 0.2)

T = TypeVar("T")
_NO_CANDIDATES = re.compile(r"No candidates were found for (\S+)(?: (.*?))?\.?$", re.MULTILINE)
_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s)`'\"]+", re.IGNORECASE)


@frozen
class Solved:
    records: list[Any]  # rattler.RepoDataRecord
    channel_urls: tuple[str, ...]
    virtual_packages: tuple[str, ...]


def solver_name() -> str:
    return f"rattler {rattler.__version__} (py-rattler)"


def run(coroutine: Awaitable[T], what: str) -> T:
    """Run a rattler coroutine; a panic becomes an EnvBuildError."""

    async def wrapped() -> T:
        return await coroutine

    try:
        return asyncio.run(wrapped())
    except (KeyboardInterrupt, SystemExit, Interrupted, GeneratorExit):
        raise
    except Exception:
        raise
    except BaseException as exc:  # a Rust panic (pyo3_runtime.PanicException)
        raise EnvBuildError(f"{what} failed inside rattler: {_first_line(str(exc))}") from None


def channel_urls(channels: Sequence[str]) -> tuple[str, ...]:
    """Channel names made URLs (conda-forge -> https://conda.anaconda.org/conda-forge/)."""
    return tuple(str(rattler.Channel(c).base_url) for c in channels)


def detect_virtual_packages() -> tuple[list[Any], tuple[str, ...]]:
    packages = rattler.VirtualPackage.detect()
    described = []
    for package in packages:
        generic = package.into_generic()
        build_string = str(generic.build_string)
        build = f"={build_string}" if build_string not in ("", "0") else ""
        described.append(f"{generic.name.normalized}={generic.version}{build}")
    return packages, tuple(described)


def solve(request: CondaRequest, repodata_cache: Path) -> Solved:
    """Solve ``request`` against its channels for this platform and noarch."""
    for spec in request.specs:
        try:
            rattler.MatchSpec(spec)
        except InvalidMatchSpecError as exc:
            raise SpecError([Problem(request.file, "dependencies",
                                     f"'{spec}' is not a valid conda match spec: {exc}",
                                     hint="write e.g. numpy, numpy=1.26, 'numpy >=1.26,<2'")]) \
                from None
    urls = channel_urls(request.channels)
    virtual, described = detect_virtual_packages()
    gateway = Gateway(cache_dir=repodata_cache.resolve())
    platforms = [Subdir(request.subdir), Subdir("noarch")]
    try:
        records = run(rattler.solve(sources=list(urls), specs=list(request.specs),
                                    gateway=gateway, platforms=platforms,
                                    virtual_packages=virtual), "solving")
    except GatewayError as exc:
        raise EnvBuildError(_gateway_message(str(exc), urls),
                            hint="check the channel URL and your network, pass a reachable "
                                 "mirror with --conda-channel URL, or install the project "
                                 "from PyPI with --env-manager uv (a local wheel cache or "
                                 "index works offline)") from None
    except SolverError as exc:
        raise EnvBuildError(_solver_message(str(exc), request, urls, gateway, platforms),
                            hint=f"change the dependencies in {request.file or 'conda.yaml'}") \
            from None
    return Solved(list(records), urls, described)


def _gateway_message(text: str, urls: Sequence[str]) -> str:
    bad = next((u for u in urls if u.rstrip("/") in text), None)
    where = redact_channel(bad) if bad else ", ".join(redact_channel(u) for u in urls)
    reason = [ln.removeprefix("Caused by:").strip() for ln in text.splitlines() if ln.strip()]
    detail = reason[-1] if reason else text
    return f"conda channel {where} is unreachable: {_redact_urls(detail)}"


def _solver_message(text: str, request: CondaRequest, urls: Sequence[str], gateway: Gateway,
                    platforms: list[Subdir]) -> str:
    shown = ", ".join(redact_channel(u) for u in urls)
    match = _NO_CANDIDATES.search(text)
    if match is not None and match.group(1) in {spec_name(s) for s in request.specs}:
        name = match.group(1)
        versions = _available(gateway, urls, platforms, name)
        if not versions:
            return f"conda package '{name}' was not found in the channel(s) {shown}"
        spec = f"{name} {match.group(2) or ''}".strip()
        return (f"no version of conda package '{name}' matches '{spec}' in {shown} "
                f"(available: {', '.join(versions[-8:])})")
    body = text.split("because of:", 1)[-1]
    lines = [ln.strip(" └─│├\t").rstrip(":.") for ln in body.splitlines()
             if ln.strip(" └─│├\t")]
    return f"the conda dependencies cannot be solved: {'; '.join(lines)}"


def _available(gateway: Gateway, urls: Sequence[str], platforms: list[Subdir],
               name: str) -> list[str]:
    try:
        found = run(gateway.query(list(urls), platforms, [name], recursive=False), "querying")
    except Exception:
        return []
    versions = {str(r.version): r.version for group in found for r in group}
    return [v for v, _ in sorted(versions.items(), key=lambda item: item[1])]


def install(records: list[Any], prefix: Path, package_cache: Path) -> None:
    """Install ``records`` into the (absolute, new) ``prefix``."""
    try:
        run(rattler.install(records, target_prefix=prefix.resolve(),
                            cache_dir=package_cache.resolve(), show_progress=False),
            "installing")
    except Exception as exc:
        raise EnvBuildError(
            f"installing the conda packages failed: {_redact_urls(_last_cause(str(exc)))}",
            hint="the channel or package URL of the lock must be reachable") from None


def records_from_lock(lock_file: Path, subdir: str) -> list[Any]:
    """The conda records of ``subdir`` in a conda-lock.yml (or pixi.lock): nothing is solved."""
    try:
        environment = rattler.LockFile.from_path(lock_file).default_environment()
    except Exception as exc:
        raise EnvBuildError(f"cannot read the conda lock {lock_file.name}: "
                            f"{_first_line(str(exc))}") from None
    if environment is None:
        raise EnvBuildError(f"the conda lock {lock_file.name} holds no environment")
    platforms = {str(p.name): p for p in environment.platforms()}
    if subdir not in platforms:
        locked = ", ".join(sorted(platforms)) or "none"
        raise EnvBuildError(f"the conda lock {lock_file.name} has no packages for {subdir} "
                            f"(it locks {locked})", hint="solve again with --refresh")
    # Only platform objects taken from the lock itself are safe here (a new one panics).
    return list(environment.conda_repodata_records_for_platform(platforms[subdir]) or [])


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), text)


def _last_cause(text: str) -> str:
    lines = [ln.removeprefix("Caused by:").strip() for ln in text.splitlines() if ln.strip()]
    return "; ".join(dict.fromkeys(lines)) if lines else text


def _redact_urls(text: str) -> str:
    return _URL.sub(lambda m: redact_channel(m.group(0)), text)
