"""Reproducible layers: the same files give the same bytes, so the same digest, on any machine.

A layer is a tar (entries sorted, parents listed first, mtime 0, owner root, modes 0644/0755,
no user or group names) compressed with gzip (no name, mtime 0, level 6). It is written to a
temporary file while its two digests are taken: ``diff_id`` (of the tar, for the image config)
and ``digest`` (of the gzip, for the manifest and the registry).

This module uses the standard library only: it is also sent, as it is, to the build Job of an
environment layer (`backends.oci.podbuild`), so a layer built in the cluster and one built here
from the same files are the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from backends.oci.client import Blob

GZIP_LEVEL = 6


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes what passes through it into ``target``."""

    def __init__(self, target: _Sink) -> None:
        self.target, self.sha, self.size = target, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.sha.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)


@dataclass
class Layer:
    """A written layer: its gzip in a temporary file, its digests and size."""

    digest: str
    diff_id: str
    size: int
    file: IO[bytes]

    def blob(self) -> Blob:
        from backends.oci.client import Blob

        self.file.seek(0)
        return Blob(self.digest, self.size, data=self.file.read())

    def close(self) -> None:
        self.file.close()


def _parents(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    for name in names:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            seen.add("/".join(parts[:i]))
    return sorted(seen)


def _dir_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name + "/")
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
    return info


def write_layer(files: Iterable[tuple[str, Path | bytes]]) -> Layer:
    """A layer of ``files``: (path in the image without a leading '/', host file or bytes)."""
    entries = sorted(((name.strip("/"), source) for name, source in files),
                     key=lambda item: item[0])
    handle = tempfile.TemporaryFile(prefix="reprun-layer-")  # noqa: SIM115 (Layer closes it)
    compressed = _Hashing(handle)
    gz = gzip.GzipFile(filename="", mode="wb", fileobj=compressed, compresslevel=GZIP_LEVEL,
                       mtime=0)
    plain = _Hashing(gz)
    listed = {name for name, _ in entries}
    with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for parent in _parents(listed):
            if parent not in listed:
                tar.addfile(_dir_info(parent))
        for name, source in entries:
            _add(tar, name, source)
    gz.close()
    handle.seek(0)
    return Layer("sha256:" + compressed.sha.hexdigest(), "sha256:" + plain.sha.hexdigest(),
                 compressed.size, handle)


def _add(tar: tarfile.TarFile, name: str, source: Path | bytes) -> None:
    if isinstance(source, bytes):
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(source), 0o644, 0
        tar.addfile(info, io.BytesIO(source))
        return
    found = os.lstat(source)
    info = tarfile.TarInfo(name)
    info.mtime = 0
    if stat.S_ISLNK(found.st_mode):
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, str(source.readlink()), 0o777
        tar.addfile(info)
    elif stat.S_ISDIR(found.st_mode):
        tar.addfile(_dir_info(name))
    elif stat.S_ISREG(found.st_mode):
        info.size = found.st_size
        info.mode = 0o755 if found.st_mode & stat.S_IXUSR else 0o644
        with source.open("rb") as data:
            tar.addfile(info, data)


def tree_files(root: Path, prefix: str, names: Iterable[str] | None = None,
               ) -> list[tuple[str, Path | bytes]]:
    """The files under ``root`` (or only ``names``, relative posix paths) placed at ``prefix``."""
    prefix = prefix.strip("/")
    if names is None:
        names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    return [(f"{prefix}/{rel}", root / rel) for rel in names]
