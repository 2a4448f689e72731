"""Skip what has not changed: the key of everything that decides a run's result, and reusing the
outputs of a run with the same key (``reprun run --reuse``).

The key covers the code (commit and patch digest, or snapshot digest), the project's subdirectory,
the entry point, the command (parameters included), the parameters, the environment lock's digest,
the environment manager, the backend and every input's digest. A run of code that cannot be
identified (a project outside git whose snapshot was skipped) has no key and is never reused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from runner.record.types import OutputFile, RunRecord

if TYPE_CHECKING:
    from runner.tracking.statcache import StatCache

KEY_VERSION = 1


def reuse_key(record: RunRecord, lock_sha256: str | None, manager: str) -> str | None:
    """The reuse key of ``record`` (its inputs fingerprinted) run with the lock ``lock_sha256``."""
    source = record.source
    if source.snapshot is not None:
        code: dict[str, str | None] = {"snapshot": source.snapshot.sha256}
    elif source.resolved_commit is not None:
        code = {"commit": source.resolved_commit, "patch": source.patch_sha256}
    else:
        return None
    if lock_sha256 is None:
        return None
    facts = {
        "version": KEY_VERSION, "code": code, "subdirectory": source.subdirectory,
        "entry_point": record.entry_point, "command": record.command,
        "parameters": record.parameters, "lock": lock_sha256, "manager": manager,
        "backend": record.backend.name,
        "inputs": sorted([i.kind, i.name, i.digest or ""] for i in record.inputs),
    }
    # An identifier, not a content digest: sha256 here keeps blake3 off a run without inputs.
    return "sha256:" + hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def copy_outputs(original: RunRecord, output_dir: Path,
                 cache: StatCache) -> list[OutputFile] | None:
    """Copy the outputs of ``original`` into ``output_dir``, each checked against its recorded
    digest first; None (and nothing copied) when one is gone or changed."""
    from runner.tracking.fingerprint import fingerprint_paths

    source = Path(original.output_dir)
    outputs = original.outputs
    if any(o.digest is None for o in outputs):
        return None
    try:
        prints = fingerprint_paths([source / o.path for o in outputs], cache)
    except OSError:
        return None
    if any(p.digest != o.digest for p, o in zip(prints, outputs, strict=True)):
        return None
    for o in outputs:
        target = output_dir / o.path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / o.path, target)
    return list(outputs)
