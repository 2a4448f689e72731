"""Build a tiny local conda channel for this example, so it runs where conda-forge is unreachable.

    python make_local_channel.py DIR     -> prints the file:// URL to pass to --conda-channel

The channel holds one ``python`` package for this platform: a wrapper that runs the interpreter
running this script with the prefix's site-packages. Packages are written with tarfile (fixed
times and owners, so they are byte-identical each time) and indexed with py-rattler.
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
from pathlib import Path

PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"  # rewritten to the prefix at install time
MTIME = 1_700_000_000


def subdir() -> str:
    arch = {"x86_64": "64", "aarch64": "aarch64", "arm64": "arm64"}.get(platform.machine(), "64")
    system = {"darwin": "osx"}.get(sys.platform, sys.platform)
    return f"{system}-{arch}"


def python_package(channel: Path) -> Path:
    major_minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    host = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    wrapper = (f'#!/bin/sh\nPREFIX="{PLACEHOLDER}"\n'
               f'PYTHONPATH="$PREFIX/lib/python{major_minor}/site-packages" '
               f'exec "{host}" "$@"\n').encode()
    files = {"bin/python": wrapper, f"bin/python{major_minor}": wrapper}
    index = {"name": "python", "version": platform.python_version(), "build": "0_local",
             "build_number": 0, "depends": [], "subdir": subdir(), "license": "PSF-2.0",
             "timestamp": MTIME * 1000}
    paths = [{"_path": rel, "path_type": "hardlink", "sha256": hashlib.sha256(data).hexdigest(),
              "size_in_bytes": len(data), "prefix_placeholder": PLACEHOLDER, "file_mode": "text"}
             for rel, data in sorted(files.items())]
    info = {"info/index.json": json.dumps(index, sort_keys=True).encode(),
            "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}).encode(),
            "info/files": "".join(f"{rel}\n" for rel in sorted(files)).encode()}
    folder = channel / subdir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"python-{index['version']}-0_local.tar.bz2"
    with tarfile.open(target, "w:bz2") as archive:
        for name, data in [*sorted(info.items()), *sorted(files.items())]:
            member = tarfile.TarInfo(name)
            member.size, member.mtime = len(data), MTIME
            member.mode = 0o755 if name.startswith("bin/") else 0o644
            archive.addfile(member, io.BytesIO(data))
    return target


def main() -> None:
    channel = Path(sys.argv[1] if len(sys.argv) > 1 else "conda-channel").resolve()
    python_package(channel)
    (channel / "noarch").mkdir(parents=True, exist_ok=True)
    from rattler.index import index_fs

    atexit.register(time.sleep, 0.2)  # let rattler's threads finish before the interpreter exits
    asyncio.run(index_fs(channel, write_zst=False, write_shards=False))
    print(channel.as_uri())


if __name__ == "__main__":
    main()
