"""``models get``: a version's files copied out of the store, each checked against its digest
before anything is written."""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

from runner.errors import StoreError, UsageError
from runner.models.store import ModelStore
from runner.models.types import ModelVersion
from runner.tracking.digest import file_digest


def verify(store: ModelStore, version: ModelVersion) -> list[tuple[Path, str]]:
    """(blob, relative path) of each file; StoreError naming the first file that is missing or
    whose content is not its digest any more."""
    checked = []
    for entry in version.files:
        blob = store.blob(entry.digest)
        try:
            found = file_digest(blob)
        except FileNotFoundError:
            raise StoreError(f"'{entry.path}' of {version.name} version {version.version} is "
                             f"missing from the model store ({blob})") from None
        if found != entry.digest:
            raise StoreError(f"'{entry.path}' of {version.name} version {version.version} does "
                             f"not match its digest: the store has {found}, the version "
                             f"{entry.digest} ({blob})",
                             hint="the store was changed; register the model again from a run")
        checked.append((blob, entry.path))
    return checked


def get(store: ModelStore, version: ModelVersion, directory: Path) -> list[Path]:
    """Copy the version's files into ``directory`` (created; existing files are not replaced)."""
    files = verify(store, version)
    targets = [directory.joinpath(*PurePosixPath(rel).parts) for _, rel in files]
    clash = [str(t) for t in targets if t.exists() or t.is_symlink()]
    if clash:
        raise UsageError(f"'{clash[0]}' exists already", hint="give -o an empty or new directory")
    written: list[Path] = []
    try:
        for (blob, _rel), target in zip(files, targets, strict=True):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(blob, target)
            written.append(target)
    except BaseException:
        for path in written:  # none of a version rather than a part of it
            path.unlink(missing_ok=True)
        raise
    return written
