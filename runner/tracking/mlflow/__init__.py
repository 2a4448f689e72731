"""reprun and MLflow tracking servers, over their REST API (reprun never imports ``mlflow``).

- ``settings``: which MLflow tracking a run asked for (cheap: a run without tracking loads no more).
- ``client``: the tracking server's REST API on the standard library (``deadline``: the total
  time of one request).
- ``tags``: a run as MLflow data (tags, parameters, datasets).
- ``readback``: metrics between a run and its MLflow run, each value once.
- ``sink``: a run as an MLflow run, as ``mlflow run`` makes it; what fails is kept for later.
- ``sync``: ``reprun runs sync`` (what a run could not send) and ``runs push`` (past runs).

The names below are what the rest of reprun uses; each is loaded from its module on first use, so
importing the package loads nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.lazy import lazy_exports

if TYPE_CHECKING:
    from runner.tracking.mlflow.client import MlflowClient, Pair
    from runner.tracking.mlflow.settings import (
        ContainerTracking,
        TrackingOptions,
        for_container,
        for_pod,
        is_server,
        passed_on,
        tracking_options,
    )
    from runner.tracking.mlflow.sink import PENDING_FILE, Tracker
    from runner.tracking.mlflow.sync import push_run, sync_run
    from runner.tracking.mlflow.tags import mlflow_params, ms

_EXPORTS: dict[str, str] = {
    "ContainerTracking": "settings",
    "MlflowClient": "client",
    "PENDING_FILE": "sink",
    "Pair": "client",
    "Tracker": "sink",
    "TrackingOptions": "settings",
    "for_container": "settings",
    "for_pod": "settings",
    "is_server": "settings",
    "mlflow_params": "tags",
    "ms": "tags",
    "passed_on": "settings",
    "push_run": "sync",
    "sync_run": "sync",
    "tracking_options": "settings",
}
__all__ = [
    "PENDING_FILE",
    "ContainerTracking",
    "MlflowClient",
    "Pair",
    "Tracker",
    "TrackingOptions",
    "for_container",
    "for_pod",
    "is_server",
    "mlflow_params",
    "ms",
    "passed_on",
    "push_run",
    "sync_run",
    "tracking_options",
]

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
