"""``reprun diff``: what differs between two runs, as data (``--json``) and as aligned text.

Each value that is compared appears as ``{"a": ..., "b": ..., "same": bool}``; each mapping
(parameters, metrics by their last value, packages, host facts) as ``{"added": {...},
"removed": {...}, "changed": {name: [a, b]}, "same": count}``. Code files that differ come from
``git diff --name-only`` between the two commits (in the local repository or reprun's git cache,
whichever holds both), from the two patches (compared file by file) and, for projects outside
git, from the two snapshots.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.record.export import Recorded, open_run
from runner.record.store import RunStore
from runner.record.types import RunRecord
from runner.source.fetch import cache_root
from runner.source.git import git_env, run_git
from runner.source.snapshot import snapshot_digests
from runner.source.uri import cache_name, file_url_path, is_remote

Json = dict[str, Any]


def diff_runs(target_a: str, target_b: str, store: RunStore, env: Mapping[str, str]) -> Json:
    """What differs between two runs, each a run id (prefix), an export or a run.json."""
    with contextlib.ExitStack() as stack:
        return diff_recorded(open_run(target_a, store, stack), open_run(target_b, store, stack),
                             env)


def diff_recorded(a: Recorded, b: Recorded, env: Mapping[str, str]) -> Json:
    """What differs between two opened runs (``reprun diff --json``)."""
    ra, rb = a.record, b.record
    return {
        "runs": {"a": ra.run_id, "b": rb.run_id},
        "code": code_diff(a, b, git_env(env)),
        "entry_point": pair(ra.entry_point, rb.entry_point),
        "command": pair(ra.command, rb.command),
        "parameters": mapping_diff(ra.parameters, rb.parameters),
        "environment": environment_diff(ra, rb),
        "backend": {"name": pair(ra.backend.name, rb.backend.name),
                    "facts": mapping_diff(ra.backend.facts, rb.backend.facts)},
        "host": mapping_diff(ra.host.model_dump(), rb.host.model_dump()),
        "inputs": inputs_diff(ra, rb),
        "outputs": outputs_diff(ra, rb),
        "metrics": mapping_diff({k: m.last for k, m in ra.metrics.items()},
                                {k: m.last for k, m in rb.metrics.items()}),
        "status": pair(ra.status.value, rb.status.value),
        "exit_code": pair(ra.exit_code, rb.exit_code),
        "duration_s": pair(ra.duration_s, rb.duration_s),
    }


def pair(a: Any, b: Any) -> Json:
    return {"a": a, "b": b, "same": a == b}


def mapping_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> Json:
    return {
        "added": {k: b[k] for k in b if k not in a},
        "removed": {k: a[k] for k in a if k not in b},
        "changed": {k: [a[k], b[k]] for k in a if k in b and a[k] != b[k]},
        "same": sum(1 for k in a if k in b and a[k] == b[k]),
    }


def environment_diff(a: RunRecord, b: RunRecord) -> Json:
    ea, eb = a.environment, b.environment
    return {
        "kind": pair(ea.kind, eb.kind),
        "manager": pair(ea.manager, eb.manager),
        "python": pair(ea.python_version, eb.python_version),
        "lock_sha256": pair(ea.lock_sha256, eb.lock_sha256),
        "packages": mapping_diff({p.name: p.version for p in ea.packages},
                                 {p.name: p.version for p in eb.packages}),
    }


def outputs_diff(a: RunRecord, b: RunRecord) -> Json:
    oa = {o.path: o.content for o in a.outputs}
    ob = {o.path: o.content for o in b.outputs}
    return {
        "changed": sorted(p for p in oa.keys() & ob.keys() if oa[p] != ob[p]),
        "only_a": sorted(oa.keys() - ob.keys()),
        "only_b": sorted(ob.keys() - oa.keys()),
        "same": sum(1 for p in oa.keys() & ob.keys() if oa[p] == ob[p]),
    }


def inputs_diff(a: RunRecord, b: RunRecord) -> Json:
    """Inputs by name: added, removed, changed (digests) and how many are the same."""
    return mapping_diff({i.name: i.digest for i in a.inputs}, {i.name: i.digest for i in b.inputs})


def code_diff(a: Recorded, b: Recorded, env: Mapping[str, str]) -> Json:
    sa, sb = a.record.source, b.record.source
    snap_a = sa.snapshot.sha256 if sa.snapshot else None
    snap_b = sb.snapshot.sha256 if sb.snapshot else None
    result: Json = {
        "uri": pair(sa.uri, sb.uri), "subdirectory": pair(sa.subdirectory, sb.subdirectory),
        "commit": pair(sa.resolved_commit, sb.resolved_commit),
        "patch_sha256": pair(sa.patch_sha256, sb.patch_sha256),
        "snapshot_sha256": pair(snap_a, snap_b), "files": None, "note": None,
    }
    if sa.snapshot and sb.snapshot:
        result["files"] = _digest_diff(snapshot_digests(a.directory / sa.snapshot.file),
                                       snapshot_digests(b.directory / sb.snapshot.file))
    elif sa.snapshot or sb.snapshot:
        result["note"] = "one run is from a snapshot, the other from git"
    else:
        commits = _commit_files(a.record, b.record, env)
        patched = _digest_diff(_patch_sections(a, sa.patch_file), _patch_sections(b, sb.patch_file))
        if commits is None:
            result["note"] = "the two commits are not both in a repository here"
        else:
            result["files"] = sorted(set(commits) | set(patched))
    return result


def _digest_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return sorted(p for p in a.keys() | b.keys() if a.get(p) != b.get(p))


def _patch_sections(rec: Recorded, name: str | None) -> dict[str, bytes]:
    """Path -> the part of a recorded patch that changes it."""
    path = rec.directory / name if name else None
    if path is None or not path.is_file():
        return {}
    sections = {}
    for chunk in re.split(rb"(?m)^(?=diff --git )", path.read_bytes()):
        header = chunk.split(b"\n", 1)[0].decode("utf-8", "replace")
        if header.startswith("diff --git ") and " b/" in header:
            sections[header.rsplit(" b/", 1)[1]] = chunk
    return sections


def _commit_files(a: RunRecord, b: RunRecord, env: Mapping[str, str]) -> list[str] | None:
    ca, cb = a.source.resolved_commit, b.source.resolved_commit
    if ca is None or cb is None:
        return None if ca != cb else []
    if ca == cb:
        return []
    for where in _repositories(a, env) + _repositories(b, env):
        args = ["diff", "--name-only", "--no-renames", "--no-ext-diff", "--no-textconv",
                "--end-of-options", ca, cb, "--"]
        done = run_git(args, env, cwd=where) if (where / ".git").exists() else run_git(
            args, env, git_dir=where)
        if done.ok:
            return sorted(line for line in done.stdout.splitlines() if line)
    return None


def _repositories(record: RunRecord, env: Mapping[str, str]) -> list[Path]:
    """Repositories on this machine that may hold the commit: the local one, reprun's caches."""
    found = []
    for uri in (record.source.uri, record.source.git_remote):
        if not uri:
            continue
        if not is_remote(uri):
            path = file_url_path(uri) if uri.startswith("file://") else Path(uri)
            if path.is_dir():
                found.append(path)
        cached = cache_root(env) / "git" / "repos" / cache_name(uri)
        if cached.is_dir():
            found.append(cached)
    return found


def render_text(d: Json) -> str:
    """The diff for people: aligned columns, '*' marks what differs, unchanged entries counted."""
    rows: list[tuple[str, str, str, bool]] = [("run", d["runs"]["a"], d["runs"]["b"], False)]
    code = d["code"]
    rows.append(("code", "", "", False))
    for key in ("uri", "subdirectory", "commit", "patch_sha256", "snapshot_sha256"):
        rows.append(_row(f"  {key}", code[key]))
    files = code["files"]
    rows.append(("  files differing", "", ", ".join(files) if files else
                 code["note"] or "none", bool(files)))
    rows.append(("entry point", "", "", False))
    rows += [_row("  name", d["entry_point"]), _row("  command", d["command"])]
    rows += _mapping_rows("parameters", d["parameters"])
    env = d["environment"]
    rows.append(("environment", "", "", False))
    rows += [_row(f"  {k}", env[k]) for k in ("kind", "manager", "python", "lock_sha256")]
    rows += _mapping_rows("  packages", env["packages"], indent="    ")
    rows += [_row("backend", d["backend"]["name"])]
    rows += _mapping_rows("host", d["host"])
    rows += _mapping_rows("inputs", d["inputs"])
    out = d["outputs"]
    rows.append(("outputs", f"{out['same']} same", "", bool(out["changed"] or out["only_a"]
                                                            or out["only_b"])))
    rows += [(f"  {p}", "differs", "differs", True) for p in out["changed"]]
    rows += [(f"  {p}", "present", "-", True) for p in out["only_a"]]
    rows += [(f"  {p}", "-", "present", True) for p in out["only_b"]]
    rows += _mapping_rows("metrics", d["metrics"])
    rows += [_row(k.replace("_", " "), d[k]) for k in ("status", "exit_code", "duration_s")]
    return _align(rows)


def _row(label: str, p: Json) -> tuple[str, str, str, bool]:
    return label, _text(p["a"]), _text(p["b"]), not p["same"]


def _text(value: Any) -> str:
    if value is None:
        return "-"
    text = str(value)
    if re.fullmatch(r"[a-z0-9]+:[0-9a-f]{64}", text):
        return text[:text.index(":") + 13]
    return text[:12] if re.fullmatch(r"[0-9a-f]{40,64}", text) else text


def _mapping_rows(title: str, m: Json,
                  indent: str = "  ") -> list[tuple[str, str, str, bool]]:
    rows = [(title, f"{m['same']} same" if m["same"] else "", "", False)]
    rows += [(f"{indent}{k}", _text(a), _text(b), True) for k, (a, b) in m["changed"].items()]
    rows += [(f"{indent}{k}", "-", _text(v), True) for k, v in m["added"].items()]
    rows += [(f"{indent}{k}", _text(v), "-", True) for k, v in m["removed"].items()]
    return rows


def _align(rows: list[tuple[str, str, str, bool]]) -> str:
    width_l = max(len(r[0]) for r in rows)
    width_a = min(max(len(r[1]) for r in rows), 40)
    lines = [f"{'':<{width_l}}  {'A':<{width_a}}  B"]
    for label, a, b, differs in rows:
        mark = "  *" if differs else ""
        lines.append(f"{label:<{width_l}}  {a:<{width_a}}  {b}{mark}".rstrip())
    return "\n".join(lines)
