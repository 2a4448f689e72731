"""Declared ``data:`` that a run's snapshot (or git) left out, brought to its reproduction.

A ``data:`` file kept out of the snapshot by ``.reprunignore`` or ``.gitignore`` is not in the
reproduction's checkout. The run read it from the project directory on disk, so the
reproduction reads it from there too: a copy in the (private) checkout, which is then
fingerprinted and compared with the record like any input, so unchanged data reproduces and
changed data is refused as changed.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path


def bring_left_out_data(data: Sequence[str], checkout: Path, original: Path | None) -> list[str]:
    """Copy each ``data:`` entry missing from ``checkout`` from the ``original`` project
    directory (the recorded place), when it is there and inside it; the entries copied."""
    if original is None or not original.is_dir():
        return []
    root, target_root = original.resolve(), checkout.resolve()
    if root == target_root:
        return []
    brought = []
    for item in data:
        relative = Path(item.replace("\\", "/"))
        target = checkout / relative
        if relative.is_absolute() or ".." in relative.parts or target.exists():
            continue
        source = (root / relative).resolve()
        if root not in source.parents or not source.exists():
            continue  # missing there too, or leading out of the project: reported as missing
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, symlinks=False)
        else:
            shutil.copy2(source, target)
        brought.append(item)
    return brought
