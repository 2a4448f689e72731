"""Tiny conda packages written with tarfile, and a ``file://`` channel indexed by rattler.

No conda channel is reachable from the tests, so they make their own: byte-identical archives
(fixed mtimes, owners and order) so that the sha256 values in lock files are stable. A ``python``
package for the platform subdir is a shim that runs the interpreter running the tests with the
prefix's site-packages on its path: enough for ``noarch: python`` packages and for pip installs.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import io
import json
import os
import platform
import sys
import tarfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"
MTIME = 1_700_000_000
PY_MM = f"{sys.version_info.major}.{sys.version_info.minor}"
PY_VERSION = platform.python_version()

Files = Mapping[str, tuple[bytes, int]]  # relative path -> (content, mode)


def current_subdir() -> str:
    machine = platform.machine()
    arch = {"x86_64": "64", "aarch64": "aarch64", "arm64": "arm64", "ppc64le": "ppc64le"}
    os_name = {"linux": "linux", "darwin": "osx"}.get(sys.platform, sys.platform)
    return f"{os_name}-{arch.get(machine, machine)}"


def conda_package(
    channel: Path, name: str, version: str, files: Files, *, depends: Sequence[str] = (),
    build: str = "0", subdir: str = "noarch", noarch: str | None = "generic",
    prefix_files: Sequence[str] = (), link: Mapping[str, object] | None = None,
) -> Path:
    """Write ``<channel>/<subdir>/<name>-<version>-<build>.tar.bz2``."""
    index: dict[str, object] = {
        "name": name, "version": version, "build": build, "build_number": 0,
        "depends": list(depends), "subdir": subdir, "license": "MIT",
        "timestamp": MTIME * 1000,
        "arch": None if subdir == "noarch" else platform.machine(),
        "platform": None if subdir == "noarch" else subdir.split("-", maxsplit=1)[0],
    }
    if noarch:
        index["noarch"] = noarch
    paths = []
    for rel, (data, _mode) in sorted(files.items()):
        entry: dict[str, object] = {"_path": rel, "path_type": "hardlink",
                                    "sha256": hashlib.sha256(data).hexdigest(),
                                    "size_in_bytes": len(data)}
        if rel in prefix_files:
            entry.update(prefix_placeholder=PLACEHOLDER, file_mode="text")
        paths.append(entry)
    info = {
        "info/index.json": json.dumps(index, indent=1, sort_keys=True).encode(),
        "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}).encode(),
        "info/files": "".join(f"{rel}\n" for rel in sorted(files)).encode(),
    }
    if link is not None:
        info["info/link.json"] = json.dumps(link).encode()
    if prefix_files:
        info["info/has_prefix"] = "".join(
            f"{PLACEHOLDER} text {rel}\n" for rel in sorted(prefix_files)).encode()
    folder = channel / subdir
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}-{version}-{build}.tar.bz2"
    members = [(k, v, 0o644) for k, v in sorted(info.items())]
    members += [(k, data, mode) for k, (data, mode) in sorted(files.items())]
    with tarfile.open(target, "w:bz2") as archive:
        for arcname, data, mode in members:
            member = tarfile.TarInfo(arcname)
            member.size, member.mode, member.mtime = len(data), mode, MTIME
            member.uid = member.gid = 0
            member.uname = member.gname = ""
            archive.addfile(member, io.BytesIO(data))
    return target


def tool_package(channel: Path, name: str, version: str, message: str,
                 depends: Sequence[str] = ()) -> Path:
    """A noarch package with an executable ``bin/<name>`` that prints ``message`` and its prefix."""
    script = (f'#!/bin/sh\nPREFIX="{PLACEHOLDER}"\n'
              f'echo "{message} (prefix $PREFIX)"\n').encode()
    return conda_package(channel, name, version, {f"bin/{name}": (script, 0o755)},
                         depends=depends, prefix_files=[f"bin/{name}"])


def python_shim(channel: Path) -> Path:
    """A ``python`` package for this platform: the host interpreter with the prefix's packages."""
    host = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    shim = (
        f'#!/bin/sh\nPREFIX="{PLACEHOLDER}"\n'
        f'SITE="$PREFIX/lib/python{PY_MM}/site-packages"\n'
        'export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"\n'
        f'export PYTHONNOUSERSITE=1\nexec "{host}" "$@"\n'
    ).encode()
    files = {"bin/python": (shim, 0o755), f"bin/python{PY_MM}": (shim, 0o755),
             f"lib/python{PY_MM}/site-packages/.keep": (b"", 0o644)}
    return conda_package(channel, "python", PY_VERSION, files, build="0_shim",
                         subdir=current_subdir(), noarch=None,
                         prefix_files=["bin/python", f"bin/python{PY_MM}"])


def python_library(channel: Path, name: str, version: str, command: str) -> Path:
    """A ``noarch: python`` package with module ``name`` and a console script ``command``."""
    code = (f"VERSION = {version!r}\n\ndef main():\n    import sys\n"
            f"    print('{name}', VERSION, 'on python', sys.version.split()[0])\n").encode()
    link = {"noarch": {"type": "python", "entry_points": [f"{command} = {name}:main"]},
            "package_metadata_version": 1}
    return conda_package(channel, name, version,
                         {f"site-packages/{name}/__init__.py": (code, 0o644)},
                         depends=["python"], build="py_0", noarch="python", link=link)


def index(channel: Path) -> str:
    """Write the channel's repodata.json files; returns its ``file://`` URL."""
    from rattler.index import index_fs

    atexit.register(time.sleep, 0.2)  # rattler can crash at exit right after an awaited call
    (channel / "noarch").mkdir(parents=True, exist_ok=True)
    # Without target_platform: with one, index_fs skips noarch.
    asyncio.run(index_fs(channel, write_zst=False, write_shards=False))
    return channel.resolve().as_uri()


def standard_channel(channel: Path) -> str:
    """hello-tool (1.0 and 2.0), its library greeting-data, a python shim and a python library."""
    data = b"hello from greeting-data\n"
    conda_package(channel, "greeting-data", "1.0", {"share/greeting/text.txt": (data, 0o644)})
    tool_package(channel, "hello-tool", "1.0", "hello-tool 1.0")
    tool_package(channel, "hello-tool", "2.0", "hello-tool 2.0", depends=["greeting-data >=1"])
    tool_package(channel, "needs-missing", "1.0", "never", depends=["greeting-data >=5"])
    python_shim(channel)
    python_library(channel, "condalib", "1.0", "condalib-cli")
    return index(channel)
