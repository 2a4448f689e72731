"""What ``models list --json`` and ``models show --json`` print, and the web view answers: one
function each, so the two faces cannot differ."""

from __future__ import annotations

from typing import Any

from runner.models.names import Ref
from runner.models.store import ModelStore
from runner.models.types import ModelVersion

Json = dict[str, Any]


def model_list(store: ModelStore) -> list[Json]:
    """One row per model: its versions, its latest version and its aliases (from the summary
    each change writes; made from the versions when there is none)."""
    rows = []
    for name in store.names():
        row = store.summary(name) or store.make_summary(name)
        if row is not None:
            rows.append(row)
    return rows


def model_show(store: ModelStore, ref: Ref) -> Json:
    """A model (its versions, aliases and their history), or one version in full."""
    if ref.one_version:
        return version_json(store, store.resolve(ref))
    store.resolve(ref)  # the model exists
    aliases = store.aliases(ref.name)
    versions = [store.version(ref.name, n) for n in store.versions(ref.name)]
    return {
        "name": ref.name, "aliases": aliases,
        "versions": [_brief(v, aliases) for v in versions],
        "alias_history": [m.model_dump(mode="json") for m in store.history(ref.name)],
    }


def version_json(store: ModelStore, version: ModelVersion) -> Json:
    data = version.model_dump(mode="json")
    data["aliases"] = _aliases_of(store.aliases(version.name), version.version)
    return data


def _brief(version: ModelVersion, aliases: dict[str, int]) -> Json:
    return {
        "version": version.version, "created_at": _time(version), "run_id": version.run_id,
        "runs": version.runs, "digest": version.digest, "size": version.size,
        "aliases": _aliases_of(aliases, version.version), "description": version.description,
        "metrics": version.metrics,
    }


def _aliases_of(aliases: dict[str, int], number: int) -> list[str]:
    return sorted(a for a, n in aliases.items() if n == number)


def _time(version: ModelVersion) -> str:
    text = version.created_at.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def version_lines(data: Json) -> list[str]:
    """A version (as `version_json` gives it) for people."""
    lineage = data["lineage"]
    lines = [
        f"model:       {data['name']} version {data['version']}"
        + (f"  @{', @'.join(data['aliases'])}" if data["aliases"] else ""),
        f"registered:  {data['created_at']} by {data['created_by']}",
        f"run:         {data['run_id']}" + _more_runs(data["runs"]),
        f"path:        {data['path'] or '(all outputs)'} ({data['kind']}, {len(data['files'])} "
        f"file(s), {data['size']} bytes)",
        f"digest:      {data['digest']}",
    ]
    if data["description"]:
        lines.append(f"description: {data['description']}")
    for key, value in sorted(data["tags"].items()):
        lines.append(f"tag:         {key}={value}")
    for key, value in sorted(data["metrics"].items()):
        lines.append(f"metric:      {key} = {value:g}")
    model = data["mlflow_model"]
    if model:
        lines.append(f"flavors:     {', '.join(model['flavors']) or '-'}")
        for part, text in sorted((model["signature"] or {}).items()):
            lines.append(f"signature:   {part}: {text}")
    lines += _lineage_lines(lineage)
    mlflow = data.get("mlflow")
    if mlflow:
        state = f"version {mlflow['version']}" if mlflow["version"] else (
            f"not created: {mlflow['error']}")
        lines.append(f"mlflow:      {mlflow['tracking_uri']} {state}")
    return lines


def _lineage_lines(lineage: Json) -> list[str]:
    commit = lineage["commit"] or "-"
    dirty = " + uncommitted changes (patch sha256 " + str(lineage["patch_sha256"])[:12] + ")" \
        if lineage["dirty"] else ""
    lines = [
        f"lineage:     {lineage['project']} / {lineage['entry_point']}, commit {commit}{dirty}",
        f"environment: {lineage['env_manager'] or '-'}, python {lineage['python_version'] or '-'}"
        + (f", lock {lineage['lock_file']} (sha256 {str(lineage['lock_sha256'])[:12]})"
           if lineage["lock_file"] else ""),
    ]
    if lineage["snapshot_sha256"]:
        lines.append(f"snapshot:    sha256 {lineage['snapshot_sha256'][:12]}")
    for param, value in sorted(lineage["parameters"].items()):
        lines.append(f"parameter:   {param}={value}")
    for item in lineage["inputs"]:
        made = f" <- run {', '.join(r[:8] for r in item['produced_by'])}" \
            if item["produced_by"] else ""
        lines.append(f"input:       {item['name']} {item['digest'] or '-'}{made}")
    return lines


def _more_runs(runs: list[str]) -> str:
    if len(runs) < 2:
        return ""
    return f" (made again by {len(runs) - 1} more run(s): {', '.join(r[:8] for r in runs[1:])})"
