"""Which MLflow tracking a run asked for: cheap to import (a run without tracking loads nothing
more than this).

Tracking is on when ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` names an ``http(s)://`` server:
reprun then creates the MLflow run itself, as ``mlflow run`` does. Any other URI (``sqlite:``,
``file:``, a path, ``databricks``...) is passed on to the command, a relative one made absolute
against the caller's directory first, so that it never lands in a temporary checkout.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from runner.errors import UsageError
from runner.frozen import frozen

URI_VARIABLE = "MLFLOW_TRACKING_URI"


@frozen
class TrackingOptions:
    """What the command line (or the MLFLOW_* variables) asked for."""

    uri: str | None = None
    experiment_name: str | None = None
    experiment_id: str | None = None
    run_name: str | None = None
    log_outputs: bool = False
    reproduces: str | None = None  # the reprun run a reproduction reproduces


def tracking_options(env: Mapping[str, str], uri: str | None = None, experiment_name:
                     str | None = None, experiment_id: str | None = None,
                     run_name: str | None = None, log_outputs: bool = False) -> TrackingOptions:
    """The options given, completed by the MLFLOW_* variables; an experiment is named by name
    or by id, not both (as in ``mlflow run``); a command-line option outranks the variables."""
    if experiment_name and experiment_id:
        raise UsageError("--experiment-name and --experiment-id are mutually exclusive",
                         hint="give one of them")
    if not experiment_name and not experiment_id:
        experiment_name = env.get("MLFLOW_EXPERIMENT_NAME") or None
        experiment_id = env.get("MLFLOW_EXPERIMENT_ID") or None
        if experiment_name and experiment_id:
            raise UsageError("MLFLOW_EXPERIMENT_NAME and MLFLOW_EXPERIMENT_ID are both set; "
                             "they are mutually exclusive",
                             hint="unset one of them, or pass --experiment-name or "
                                  "--experiment-id")
    return TrackingOptions(uri=uri or env.get(URI_VARIABLE) or None,
                           experiment_name=experiment_name, experiment_id=experiment_id,
                           run_name=run_name, log_outputs=log_outputs)


def is_server(uri: str | None) -> bool:
    return uri is not None and uri.split(":", 1)[0].lower() in ("http", "https")


def absolute_uri(uri: str, cwd: Path) -> str:
    """A relative ``sqlite:///x.db``, ``file:x`` or plain path made absolute against ``cwd``."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rest = uri[len("sqlite:///"):]
        if rest and not rest.startswith(":memory:"):
            return f"sqlite:///{cwd / rest}"
        return uri
    if uri.startswith("file:"):
        rest = uri[len("file:"):]
        if rest.startswith("//"):
            return uri  # file:///abs or file://host/...
        path = Path(rest)
        return uri if path.is_absolute() else f"file://{cwd / path}"
    if ":" not in uri.split("/", 1)[0]:
        path = Path(uri).expanduser()
        return str(path if path.is_absolute() else cwd / path)
    return uri
