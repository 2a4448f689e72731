"""MLflow's artifact proxy (``/api/2.0/mlflow-artifacts/artifacts/...``) on the run's outputs.

``<exp>/<run>/artifacts/<path>`` is a file of a run (reprun's run: ``outputs/mlflow/artifacts/``;
a nested run: ``outputs/mlflow/runs/<run>/artifacts/``) and ``<exp>/models/<m>/artifacts/<path>``
a file of a logged model (``outputs/mlflow/models/<name>/``). An upload is streamed to disk (any
size: the disk is the limit), into a temporary file renamed at the end, so that a broken upload
leaves no half file.
"""

from __future__ import annotations

import os
import shutil
from io import BufferedIOBase
from pathlib import Path
from typing import Any

from runner.tracking.mlflow.endpoint import checks
from runner.tracking.mlflow.endpoint.state import State

CHUNK = 1024 * 1024


def folder(state: State, path: str) -> tuple[Path, str]:
    """The folder an artifact path is under and the path inside it ('' for the folder)."""
    parts = path.strip("/").split("/")
    if len(parts) >= 4 and parts[1] == "models" and parts[3] == "artifacts":
        with state.lock:
            model = state.model(parts[2])
        return model.folder, "/".join(parts[4:])
    if len(parts) >= 3 and parts[2] == "artifacts":
        with state.lock:
            run = state.run(parts[1])
        return run.artifacts, "/".join(parts[3:])
    raise checks.not_found(f"No artifact location '{path}': reprun keeps artifacts under "
                           "<experiment>/<run>/artifacts and <experiment>/models/<model>/"
                           "artifacts")


def target(state: State, path: str) -> Path:
    base, inner = folder(state, path)
    return base / checks.relative_path(inner)


def upload(state: State, path: str, body: BufferedIOBase, length: int) -> None:
    """Store ``length`` bytes of ``body`` as the artifact ``path``."""
    with state.lock:
        state.writable(state.run_id)
    file = target(state, path)
    file.parent.mkdir(parents=True, exist_ok=True)
    if file.is_dir():
        raise checks.invalid(f"Invalid artifact path '{path}': it is a folder")
    partial = file.with_name(f".{file.name}.partial-{os.getpid()}-{id(body)}")
    try:
        with partial.open("wb") as out:
            left = length
            while left > 0:
                chunk = body.read(min(CHUNK, left))
                if not chunk:
                    raise checks.invalid(f"Upload of '{path}' ended after {length - left} of "
                                         f"{length} bytes")
                out.write(chunk)
                left -= len(chunk)
        partial.replace(file)
    finally:
        partial.unlink(missing_ok=True)


def listing(state: State, path: str) -> dict[str, Any]:
    """``{"files": [...]}`` of a folder (paths relative to it); ``{}`` for a file or nothing."""
    base, inner = folder(state, path)
    directory = base / checks.relative_path(inner) if inner else base
    if not directory.is_dir():
        return {}
    files = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(".") and ".partial-" in entry.name:
            continue
        name = entry.relative_to(directory).as_posix()
        if entry.is_dir():
            files.append({"path": name, "is_dir": True})
        else:
            files.append({"path": name, "is_dir": False, "file_size": entry.stat().st_size})
    return {"files": files}


def download(state: State, path: str) -> Path:
    file = target(state, path)
    if not file.is_file():
        raise checks.not_found(f"No artifact '{path}'")
    return file


def send(file: Path, out: BufferedIOBase) -> None:
    with file.open("rb") as handle:
        shutil.copyfileobj(handle, out, CHUNK)
