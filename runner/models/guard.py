"""A run that a model version comes from is not deleted by accident (``runs delete --force``
deletes it; the version keeps its files, which the store holds by content)."""

from __future__ import annotations

from pathlib import Path

from runner.errors import UsageError
from runner.models.store import ModelStore


def refuse_model_runs(home: Path, run_ids: list[str]) -> None:
    """UsageError naming the first run of ``run_ids`` that registered a model version."""
    made = ModelStore(home).versions_from_runs(run_ids)
    if not made:
        return
    run_id, versions = next(iter(made.items()))
    more = f" (and {len(made) - 1} more run(s))" if len(made) > 1 else ""
    raise UsageError(f"run {run_id[:12]} made model version(s) {', '.join(versions[:5])}{more}",
                     hint="pass --force to delete it anyway (the versions keep their files)")
