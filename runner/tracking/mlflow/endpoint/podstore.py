"""A pod's MLflow logging, read back from the file store it wrote into its output directory.

A Kubernetes pod cannot reach reprun's loopback endpoint, and a detached run outlives reprun's
process. So the pod's command gets ``MLFLOW_TRACKING_URI=file:<its REPRUN_OUTPUT_DIR>/
.mlflow-store`` (`pod_env`); the store comes back with the outputs, and `import_store` turns it
into the same `State` the endpoint fills, so the record is built by the same code
(`capture.with_captured`): params, stepped metrics (``metrics.jsonl``, source mlflow), tags, the
run name, nested runs, artifacts and models as outputs under ``outputs/mlflow/``. The raw store
is removed from the outputs.

The store is untrusted data: symlinks are never followed (they are removed), every name is
checked as MLflow checks a key, files have bounded sizes, and a malformed file is skipped with
a warning (never a traceback).

File store layout (MLflow 3): ``<experiment id>/meta.yaml``; ``<experiment id>/<run id>/``
with ``meta.yaml``, ``params/``, ``metrics/`` (lines "timestamp value step"), ``tags/`` and
``artifacts/``; ``<experiment id>/models/<model id>/`` with ``meta.yaml`` and ``artifacts/``.
Keys with a ``/`` are nested folders.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from runner.record.types import RunRecord
from runner.tracking.mlflow.endpoint import checks
from runner.tracking.mlflow.endpoint.checks import ApiError
from runner.tracking.mlflow.endpoint.state import ModelState, RunState, State

Notify = Callable[[str], None]
STORE_DIR = ".mlflow-store"
FACT = "mlflow_store"  # the backend fact saying the pod was given the store
MAX_SMALL_FILE = 64 * 1024  # a meta.yaml, a param or a tag value
MAX_METRIC_FILE = 16 * 1024 * 1024  # one metric's history
BATCH = 1000
STATUSES = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}


def pod_env(output_dir: str) -> dict[str, str]:
    """What a pod's MLflow client needs to log into a store that comes back with its outputs."""
    return {"MLFLOW_TRACKING_URI": f"file:{output_dir.rstrip('/')}/{STORE_DIR}",
            "MLFLOW_ALLOW_FILE_STORE": "true"}  # MLflow 3 refuses a file store without it


def wanted_for_pod(tracking_env: Mapping[str, str], env: Mapping[str, str]) -> bool:
    """Whether a pod gets the store: no tracking URI named, capture not switched off."""
    from runner.tracking.mlflow.endpoint.capture import wanted

    return not tracking_env.get("MLFLOW_TRACKING_URI") and \
        not env.get("MLFLOW_TRACKING_URI") and wanted(env)


def import_store(record: RunRecord, run_dir: Path, notify: Notify) -> RunRecord:
    """``record`` with what the pod logged into its store (which is then removed); unchanged
    for a run whose backend gave it none (the record's fact ``mlflow_store``)."""
    from runner.tracking.mlflow.endpoint.capture import with_captured

    output_dir = Path(record.output_dir)
    root = output_dir / STORE_DIR
    if not record.backend.facts.get(FACT) or not os.path.lexists(root):
        return record
    state = State(record.run_id, run_dir, output_dir, None, None)
    try:
        if root.is_symlink() or not root.is_dir():
            _warn(notify, root.name, "is not a folder; ignored")
        else:
            StoreReader(state, root, notify).read()
    finally:
        state.close()
        _remove(root)
    return with_captured(record, state, notify)


def _warn(notify: Notify, where: str, what: str) -> None:
    notify(f"warning: mlflow: the pod's store: {where} {what}")


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


class StoreReader:
    def __init__(self, state: State, root: Path, notify: Notify) -> None:
        self.state, self.root, self.notify = state, root, notify
        self.ids: dict[str, str] = {}  # the store's run id -> the State's
        self.full = False

    def warn(self, path: Path, what: str) -> None:
        _warn(self.notify, path.relative_to(self.root).as_posix(), what)

    def read(self) -> None:
        runs: list[tuple[Path, dict[str, Any]]] = []
        for experiment in _dirs(self.root):
            if not experiment.name.isdigit():
                continue
            meta = self.meta(experiment / "meta.yaml")
            name = meta.get("name")
            if isinstance(name, str) and name:
                self.state.experiments[experiment.name] = name
            for folder in _dirs(experiment):
                if folder.name != "models":
                    found = self.meta(folder / "meta.yaml")
                    if found:
                        runs.append((folder, found))
        main = _main(runs)
        for folder, meta in sorted(runs, key=lambda r: r[0] is not main):
            self.run(folder, meta, main=folder is main)
        for experiment in _dirs(self.root):
            if experiment.name.isdigit() and (experiment / "models").is_dir():
                for folder in _dirs(experiment / "models"):
                    self.model(folder, experiment.name)

    def meta(self, path: Path) -> dict[str, Any]:
        text = self.small(path)
        if text is None:
            return {}
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            self.warn(path, "is not YAML; skipped")
            return {}
        return data if isinstance(data, dict) else {}

    def small(self, path: Path, limit: int = MAX_SMALL_FILE) -> str | None:
        """A regular file's text (not a symlink, at most ``limit`` bytes), else None."""
        try:
            info = path.lstat()
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            self.warn(path, "is not a regular file; skipped")
            return None
        if info.st_size > limit:
            self.warn(path, f"is {info.st_size} bytes, over reprun's limit of {limit}; skipped")
            return None
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            self.warn(path, "is unreadable; skipped")
            return None

    def run(self, folder: Path, meta: dict[str, Any], main: bool) -> None:
        state = self.state
        experiment = str(meta.get("experiment_id", folder.parent.name))
        if experiment not in state.experiments:
            experiment = "0"
        if main:
            run = state.runs[state.run_id]
            run.experiment_id = experiment
            state.experiment_id = experiment
        else:
            run = RunState(folder.name, experiment, state.root / "runs" / folder.name / "artifacts")
            state.runs[folder.name] = run
        self.ids[folder.name] = run.run_id
        status = meta.get("status")
        run.status = STATUSES.get(status, "RUNNING") if isinstance(status, int) else "RUNNING"
        for field, value in (("start_time", meta.get("start_time")),
                             ("end_time", meta.get("end_time"))):
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(run, field, value)
        run.params = self.values(folder / "params", "param")
        run.tags = self.values(folder / "tags", "tag")
        parent = run.tags.get("mlflow.parentRunId")
        if parent in self.ids:
            run.tags["mlflow.parentRunId"] = self.ids[parent]
        name = run.tags.get("mlflow.runName") or meta.get("run_name")
        run.run_name = str(name) if name else run.run_name
        self.metrics(run, folder / "metrics")
        self.move(folder / "artifacts", run.artifacts)

    def values(self, folder: Path, what: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for path, name in self.files(folder, what):
            text = self.small(path)
            if text is not None:
                found[name] = text
        return found

    def files(self, folder: Path, what: str) -> Iterator[tuple[Path, str]]:
        """The files under ``folder`` (no symlink followed) and the key each one names."""
        if folder.is_symlink() or not folder.is_dir():
            return
        for here, dirs, names in os.walk(folder):
            base = Path(here)
            dirs[:] = [d for d in dirs if not (base / d).is_symlink()]
            for name in sorted(names):
                path = base / name
                key = path.relative_to(folder).as_posix()
                try:
                    checks.key(key, what)
                except ApiError:
                    self.warn(path, f"does not name a valid {what}; skipped")
                    continue
                yield path, key

    def metrics(self, run: RunState, folder: Path) -> None:
        for path, name in self.files(folder, "metric"):
            text = None if self.full else self.small(path, MAX_METRIC_FILE)
            if text is None:
                continue
            items, bad = [], 0
            # MLflow 3 logs a run's metric again when it links it to a model: one point kept
            for line in dict.fromkeys(text.splitlines()):
                parts = line.split()
                try:
                    items.append({"key": name, "value": float(parts[1]),
                                  "timestamp": int(parts[0]),
                                  "step": int(parts[2]) if len(parts) > 2 else 0})
                except (ValueError, IndexError):
                    bad += 1
            if bad:
                self.warn(path, f"has {bad} malformed line(s); skipped")
            self.log(run, path, items)

    def log(self, run: RunState, path: Path, items: list[dict[str, Any]]) -> None:
        for start in range(0, len(items), BATCH):
            try:
                self.state.log_metrics(run, items[start:start + BATCH])
            except ApiError as exc:
                self.warn(path, f"was not read whole: {exc.message}")
                if exc.code == "RESOURCE_LIMIT_EXCEEDED":
                    self.full = True
                return

    def model(self, folder: Path, experiment: str) -> None:
        meta = self.meta(folder / "meta.yaml")
        model_id = str(meta.get("model_id") or folder.name)
        name = meta.get("name")
        name = name if isinstance(name, str) and name else "model"
        target = self.state._model_folder(name, model_id)
        source = meta.get("source_run_id")
        source_id = self.ids.get(str(source)) if source else None
        model = ModelState(model_id, experiment, name, target, source_id,
                           status="LOGGED_MODEL_READY" if meta.get("status") == 2
                           else "LOGGED_MODEL_PENDING")
        self.state.models[model_id] = model
        self.move(folder / "artifacts", target)

    def move(self, source: Path, target: Path) -> None:
        """An artifacts folder into the outputs, its symlinks (and other odd files) removed."""
        if source.is_symlink() or not source.is_dir():
            return
        for here, dirs, names in os.walk(source):
            base = Path(here)
            for name in [*dirs, *names]:
                path = base / name
                if path.is_symlink() or not (path.is_dir() or path.is_file()):
                    self.warn(path, "is a symlink or a special file; removed")
                    path.unlink()
            dirs[:] = [d for d in dirs if (base / d).is_dir()]
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            self.warn(source, f"would replace {target.name}; skipped")
            return
        source.rename(target)


def _dirs(folder: Path) -> list[Path]:
    """The real folders (no symlinks) in ``folder``."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def _main(runs: list[tuple[Path, dict[str, Any]]]) -> Path | None:
    """The run that becomes reprun's: the first top-level run (no parent tag) to start."""
    def top(folder: Path) -> bool:
        return not (folder / "tags" / "mlflow.parentRunId").exists()

    tops = [(m.get("start_time") if isinstance(m.get("start_time"), int) else 0, f)
            for f, m in runs if top(f)]
    return min(tops, key=lambda t: (t[0], str(t[1])))[1] if tops else None
