"""Lineage: an input whose content an earlier run wrote to its outputs names that run.

The match is by content digest, through the store's index of output digests, so it holds across
projects, paths and machines' copies: the run that made ``features.csv`` is found whoever moved it
where. ``reprun runs lineage RUN`` walks the links up (the runs that made what RUN read) or down
(``--down``: the runs that read what RUN made); a pipeline run's tree is its steps'.
"""

from __future__ import annotations

from collections.abc import Sequence

from runner.errors import RunNotFoundError
from runner.frozen import frozen
from runner.record.store import RunStore
from runner.record.types import InputInfo, ProducedBy
from runner.tracking.inputs import Found

MAX_PRODUCERS = 20


def with_producers(infos: Sequence[InputInfo], found: Sequence[Found],
                   store: RunStore) -> list[InputInfo]:
    """``infos`` with ``produced_by`` filled from the runs whose outputs have their content."""
    wanted: list[str] = []
    for f in found:
        if f.fingerprint is None:
            continue
        if f.fingerprint.kind == "file":
            wanted.append(f.fingerprint.digest)
        else:
            wanted += [e.digest for e in f.fingerprint.entries]
    producers = store.producers(wanted) if wanted else {}
    if not producers:
        return list(infos)
    linked = []
    for info, f in zip(infos, found, strict=True):
        links: list[ProducedBy] = []
        fp = f.fingerprint
        if fp is not None and fp.kind == "file":
            links = [ProducedBy(run_id=r, path=p) for r, p in producers.get(fp.digest, [])[:1]]
        elif fp is not None:
            for entry in fp.entries:
                hit = producers.get(entry.digest)
                if hit and len(links) < MAX_PRODUCERS:
                    links.append(ProducedBy(run_id=hit[0][0], path=hit[0][1], file=entry.path))
        linked.append(info.model_copy(update={"produced_by": links}) if links else info)
    return linked


@frozen
class Node:
    """A run in a lineage tree and how it is linked to its parent."""

    run_id: str
    label: str  # project / entry point, status
    via: str  # the input and the output path that link it; '' for the root
    children: tuple[Node, ...] = ()
    seen: bool = False  # already shown higher in the tree


def lineage(store: RunStore, run_id: str, down: bool = False, depth: int = 50) -> Node:
    """The tree of runs upstream of ``run_id`` (or downstream with ``down``)."""
    shown: set[str] = set()

    def node(rid: str, via: str, level: int) -> Node:
        try:
            record = store.get(rid)
        except RunNotFoundError:
            return Node(rid, "(no longer in the store)", via)
        label = f"{record.project.name} / {record.entry_point} ({record.status.value})"
        if rid in shown or level >= depth:
            return Node(rid, label, via, seen=True)
        shown.add(rid)
        if record.pipeline is not None:  # a pipeline run: its steps, either way
            links = [(s.run_id, f"step {s.name}") for s in record.pipeline.steps if s.run_id]
        elif down:
            links = [(c, f"read {path} as {name}") for c, name, path in store.consumers(rid)]
        else:
            links = [(p.run_id, f"{i.name}{'/' + p.file if p.file else ''} <- {p.path}")
                     for i in record.inputs for p in i.produced_by]
        children = tuple(node(child, how, level + 1) for child, how in _grouped(links))
        return Node(rid, label, via, children)

    return node(run_id, "", 0)


def _grouped(links: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """One child per run; several links to it are listed together."""
    grouped: dict[str, list[str]] = {}
    for rid, how in links:
        grouped.setdefault(rid, []).append(how)
    return [(rid, "; ".join(hows[:3]) + (f"; +{len(hows) - 3} more" if len(hows) > 3 else ""))
            for rid, hows in grouped.items()]


def render(tree: Node, indent: str = "") -> list[str]:
    """The tree as lines of text."""
    via = f"  [{tree.via}]" if tree.via else ""
    again = "  (shown above)" if tree.seen and tree.via else ""
    lines = [f"{indent}{tree.run_id[:12]}  {tree.label}{via}{again}"]
    for child in tree.children:
        lines += render(child, indent + "  ")
    return lines
