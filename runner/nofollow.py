"""Reading a file a run wrote, without following a symbolic link out of its directory.

A run's output directory and its metrics stream are written by the command, which may run in a
container as another user: a ``metrics.json`` that is a link to ``/etc/shadow`` (or a folder of
the path that is a link to ``/``) must not bring a host file into the record. `open_inside`
opens each part of the path relative to the directory with ``O_NOFOLLOW`` (so the check and the
open are one step: the file cannot be swapped for a link in between) and opens only a regular
file (a FIFO would block the reader: it is opened non-blocking, then refused).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path, PurePosixPath
from typing import BinaryIO


class NotAPlainFile(OSError):
    """The path is a symbolic link (or goes through one), or not a regular file."""


def open_inside(root: Path, relative: str) -> BinaryIO | None:
    """``root/relative`` opened for reading; None when it does not exist; `NotAPlainFile` when
    it, or a folder on the way, is a symbolic link, or when it is not a regular file."""
    parts = PurePosixPath(relative.replace("\\", "/")).parts
    if not parts or any(part in ("..", "/") for part in parts):
        raise NotAPlainFile(errno.EINVAL, "not a plain relative path", relative)
    nofollow = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        for part in parts[:-1]:
            inner = os.open(part, nofollow | os.O_DIRECTORY, dir_fd=folder)
            os.close(folder)
            folder = inner
        fd = os.open(parts[-1], nofollow | os.O_NONBLOCK, dir_fd=folder)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise NotAPlainFile(errno.ELOOP, "a symbolic link (not followed)", relative) from None
        raise
    finally:
        os.close(folder)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotAPlainFile(errno.EINVAL, "not a regular file", relative)
    with contextlib.suppress(OSError):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def links_under(root: Path, limit: int = 20) -> list[str]:
    """The symbolic links under ``root`` (relative POSIX paths, at most ``limit``), which the
    outputs of a run leave out: never followed, to a file or a folder."""
    found: list[str] = []
    for folder, dirs, files in os.walk(root):  # does not enter linked folders
        for name in sorted(dirs) + sorted(files):
            path = Path(folder) / name
            if path.is_symlink() and len(found) < limit:
                found.append(path.relative_to(root).as_posix())
    return found
