"""The content digest of reprun: BLAKE3 of a file's bytes, ``blake3:<64 hex>``.

A directory is described by a manifest, the list of its files (relative POSIX path, size, digest)
sorted by path; its digest is the BLAKE3 of the manifest's canonical JSON. The same digest is used
for inputs and outputs, so that a file one run wrote can be recognised when another run reads it.
Older records carry sha256 hex digests of their outputs instead (``OutputFile.sha256``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any, NamedTuple

from blake3 import blake3

ALGORITHM = "blake3"
PREFIX = f"{ALGORITHM}:"
CHUNK = 1 << 20
MANIFEST_FORMAT = "reprun-manifest"


def file_digest(path: Path | str, progress: Any = None) -> str:
    """``blake3:<hex>`` of the file's bytes; ``progress(n)`` is told of each chunk read."""
    hasher = blake3()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:  # noqa: PTH123 (a str path is faster)
        while count := handle.readinto(buffer):
            hasher.update(view[:count])
            if progress is not None:
                progress(count)
    return PREFIX + hasher.hexdigest()


def bytes_digest(data: bytes) -> str:
    return PREFIX + blake3(data).hexdigest()


class ManifestEntry(NamedTuple):
    """One file of a directory (a named tuple: there may be millions)."""

    path: str  # relative to the directory, POSIX separators
    size: int
    digest: str


def manifest_json(entries: Sequence[ManifestEntry]) -> bytes:
    """The canonical bytes a directory digest is taken of (entries sorted by path)."""
    # Written by hand: the same bytes as json.dumps(rows, sort_keys=True, separators=(",", ":"),
    # ensure_ascii=False), three times faster for large directories.
    rows = ",".join([f'{{"digest":"{digest}","path":{encode_basestring(path)},"size":{size}}}'
                     for path, size, digest in sorted(entries)])
    return f"[{rows}]".encode()


def manifest_digest(entries: Sequence[ManifestEntry]) -> str:
    return bytes_digest(manifest_json(entries))


def write_manifest(path: Path, digest: str, entries: Sequence[ManifestEntry]) -> None:
    """The manifest file kept beside a record (readable JSON, one file per line)."""
    from runner.fsutil import atomic_write_text

    lines = [f'{{"path": {encode_basestring(path)}, "size": {size}, "digest": "{digest}"}}'
             for path, size, digest in sorted(entries)]  # by hand, as manifest_json: fast
    head = json.dumps({"format": MANIFEST_FORMAT, "version": 1, "digest": digest})
    body = ",\n  ".join(lines)
    text = f'{head[:-1]}, "files": [\n  {body}\n]}}\n' if lines else f'{head[:-1]}, "files": []}}\n'
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text, durable=False)


def read_manifest(path: Path) -> dict[str, str]:
    """Relative path -> digest of a saved manifest; empty when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {str(f["path"]): str(f["digest"]) for f in data["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
