"""A conda lock installed into an image without conda and without network in the build.

The host already holds the lock (``conda-lock.yml``, the very one a local run uses). For the image,
everything the install needs is fetched on the host, where channel settings, proxies and
credentials apply, and checked against the lock's sha256 (and md5):

    reprun/conda-installer/  the py-rattler wheel (abi3) for the lock's platform, and the install
                             script (``backends/docker/conda_install.py``) the image's python3 runs
    reprun/conda-pkgs/       every locked package archive, by file name
    reprun/conda-lock.yml    the lock itself

The Dockerfile installs the installer first (it changes only with rattler's version), then the
lock and archives, then sets the prefix's activation (PATH, CONDA_PREFIX, CONDA_SHLVL) with ENV,
and runs commands through a small entry point that sources the packages' ``activate.d`` scripts,
as conda's activation does. Archives are kept once per sha256 in ``<cache>/conda/archives/``, the
wheel once per rattler version and platform in ``<cache>/wheels/``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from runner.envs.base import Lock
from runner.envs.cache import cache_root
from runner.envs.conda import redact_channel
from runner.errors import EnvBuildError, NotSupportedError
from runner.extras import needs_extra
from runner.frozen import frozen
from runner.process import capture

PREFIX = "/opt/reprun/conda"
INSTALLER = "/opt/reprun/conda-installer"
ARCHIVES = "/opt/reprun/conda-pkgs"
ENTRY = "/opt/reprun/conda-entry.sh"
SCRIPT = Path(__file__).with_name("conda_install.py")
# The image's entry point: the packages' activation scripts, then the command.
ENTRY_SCRIPT = f"""#!/bin/sh
for script in {PREFIX}/etc/conda/activate.d/*.sh; do
  if [ -f "$script" ]; then . "$script"; fi
done
exec "$@"
"""
WHEEL_PLATFORMS = {"linux-64": "x86_64", "linux-aarch64": "aarch64", "linux-ppc64le": "ppc64le"}


@frozen
class LockedArchive:
    url: str
    file_name: str
    sha256: str
    md5: str | None


def locked_archives(lock: Lock) -> tuple[str, list[LockedArchive]]:
    """The platform and the conda packages of a conda-lock.yml; refuses what an image cannot do."""
    from runner.envs.conda import read_facts

    facts = read_facts(lock.content, lock.filename)
    if facts.pip:
        raise NotSupportedError(
            f"{lock.filename} has a pip: section, which cannot be installed into a Docker "
            "image yet", hint="run it locally, or move the pip packages to conda dependencies")
    if facts.platform not in WHEEL_PLATFORMS:
        raise NotSupportedError(
            f"{lock.filename} locks packages for {facts.platform}; a Docker image needs a "
            f"Linux lock ({', '.join(WHEEL_PLATFORMS)})", hint="run it locally")
    data: dict[str, Any] = yaml.safe_load(lock.content)
    archives = []
    for package in data.get("package") or []:
        if package.get("platform") != facts.platform or package.get("manager") != "conda":
            continue
        url, digests = str(package["url"]), package.get("hash") or {}
        if not digests.get("sha256"):
            raise EnvBuildError(f"conda package {package['name']} in {lock.filename} has no "
                                "sha256", hint="solve again with --refresh")
        name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
        archives.append(LockedArchive(url, name, str(digests["sha256"]),
                                      str(digests["md5"]) if digests.get("md5") else None))
    return facts.platform, archives


def fetch_archive(archive: LockedArchive, folder: Path) -> Path:
    """``archive`` in the host's archive cache (fetched once, checked against the lock)."""
    target = folder / archive.sha256 / archive.file_name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        staging = Path(tmp) / archive.file_name
        _download(archive.url, staging)
        _check(archive, staging)
        staging.replace(target)
    return target


def _download(url: str, dest: Path) -> None:
    shown = redact_channel(url)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        source = Path(urllib.parse.unquote(parts.path))
        try:
            shutil.copyfile(source, dest)
        except OSError as exc:
            raise EnvBuildError(f"cannot read the locked conda package {shown}: "
                                f"{exc.strerror or exc}",
                                hint="the channel of the lock must still hold it") from None
        return
    with needs_extra("conda", "conda environments"):
        import rattler
        from rattler.package_streaming import download_to_path

    from runner.envs.conda.solve import run

    try:
        run(download_to_path(rattler.Client.authenticated_client(), url, dest), "downloading")
    except Exception as exc:
        reason = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
        raise EnvBuildError(f"cannot download the locked conda package {shown}: {reason[0]}",
                            hint="the channel of the lock must be reachable from this machine") \
            from None


def _check(archive: LockedArchive, path: Path) -> None:
    data = path.read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != archive.sha256.lower():
        raise EnvBuildError(f"the conda package {redact_channel(archive.url)} has sha256 {got}, "
                            f"but the lock says {archive.sha256}",
                            hint="the channel changed the package; solve again with --refresh")
    if archive.md5 and hashlib.md5(data).hexdigest() != archive.md5.lower():
        raise EnvBuildError(f"the conda package {redact_channel(archive.url)} does not match "
                            "the md5 in the lock", hint="solve again with --refresh")


def rattler_wheel(subdir: str, env: Mapping[str, str]) -> Path:
    """The py-rattler wheel (this reprun's version, abi3) for Linux on ``subdir``'s machine."""
    with needs_extra("conda", "conda environments"):
        import rattler

    version = str(rattler.__version__)
    machine = WHEEL_PLATFORMS[subdir]
    folder = cache_root(env) / "wheels" / f"py-rattler-{version}-{machine}"
    found = sorted(folder.glob("py_rattler-*.whl")) if folder.is_dir() else []
    if found:
        return found[0]
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".fetch-") as tmp:
        staging = Path(tmp) / "wheel"
        argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                "--disable-pip-version-check", "--no-input", "--dest", str(staging),
                "--platform", f"manylinux2014_{machine}", "--implementation", "cp",
                "--python-version", "3.10", "--abi", "abi3", f"py-rattler=={version}"]
        done = capture(argv, env=env, timeout=1800, contain=True)
        wheels = sorted(staging.glob("py_rattler-*.whl"))
        if not done.ok or not wheels:
            last = [ln for ln in done.stderr.splitlines() if ln.strip()][-1:] or ["no wheel"]
            raise EnvBuildError(f"fetching the py-rattler {version} wheel for the image failed: "
                                f"{last[0].strip()}",
                                hint="the image installs the conda lock with py-rattler; pip "
                                     "must reach its package index")
        if not folder.exists():  # else another run published the same wheel first
            staging.rename(folder)
    return sorted(folder.glob("py_rattler-*.whl"))[0]


def conda_instructions(lock: Lock, subdir: str, wheel_name: str,
                       variables: Mapping[str, str]) -> tuple[str, ...]:
    lock_path = f"/opt/reprun/{lock.filename}"
    install = " ".join([f"python3 {INSTALLER}/install.py {INSTALLER}/{wheel_name}", lock_path,
                        ARCHIVES, PREFIX, subdir])
    return (
        f"COPY reprun/conda-installer/ {INSTALLER}/",
        f"COPY reprun/{lock.filename} {lock_path}",
        f"COPY reprun/conda-pkgs/ {ARCHIVES}/",
        f"RUN {install} && rm -rf {ARCHIVES} && chmod 755 {INSTALLER}/entry.sh "
        f"&& cp {INSTALLER}/entry.sh {ENTRY}",
        f"ENV PATH={PREFIX}/bin:$PATH CONDA_PREFIX={PREFIX} CONDA_SHLVL=1",
        *(f"ENV {name}={_quoted(value)}" for name, value in sorted(variables.items())),
        f"ENTRYPOINT {json.dumps([ENTRY])}",
    )


def _quoted(value: str) -> str:
    """A Dockerfile ENV value: double-quoted, with backslash, quote and $ escaped."""
    if "\n" in value or "\r" in value:
        raise NotSupportedError("a conda.yaml variable with a line break cannot be set in a "
                                "Docker image", hint="put it on one line")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def conda_files(lock: Lock, env: Mapping[str, str]) -> tuple[str, tuple[tuple[str, bytes], ...]]:
    """The platform of ``lock`` and the context files that install it (see the module doc)."""
    subdir, archives = locked_archives(lock)
    folder = cache_root(env) / "conda" / "archives"
    files: list[tuple[str, bytes]] = [(lock.filename, lock.content.encode("utf-8"))]
    for archive in sorted(archives, key=lambda a: a.file_name):
        files.append((f"conda-pkgs/{archive.file_name}",
                      fetch_archive(archive, folder).read_bytes()))
    wheel = rattler_wheel(subdir, env)
    files += [(f"conda-installer/{wheel.name}", wheel.read_bytes()),
              ("conda-installer/install.py", SCRIPT.read_bytes()),
              ("conda-installer/entry.sh", ENTRY_SCRIPT.encode("utf-8"))]
    return subdir, tuple(files)
