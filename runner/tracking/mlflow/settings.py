"""Which MLflow tracking a run asked for: cheap to import (a run without tracking loads nothing
more than this).

Tracking is on when ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` names an ``http(s)://`` server:
reprun then creates the MLflow run itself, as ``mlflow run`` does. Any other URI (``sqlite:``,
``file:``, a path, ``databricks``...) is passed on to the command, a relative one made absolute
against the caller's directory first, so that it never lands in a temporary checkout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from runner.errors import UsageError
from runner.frozen import frozen

URI_VARIABLE = "MLFLOW_TRACKING_URI"
# What MLflow's client reads to authenticate (never saved; copied to a container or pod).
CREDENTIAL_VARIABLES = (
    "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "MLFLOW_TRACKING_CLIENT_CERT_PATH",
)


@frozen
class TrackingOptions:
    """What the command line (or the MLFLOW_* variables) asked for."""

    uri: str | None = None
    experiment_name: str | None = None
    experiment_id: str | None = None
    run_name: str | None = None
    log_outputs: bool = False
    reproduces: str | None = None  # the reprun run a reproduction reproduces
    parent_run_id: str | None = None  # the MLflow run of the sweep this run is a trial of


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


def passed_on(options: TrackingOptions, cwd: Path, notify: Callable[[str], None]
              ) -> dict[str, str]:
    """The variables for a command whose tracking URI is no server: reprun cannot make the run."""
    from runner.redact import redact_url

    uri = absolute_uri(options.uri or "", cwd)
    notify(f"mlflow: {redact_url(uri)} is no tracking server: reprun cannot create the MLflow "
           "run itself; the command gets MLFLOW_TRACKING_URI and makes its own")
    env = {URI_VARIABLE: uri}
    if options.experiment_id:
        env["MLFLOW_EXPERIMENT_ID"] = options.experiment_id
    elif options.experiment_name:
        env["MLFLOW_EXPERIMENT_NAME"] = options.experiment_name
    return env


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


CERT_TARGET = "/run/reprun/mlflow"  # where a container finds the TLS files named on the host


@frozen
class ContainerTracking:
    """What a Docker container needs to reach its tracking server: variables, network, extra
    /etc/hosts lines, and read-only bind mounts (host file, container path)."""

    env: Mapping[str, str]
    network: str | None
    extra_hosts: tuple[str, ...] = ()
    mounts: tuple[tuple[str, str], ...] = ()


def for_container(variables: Mapping[str, str], network: str | None, host_env: Mapping[str, str]
                  ) -> ContainerTracking:
    """The tracking settings of a Docker container.

    A server on this machine's loopback (``localhost``, ``127.0.0.1``) is reached from the
    container through the host's network: a container without a network of its own gets
    ``--network host`` (the server may then listen on 127.0.0.1); one on another network reaches
    the host as ``host.docker.internal`` (the engine's host gateway; the server must then listen
    on an address the container can reach, e.g. 0.0.0.0). The credential variables set here are
    passed too (their values never go into the record); a CA bundle or client certificate named
    by a ``*_CERT_PATH`` variable is mounted read-only and the variable names it there.
    """
    from urllib.parse import urlsplit, urlunsplit

    env = dict(variables)
    env.update({n: host_env[n] for n in CREDENTIAL_VARIABLES
                if host_env.get(n) and not n.endswith("CERT_PATH")})
    mounts = _cert_mounts(host_env)
    env.update({name: target for name, (_source, target) in mounts.items()})
    uri = env.get(URI_VARIABLE, "")
    parts = urlsplit(uri)
    binds = tuple(mounts.values())
    if not is_server(uri) or not _is_loopback(parts.hostname or "") or network == "host":
        return ContainerTracking(env, network, (), binds)
    if network is None:
        return ContainerTracking(env, "host", (), binds)
    netloc = parts.netloc.replace(parts.hostname or "", "host.docker.internal", 1)
    if parts.hostname == "::1":
        netloc = parts.netloc.replace("[::1]", "host.docker.internal", 1)
    env[URI_VARIABLE] = urlunsplit(parts._replace(netloc=netloc))
    return ContainerTracking(env, network, ("host.docker.internal:host-gateway",), binds)


CERT_FILES = {"MLFLOW_TRACKING_SERVER_CERT_PATH": "server-ca.pem",
              "MLFLOW_TRACKING_CLIENT_CERT_PATH": "client-cert.pem"}


def _cert_mounts(host_env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Variable -> (host file, container path) of the TLS files set here; a path that is no
    file is left out (the client then fails as it would on this machine, with its own error)."""
    mounts = {}
    for name, file in CERT_FILES.items():
        value = host_env.get(name)
        if value and Path(value).expanduser().is_file():
            mounts[name] = (str(Path(value).expanduser().resolve()), f"{CERT_TARGET}/{file}")
    return mounts


def for_pod(variables: Mapping[str, str], host_env: Mapping[str, str]
            ) -> tuple[dict[str, str], tuple[str, ...]]:
    """The tracking variables of a Kubernetes pod (``KUBE_MLFLOW_TRACKING_URI`` replaces the
    URI, as in MLflow) and the credential variables to copy from here (a Secret named in the
    backend config's ``secret_env`` takes their place; copied values are never saved)."""
    env = dict(variables)
    if host_env.get("KUBE_MLFLOW_TRACKING_URI"):
        env[URI_VARIABLE] = host_env["KUBE_MLFLOW_TRACKING_URI"]
    copies = tuple(n for n in CREDENTIAL_VARIABLES
                   if host_env.get(n) and not n.endswith("CERT_PATH"))
    return env, copies
