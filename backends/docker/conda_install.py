"""Install a conda-lock.yml into a prefix inside an image, from local archives only; no conda.

This file is copied into the build context and run by the image's own ``python3`` (3.10 or
newer) during ``docker build``, with no network. It imports nothing from reprun. Usage:

    python3 conda_install.py WHEEL LOCK ARCHIVES PREFIX SUBDIR

WHEEL is the py-rattler wheel fetched on the host (abi3, for the image's platform); it is unpacked
into a temporary folder and imported from there, then removed. Every locked package is installed
from ``ARCHIVES/<file name>`` (fetched and checked on the host), so the lock's URLs are not used.
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any


def load_rattler(wheel: Path, folder: Path) -> Any:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(folder)
    sys.path.insert(0, str(folder))
    import rattler

    # rattler can crash at interpreter exit right after an awaited call; linger a moment.
    atexit.register(time.sleep, 0.2)
    return rattler


def locked_records(rattler: Any, lock: Path, subdir: str) -> list[Any]:
    environment = rattler.LockFile.from_path(lock).default_environment()
    if environment is None:
        raise SystemExit(f"reprun: {lock.name} holds no environment")
    # Only platform objects taken from the lock itself are safe (a new one panics).
    platforms = {str(p.name): p for p in environment.platforms()}
    if subdir not in platforms:
        raise SystemExit(f"reprun: {lock.name} has no packages for {subdir}")
    return list(environment.conda_repodata_records_for_platform(platforms[subdir]) or [])


def main(argv: list[str]) -> int:
    wheel, lock, archives, prefix = (Path(a).resolve() for a in argv[:4])
    subdir = argv[4]
    work = Path(tempfile.mkdtemp(prefix="reprun-conda-"))
    try:
        rattler = load_rattler(wheel, work / "lib")
        records = locked_records(rattler, lock, subdir)
        for record in records:
            archive = archives / record.file_name
            if not archive.is_file():
                raise SystemExit(f"reprun: the archive {record.file_name} is missing")
            record.url = archive.as_uri()

        async def install() -> None:
            await rattler.install(records, target_prefix=prefix, cache_dir=work / "pkgs",
                                  show_progress=False)

        asyncio.run(install())
        print(f"reprun: installed {len(records)} conda package(s) into {prefix}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
