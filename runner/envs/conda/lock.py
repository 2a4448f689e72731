"""conda-lock.yml: written with conda-lock's own models, read back with PyYAML (and rattler).

The lock holds, for one platform, every conda package (URL, md5, sha256, dependencies) and every
pip package (wheel or sdist URL, sha256) with conda-lock's metadata (channels, platforms, sources),
so ``conda-lock install`` can use it elsewhere. reprun adds comment lines on top (the request key
it was solved for) and ``custom_metadata`` (the solver, the virtual packages detected).
conda-lock is imported only when a lock is written: its import takes seconds.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from runner.envs.conda.request import CondaRequest, redact_channel
from runner.errors import EnvBuildError
from runner.extras import needs_extra
from runner.frozen import frozen

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LOCK_FILENAME = "conda-lock.yml"


@frozen
class PipPackage:
    name: str
    version: str
    url: str
    sha256: str


@frozen
class LockFacts:
    """What a conda-lock.yml says about itself, read without rattler or conda-lock."""

    platform: str
    channels: tuple[str, ...]
    conda: tuple[tuple[str, str], ...]
    pip: tuple[PipPackage, ...]
    custom: Mapping[str, str]

    @property
    def python_version(self) -> str | None:
        return next((v for n, v in self.conda if n == "python"), None)


def pip_packages_from_pylock(text: str) -> list[PipPackage]:
    """One artifact per package from uv's pylock.toml: its wheel for the platform, else sdist."""
    packages = []
    for package in tomllib.loads(text).get("packages", []):
        artifact = (package.get("wheels") or [None])[0] or package.get("sdist") or \
            package.get("archive")
        if not artifact or "sha256" not in artifact.get("hashes", {}):
            raise EnvBuildError(f"pip package '{package.get('name')}' has no hashed artifact to "
                                "lock (a local directory or VCS checkout cannot be locked)",
                                hint="use a released version or a wheel in the pip: list")
        packages.append(PipPackage(package["name"], str(package.get("version", "")),
                                   artifact.get("url") or artifact.get("path", ""),
                                   artifact["hashes"]["sha256"]))
    return packages


def write_lock(request: CondaRequest, records: Sequence[Any], pip: Sequence[PipPackage],
               channel_urls: Sequence[str], custom: Mapping[str, str]) -> str:
    """The text of a conda-lock.yml (v1) for ``records`` and ``pip`` on the request's platform."""
    with needs_extra("conda", "conda environments"):
        from conda_lock.lockfile import write_conda_lock_file
        from conda_lock.lockfile.v2prelim.models import (
            HashModel,
            LockedDependency,
            Lockfile,
            LockMeta,
        )
        from conda_lock.models.channel import Channel

    platform = request.subdir
    packages = [LockedDependency(
        name=r.name.normalized, version=str(r.version), manager="conda", platform=platform,
        dependencies=dict(_split_dep(d) for d in r.depends),
        url=redact_channel(str(r.url)),
        hash=HashModel(md5=r.md5.hex() if r.md5 else None,
                       sha256=r.sha256.hex() if r.sha256 else None),
        build=str(r.build), categories={"main"}) for r in records]
    packages += [LockedDependency(
        name=p.name, version=p.version, manager="pip", platform=platform, dependencies={},
        url=redact_channel(p.url), hash=HashModel(sha256=p.sha256), categories={"main"})
        for p in pip]
    source = request.file.name if request.file is not None else "conda.yaml"
    meta = LockMeta(
        content_hash={platform: request.key},
        channels=[Channel(url=redact_channel(u), used_env_vars=()) for u in channel_urls],
        platforms=[platform], sources=[source], custom_metadata=dict(custom))
    lockfile = Lockfile(package=packages, metadata=meta)
    with tempfile.TemporaryDirectory(prefix="reprun-conda-lock-") as tmp:
        path = Path(tmp) / LOCK_FILENAME
        write_conda_lock_file(lockfile, path, metadata_choices=None, include_help_text=True)
        body = path.read_text(encoding="utf-8")
    header = f"# reprun lock: solved by {custom.get('reprun_solver', 'rattler')} for {platform}\n"
    return header + body


def _split_dep(dep: str) -> tuple[str, str]:
    name, _, rest = dep.strip().partition(" ")
    return name, rest.strip() or "*"


def read_facts(text: str, filename: str = LOCK_FILENAME) -> LockFacts:
    """Platform, channels, conda and pip packages of a conda-lock.yml's text."""
    from runner.spec.yamlfile import YamlLimitError, parse_yaml

    try:
        data = parse_yaml(text)[1]  # a recorded lock may come from anyone's export
        return _facts(data["metadata"], data["package"])
    except (yaml.YAMLError, YamlLimitError, TypeError, KeyError, ValueError, AttributeError) \
            as exc:
        why = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise EnvBuildError(f"{filename} is not a conda-lock file ({why})",
                            hint="solve again with --refresh") from None


def _facts(meta: Any, packages: Any) -> LockFacts:
    from runner.envs.conda.request import current_subdir

    platforms = list(meta["platforms"])
    if not isinstance(packages, list):
        raise TypeError("'package' is not a list")
    here = current_subdir()
    platform = here if here in platforms else (str(platforms[0]) if platforms else here)
    mine = [p for p in packages if isinstance(p, dict) and p.get("platform") == platform]
    conda = tuple((str(p["name"]), str(p["version"])) for p in mine if p.get("manager") == "conda")
    pip = tuple(PipPackage(str(p["name"]), str(p["version"]), str(p["url"]),
                           str((p.get("hash") or {}).get("sha256", "")))
                for p in mine if p.get("manager") == "pip")
    channels = tuple(str(c.get("url", c)) if isinstance(c, dict) else str(c)
                     for c in meta.get("channels") or [])
    custom = {str(k): str(v) for k, v in (meta.get("custom_metadata") or {}).items()}
    return LockFacts(platform, channels, conda, pip, custom)


def pip_requirements(packages: Sequence[PipPackage]) -> str:
    """A requirements file that installs exactly the locked artifacts, hash-checked."""
    lines = []
    for p in packages:
        if not p.sha256:
            raise EnvBuildError(f"pip package '{p.name}' in the conda lock has no sha256",
                                hint="solve again with --refresh")
        lines.append(f"{p.name} @ {p.url} --hash=sha256:{p.sha256}")
    return "\n".join(lines) + "\n"
