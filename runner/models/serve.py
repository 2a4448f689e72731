"""``models serve``: an MLflow-format version served by MLflow's own scoring server, run by the
interpreter of the environment the model was made in (not reprun's, which has no mlflow), on the
loopback unless told otherwise. The files are checked against their digests and copied to a
temporary directory first; the server is stopped with reprun (Ctrl-C)."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from runner.errors import UsageError
from runner.models.fetch import get
from runner.models.store import ModelStore
from runner.models.types import ModelVersion
from runner.process import GroupProcess, capture, stop_signals_to

Notify = Callable[[str], None]
GRACE_S = 10.0
FIND_MLFLOW = "import importlib.util, sys; sys.exit(importlib.util.find_spec('mlflow') is None)"


def server_python(version: ModelVersion) -> str:
    """The interpreter of the version's recorded environment; UsageError when it cannot serve."""
    label = f"{version.name} version {version.version}"
    if version.mlflow_model is None:
        raise UsageError(f"{label} is not an MLflow model (no MLmodel file)",
                         hint="'reprun models get' copies its files out instead")
    python = version.lineage.python_executable
    if not python or not Path(python).is_file():
        raise UsageError(f"{label}: the environment it was made in is gone ({python or 'none'})",
                         hint=f"make it again with 'reprun models reproduce {version.name}:"
                              f"{version.version}'")
    return python


def serve(store: ModelStore, version: ModelVersion, host: str, port: int,
          env: Mapping[str, str], notify: Notify) -> int:
    python = server_python(version)
    if host.startswith("-") or not host:
        raise UsageError(f"--host '{host}' is not an address", hint="e.g. 127.0.0.1")
    # The environment's bin first, as an activated environment has it (MLflow starts its
    # server's workers by name).
    child_env = {**env, "PATH": os.pathsep.join(
        p for p in (str(Path(python).parent), env.get("PATH", "")) if p)}
    if capture([python, "-c", FIND_MLFLOW], env=child_env, timeout=60).returncode != 0:
        raise UsageError(f"the environment of {version.name} version {version.version} has no "
                         f"mlflow ({python})",
                         hint="add mlflow to the project's environment to serve its models")
    with tempfile.TemporaryDirectory(prefix="reprun-serve-") as tmp:
        folder = Path(tmp) / "model"
        get(store, version, folder)
        argv = [python, "-m", "mlflow", "models", "serve", "-m", str(folder), "--host", host,
                "--port", str(port), "--env-manager", "local"]
        notify(f"serving {version.name} version {version.version} on http://{host}:{port} "
               f"with {python} (Ctrl-C stops it)")
        stop = threading.Event()
        group = GroupProcess(argv, Path(tmp), child_env, _echo)
        try:
            with stop_signals_to(lambda _signum, _frame: stop.set()):
                while (code := group.wait(0.2)) is None and not stop.is_set():
                    pass
                if code is None:
                    group.stop(signal.SIGINT, GRACE_S)
                    code = 0
        finally:
            group.close()
            group.finish_output(GRACE_S)
    return code


def _echo(name: str, chunk: bytes) -> None:
    stream = sys.stdout if name == "stdout" else sys.stderr
    stream.buffer.write(chunk)
    stream.flush()
