"""What ``reprun runs push`` sends of a run's captured MLflow logging (``RunRecord.captured``).

The logged parameters (those not declared: a declared one is already sent with the value the
run was given, and MLflow refuses to change a parameter), the tags, and the artifacts and model
folders, uploaded where the project logged them (``artifact path``; a model under
``models/<name>``, as MLflow 2 keeps it: the server gets no MLflow 3 logged-model entry).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner.record.types import RunRecord

BATCH = 100  # MLflow's limit of parameters or tags in one log-batch


def captured_ops(record: RunRecord, run_dir: Path) -> Iterator[dict[str, Any]]:
    """The session operations (runner.tracking.mlflow.sink) that send the captured data."""
    captured = record.captured
    if captured is None:
        return
    params = [(k, v) for k, v in captured.params.items() if k not in record.parameters]
    tags = [(k, v) for k, v in captured.tags.items() if not k.startswith("mlflow.")]
    for start in range(0, max(len(params), len(tags)), BATCH):
        yield {"op": "log_batch", "params": params[start:start + BATCH],
               "tags": tags[start:start + BATCH]}
    output_dir = Path(record.output_dir)
    folders = [(captured.artifacts, "")] if captured.artifacts else []
    folders += [(m.path, f"models/{Path(m.path).name}") for m in captured.models
                if captured.artifacts is None or not m.path.startswith(captured.artifacts + "/")]
    for folder, prefix in folders:
        base = output_dir / folder
        for output in record.outputs:
            file = output_dir / output.path
            if not file.is_relative_to(base) or not file.is_relative_to(run_dir):
                continue
            inner = file.relative_to(base).as_posix()
            yield {"op": "upload", "file": file.relative_to(run_dir).as_posix(),
                   "path": f"{prefix}/{inner}" if prefix else inner}
