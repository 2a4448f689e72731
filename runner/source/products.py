"""Products are no code change: new files in a project that hold the same bytes as an output of
a finished run in the store (a run that wrote into the project directory, or a user who copied a
run's output there) stay out of the dirty flag, the patch and the snapshot.

Only new (untracked) files are candidates, each at most :data:`MAX_FILE_BYTES` and at most
:data:`MAX_FILES` of them; they are hashed through the stat cache (BLAKE3) and looked up in the
store's index. Nothing is imported or read when there are no candidates, no index, or no
output of a finished run in it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

MAX_FILE_BYTES = 512 * 1024 * 1024
MAX_FILES = 1000
Products = Callable[[Sequence[str]], dict[str, str]]


def run_products(top: Path, rels: Sequence[str], env: Mapping[str, str]) -> dict[str, str]:
    """Path (relative to ``top``) -> why it is left out ("output of run XXXXXXXX: path"), for
    the files of ``rels`` whose content is an output of a finished run in the store."""
    candidates = _candidates(top, rels)
    if not candidates:
        return {}
    from runner.record.home import reprun_home
    from runner.record.store import RunStore

    store = RunStore(reprun_home(env))
    if not store.index_path.is_file():
        return {}
    try:
        if not store.has_outputs():  # nothing to match: nothing hashed, blake3 not imported
            return {}
        digests = _digests(top, candidates, env)
        found = store.producers(set(digests.values()))
    except (sqlite3.Error, OSError):
        return {}
    finally:
        store.close()
    products = {}
    for rel, digest in digests.items():
        if found.get(digest):
            run_id, path = found[digest][0]
            products[rel] = f"output of run {run_id[:8]}: {path}"
    return products


def products_in(top: Path, env: Mapping[str, str]) -> Products:
    """:func:`run_products` of ``top`` for the files a caller lists."""
    return lambda rels: run_products(top, rels, env)


def with_reasons(products: Mapping[str, str]) -> list[str]:
    """The ``source.left_out`` entries of products: ``path (output of run ...: path)``."""
    return [f"{rel} ({why})" for rel, why in sorted(products.items())]


def _candidates(top: Path, rels: Sequence[str]) -> list[str]:
    kept = []
    for rel in rels:
        path = top / rel
        try:
            if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
                continue
        except OSError:
            continue
        kept.append(rel)
        if len(kept) >= MAX_FILES:
            break
    return kept


def _digests(top: Path, rels: list[str], env: Mapping[str, str]) -> dict[str, str]:
    from runner.source.fetch import cache_root
    from runner.tracking.fingerprint import fingerprint_paths
    from runner.tracking.statcache import DATABASE, opened

    with opened(cache_root(env) / DATABASE) as cache:
        try:
            prints = fingerprint_paths([top / rel for rel in rels], cache)
        except OSError:  # a file went away meanwhile: nothing is left out
            return {}
    return {rel: f.digest for rel, f in zip(rels, prints, strict=True)}
