"""reprun as the MLflow tracking server of its own run, when no tracking URI is named.

The project's unchanged ``mlflow`` client logs into the run reprun made: a small HTTP server on
127.0.0.1 (an ephemeral port, a per-run token), in reprun's own process, lives as long as the
command; what it receives goes into the run's record (``captured``), its metrics, and its
outputs. See docs/mlflow.md, "Without a server".

- ``checks``: MLflow's rules on keys and values, and its error answers (`ApiError`).
- ``state``: the experiments, runs, metric points and models of one run.
- ``api``: the REST calls answered (``/api/2.0/mlflow/...``).
- ``artifacts``: the artifact proxy (``/api/2.0/mlflow-artifacts/...``) on the output directory.
- ``http``: just enough HTTP/1.1 on ``socketserver`` (no ``http.server``: a run's start-up).
- ``server``: the endpoint's server, the token, the 404 for calls not answered.
- ``capture``: `Capture` (begin, the command's variables, stop, the record), `wanted`.
- ``podstore``: a Kubernetes pod's MLflow file store, come back with its outputs, read into the
  same record (a pod cannot reach the loopback; a detached run outlives reprun).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.tracking.mlflow.endpoint.capture import Capture, begin_for, wanted

__all__ = ["Capture", "begin_for", "wanted"]


def __getattr__(name: str) -> object:
    """Load an exported name from its module on first use."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from runner.tracking.mlflow.endpoint import capture

    value: object = getattr(capture, name)
    globals()[name] = value
    return value
