"""``reprun env ...``: the cached Python environments and conda prefixes (list, prune, path,
refresh)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from runner.envs.cache import PythonCache

from runner.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
PYTHON_MANAGERS = ("uv", "virtualenv")
CACHED_MANAGERS = (*PYTHON_MANAGERS, "conda")


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``2w``, ``45s`` -> seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise UsageError(f"--older-than '{text}' is not a duration",
                         hint="write a number and a unit: 30d, 12h, 90m, 2w or 45s")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _cache(manager: str = "uv") -> PythonCache:
    from runner.envs.cache import PythonCache, cache_root

    return PythonCache(cache_root(os.environ), "conda" if manager == "conda" else "python")


def _caches() -> list[PythonCache]:
    return [_cache("uv"), _cache("conda")]


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _ago(stamp: float) -> str:
    if not stamp:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


@click.group()
def env() -> None:
    """Cached Python environments and conda prefixes (REPRUN_CACHE_DIR, default
    REPRUN_HOME/cache)."""


@env.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def env_list(as_json: bool) -> int:
    """Cached environments: key, manager, python, size, last used, projects."""
    entries = [e for cache in _caches() for e in cache.entries()]
    if as_json:
        click.echo(json.dumps([
            {"key": e.key, "path": str(e.path) if e.path else None, "ok": e.ok,
             "manager": e.manager, "python": e.python, "size": e.size, "last_used": e.last_used,
             "projects": list(e.projects)} for e in entries], indent=2))
        return 0
    click.echo(f"{'KEY':<12}  {'MANAGER':<10}  {'PYTHON':<8}  {'SIZE':>9}  {'LAST USED':<16}  "
               "PROJECTS")
    for e in entries:
        state = "" if e.ok else "  (incomplete: will be rebuilt)"
        click.echo(f"{e.key[:12]:<12}  {e.manager:<10}  {e.python:<8}  {_size(e.size):>9}  "
                   f"{_ago(e.last_used):<16}  {', '.join(e.projects) or '-'}{state}")
    return 0


@env.command("prune")
@click.option("--older-than", default="30d", show_default=True,
              help="Remove environments not used for this long (30d, 12h, 2w...).")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
def env_prune(older_than: str, dry_run: bool) -> int:
    """Remove environments not used recently, incomplete ones, leftovers of killed builds, and
    cached validations of project files not used recently."""
    import shutil

    from runner.envs.cache import cache_root
    from runner.spec.project import SPEC_CACHE, prune_validated

    age = parse_duration(older_than)
    cutoff = time.time() - age
    verb = "would remove" if dry_run else "removed"
    count = 0
    for cache in _caches():
        for entry in cache.entries():
            if entry.ok and entry.last_used >= cutoff:
                continue
            removable = not cache.in_use(entry.key) if dry_run else cache.remove(entry.key)
            if removable:
                count += 1
                click.echo(f"{verb} {entry.key[:12]} ({entry.manager}, python {entry.python}, "
                           f"{_size(entry.size)})")
            else:
                click.echo(f"kept {entry.key[:12]}: a running reprun is using or building it")
        for orphan in cache.orphans():
            count += 1
            if not dry_run:
                shutil.rmtree(orphan, ignore_errors=True)
            click.echo(f"{verb} unfinished build {orphan.name}")
    validated = prune_validated(cache_root(os.environ) / SPEC_CACHE, cutoff, dry_run)
    if validated:
        count += validated
        click.echo(f"{verb} {validated} validated project file(s) not used for {older_than}")
    click.echo(f"{count} {'would be removed' if dry_run else 'removed'}", err=True)
    return 0


@env.command("path")
@click.argument("run_id")
def env_path(run_id: str) -> int:
    """The directory of the environment a run used."""
    from runner.errors import RunNotFoundError
    from runner.record.home import reprun_home
    from runner.record.store import RunStore

    record = RunStore(reprun_home(os.environ)).get(run_id)
    environment = record.environment
    if environment.manager not in CACHED_MANAGERS or not environment.cache_key:
        raise RunNotFoundError(f"run {record.run_id[:12]} used the '{environment.manager}' "
                               "manager, which keeps no environment of its own")
    entry = _cache(environment.manager).find(environment.cache_key)
    if entry is None:
        raise RunNotFoundError(
            f"the environment {environment.cache_key[:12]} of run {record.run_id[:12]} is no "
            "longer cached", hint=f"rebuild it from the run's lock ({environment.lock_file})")
    click.echo(str(entry.path))
    return 0


@env.command("refresh")
@click.argument("uri", default=".")
@click.option("--env-manager", default=None, metavar="MANAGER",
              help="uv (default), virtualenv, or conda (the default for conda projects).")
@click.option("--allow-drift", is_flag=True,
              help="With uv or virtualenv on a conda_env project: leave out the conda packages "
                   "PyPI does not have.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
def env_refresh(uri: str, env_manager: str | None, allow_drift: bool, quiet: bool) -> int:
    """Resolve the environment of the project at URI again and build it if the lock changed."""
    import sys

    from runner.envs import get_builder
    from runner.envs.base import EnvSpec
    from runner.plan import choose_manager, converted
    from runner.spec.project import load_project

    project = load_project(Path(uri))
    manager = choose_manager(env_manager, project)
    if manager not in CACHED_MANAGERS:
        raise UsageError(f"'reprun env refresh' works with uv, virtualenv or conda, "
                         f"not '{manager}'")
    project = converted(project, manager, allow_drift)

    def say(message: str) -> None:
        click.echo(f"reprun: {message}", err=True)

    if project.env.conversion is not None and not quiet:
        from runner.envs.conda import summary

        for line in summary(project.env.conversion):
            say(line)
    spec = EnvSpec(project.env, project.directory, manager, dict(os.environ),
                   notify=None if quiet else say, live=not quiet and sys.stderr.isatty())
    builder = get_builder(manager)
    resolved = builder.ensure(spec, builder.lock(spec, refresh=True))
    click.echo(f"{resolved.cache_key}  {resolved.path_prepend[0].removesuffix('/bin')}")
    return 0
