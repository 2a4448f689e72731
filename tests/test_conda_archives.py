"""Locked conda archives fetched on the host for an image: over HTTP with rattler, checked."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from condapkgs import conda_package

from backends.docker.conda import LockedArchive, fetch_archive
from runner.errors import EnvBuildError


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A folder served over HTTP on 127.0.0.1 (a free port): (base URL, folder)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


def test_archive_is_downloaded_once_and_checked(served: tuple[str, Path],
                                                tmp_path: Path) -> None:
    base, folder = served
    archive = conda_package(folder, "tool", "1.0", {"bin/tool": (b"#!/bin/sh\necho\n", 0o755)})
    data = archive.read_bytes()
    locked = LockedArchive(f"{base}/noarch/{archive.name}", archive.name,
                           hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest())
    cache = tmp_path / "cache"
    got = fetch_archive(locked, cache)
    assert got.read_bytes() == data
    assert got == cache / locked.sha256 / archive.name
    archive.unlink()  # a second fetch is served from the cache
    assert fetch_archive(locked, cache) == got

    conda_package(folder, "tool", "1.0", {"bin/tool": (b"#!/bin/sh\necho 2\n", 0o755)})
    changed = LockedArchive(locked.url, locked.file_name, "ab" * 32, None)
    with pytest.raises(EnvBuildError, match=r"has sha256 [0-9a-f]{64}, but the lock says abab"):
        fetch_archive(changed, cache)
    missing = LockedArchive(f"{base}/noarch/gone-1.0-0.tar.bz2", "gone-1.0-0.tar.bz2",
                            "cd" * 32, None)
    with pytest.raises(EnvBuildError, match="cannot download the locked conda package http://"):
        fetch_archive(missing, cache)
    assert not (cache / ("cd" * 32) / "gone-1.0-0.tar.bz2").exists()
