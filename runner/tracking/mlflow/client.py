"""A small client of the MLflow tracking server's REST API, on the standard library alone.

reprun never imports ``mlflow`` (its import alone takes seconds). This client speaks the few calls
``mlflow run`` makes (experiments get-by-name/create, runs create/log-batch/update/get, metric
history, log-inputs) and uploads artifacts through the server's ``mlflow-artifacts`` proxy.

Credentials are read as the MLflow client reads them: ``MLFLOW_TRACKING_TOKEN`` (Bearer),
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (Basic),
``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH`` and
``MLFLOW_TRACKING_CLIENT_CERT_PATH``. They go into request headers and the TLS context only: no
message, record or log ever holds them. ``MLFLOW_HTTP_REQUEST_TIMEOUT`` bounds each request
in all, not each wait for bytes (reprun's default is short, 10 s: a run never waits long on its
tracking server; a body sent gets its size at 1 MiB/s on top: `runner.tracking.mlflow.deadline`).
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import ssl
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from runner.errors import TrackingError
from runner.redact import redact_url

DEFAULT_TIMEOUT_S = 10.0
# The server's limits for one runs/log-batch (mlflow/utils/validation.py).
MAX_METRICS = 1000
MAX_PARAMS = 100
MAX_TAGS = 100
MAX_ENTITIES = 1000
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_KEY = 250
HISTORY_PAGE = 25000
TERMINAL = frozenset({"FINISHED", "FAILED", "KILLED"})

Pair = tuple[str, str]
Metric = dict[str, Any]


def is_http(uri: str) -> bool:
    return urlsplit(uri).scheme in ("http", "https")


class MlflowClient:
    """One tracking server, as ``MLFLOW_TRACKING_URI`` and the credential variables name it."""

    def __init__(self, uri: str, env: Mapping[str, str], timeout: float | None = None) -> None:
        parts = urlsplit(uri)
        # user:password@ in the URI is a credential too: it becomes Basic auth, never shown.
        netloc = parts.netloc.rpartition("@")[2]
        self.base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self.shown = redact_url(self.base)
        self.timeout = timeout if timeout is not None else _timeout(env)
        self._headers = _auth_headers(env, parts.username, parts.password)
        self._tls = _tls_context(env) if parts.scheme == "https" else None
        self._address = (parts.hostname or "", parts.port)
        self._prefix = parts.path.rstrip("/")
        self._connection: http.client.HTTPConnection | None = None

    # -- the calls --------------------------------------------------------------------------

    def experiment_id(self, name: str) -> tuple[str, bool]:
        """The id of experiment ``name``, created if missing (race-safe); True if created."""
        found = self._experiment_by_name(name)
        if found is not None:
            return found, False
        try:
            made = self.call("POST", "experiments/create", {"name": name})
            return str(made["experiment_id"]), True
        except TrackingError as exc:
            if exc.code != "RESOURCE_ALREADY_EXISTS":
                raise
        found = self._experiment_by_name(name)
        if found is None:
            raise TrackingError(f"experiment '{name}' exists and cannot be found on {self.shown}")
        return found, False

    def _experiment_by_name(self, name: str) -> str | None:
        try:
            answer = self.call("GET", "experiments/get-by-name", query={"experiment_name": name})
        except TrackingError as exc:
            if exc.code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        experiment = answer["experiment"]
        if experiment.get("lifecycle_stage") == "deleted":
            raise TrackingError(f"experiment '{name}' is deleted on {self.shown}",
                                hint="restore it in the MLflow UI, or choose another name")
        return str(experiment["experiment_id"])

    def create_run(self, experiment_id: str, tags: Sequence[Pair], start_ms: int,
                   run_name: str | None = None) -> dict[str, Any]:
        """The new run's ``info`` (run_id, artifact_uri, status...)."""
        body: dict[str, Any] = {"experiment_id": experiment_id, "start_time": start_ms,
                                "tags": _entries(tags[:MAX_TAGS], MAX_TAG_VALUE)}
        user = dict(tags).get("mlflow.user")
        if user:
            body["user_id"] = user  # as MLflow's client fills it from the tag
        if run_name:
            body["run_name"] = run_name
        info: dict[str, Any] = self.call("POST", "runs/create", body)["run"]["info"]
        if tags[MAX_TAGS:]:
            self.log_batch(info["run_id"], tags=tags[MAX_TAGS:])
        return info

    def log_batch(self, run_id: str, params: Sequence[Pair] = (),
                  metrics: Sequence[Metric] = (), tags: Sequence[Pair] = ()) -> None:
        """Everything, in as many runs/log-batch calls as the server's limits ask for."""
        for body in batches(params, metrics, tags):
            self.call("POST", "runs/log-batch", {"run_id": run_id, **body})

    def log_inputs(self, run_id: str, datasets: Sequence[Mapping[str, Any]]) -> None:
        if datasets:
            self.call("POST", "runs/log-inputs", {"run_id": run_id, "datasets": list(datasets)})

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.call("POST", "runs/set-tag", {"run_id": run_id, "key": key, "value": value})

    def get_run(self, run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self.call("GET", "runs/get", query={"run_id": run_id})["run"]
        return run

    def update_run(self, run_id: str, status: str, end_ms: int) -> None:
        self.call("POST", "runs/update", {"run_id": run_id, "status": status,
                                          "end_time": end_ms})

    def metric_history(self, run_id: str, key: str) -> Iterator[Metric]:
        """Every value logged for ``key``, page by page."""
        token: str | None = None
        while True:
            query = {"run_id": run_id, "metric_key": key, "max_results": str(HISTORY_PAGE)}
            if token:
                query["page_token"] = token
            answer = self.call("GET", "metrics/get-history", query=query)
            yield from answer.get("metrics", [])
            token = answer.get("next_page_token")
            if not token:
                return

    def upload(self, artifact_uri: str, path: str, file: Path) -> None:
        """PUT ``file`` at ``path`` under the run's artifacts, through the server's proxy."""
        base = proxy_path(artifact_uri)
        if base is None:
            raise TrackingError(
                f"the run's artifact store {artifact_uri} is not served by {self.shown}",
                hint="start the server with --serve-artifacts (the default) to store files")
        target = f"/api/2.0/mlflow-artifacts/artifacts/{base}/{quote(path)}"
        with file.open("rb") as body:
            self._send("PUT", target, body, file.stat().st_size, "application/octet-stream")

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.shown}/#/experiments/{experiment_id}/runs/{run_id}"

    # -- the wire -----------------------------------------------------------------------------

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None,
             query: Mapping[str, str] | None = None) -> dict[str, Any]:
        url = f"/api/2.0/mlflow/{path}"
        if query:
            url += "?" + urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        raw = self._send(method, url, data, len(data) if data else 0, "application/json")
        try:
            answer = json.loads(raw or b"{}")
        except ValueError:
            raise TrackingError(f"{self.shown} answered {method} {path} with no JSON "
                                "(is it an MLflow tracking server?)") from None
        if not isinstance(answer, dict):
            raise TrackingError(f"{self.shown} answered {method} {path} with {type(answer)}")
        return answer

    def _send(self, method: str, target: str, data: Any, length: int, kind: str) -> bytes:
        """One request on a kept-alive connection; a connection the server closed while idle
        is opened again once (nothing was processed on it)."""
        from runner.tracking.mlflow.deadline import Deadline, seconds_for

        headers = {**self._headers, "Content-Type": kind, "Content-Length": str(length)}
        where = target.split("?", maxsplit=1)[0]
        total = seconds_for(self.timeout, length)
        started = time.monotonic()
        for attempt in (1, 2):
            connection, reused = self._connect()
            left = total - (time.monotonic() - started)
            deadline = Deadline(connection, max(left, 0.0))
            try:
                with deadline:
                    connection.request(method, self._prefix + target, body=data,
                                       headers=headers)
                    response = connection.getresponse()
                    raw = response.read()
                if deadline.expired:  # the answer was cut off when its time was up
                    raise http.client.IncompleteRead(b"")
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if deadline.expired:
                    raise TrackingError(
                        f"the tracking server {self.shown} did not answer {method} {where} "
                        f"within {total:.4g} s", hint="is it overloaded? "
                        "MLFLOW_HTTP_REQUEST_TIMEOUT sets how long a request may take in all"
                    ) from None
                closed = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
                if not isinstance(exc, closed):
                    reason = str(exc) or type(exc).__name__
                    raise TrackingError(f"cannot reach the tracking server {self.shown}: "
                                        f"{reason}", hint="is it running? check "
                                        "MLFLOW_TRACKING_URI") from None
                if reused and attempt == 1:
                    if hasattr(data, "seek"):
                        data.seek(0)
                    continue
                raise TrackingError(f"the tracking server {self.shown} closed the connection",
                                    hint="is it running? check MLFLOW_TRACKING_URI") from None
            if response.status >= 400:
                raise _refused(response.status, response.reason, raw, method, where, self.shown)
            return raw
        raise AssertionError("unreachable")

    def _connect(self) -> tuple[http.client.HTTPConnection, bool]:
        if self._connection is not None:
            return self._connection, True
        host, port = self._address
        if self._tls is not None:
            self._connection = http.client.HTTPSConnection(host, port, timeout=self.timeout,
                                                           context=self._tls)
        else:
            self._connection = http.client.HTTPConnection(host, port, timeout=self.timeout)
        return self._connection, False

    def twin(self) -> MlflowClient:
        """The same server and credentials on a connection of its own (one per thread)."""
        twin = copy.copy(self)
        twin._connection = None
        return twin

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _refused(status: int, reason: str, raw: bytes, method: str, where: str,
             shown: str) -> TrackingError:
    try:
        detail = json.loads(raw or b"{}")
    except ValueError:
        detail = {}
    if not isinstance(detail, dict):
        detail = {}
    code = detail.get("error_code")
    message = str(detail.get("message") or reason or "")[:300]
    hint = ""
    if status in (401, 403):
        hint = "check MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD"
    question = ""
    if status in (404, 405, 501) and not code:  # MLflow's API answers its own error codes
        question = " (is this an MLflow tracking server? its REST API does not answer there)"
    return TrackingError(f"{shown} refused {method} {where}: HTTP {status}"
                         f"{' ' + code if code else ''}{': ' + message if message else ''}"
                         f"{question}", hint=hint, status=status, code=code)


def proxy_path(artifact_uri: str) -> str | None:
    """``mlflow-artifacts:/1/<run>/artifacts`` -> ``1/<run>/artifacts``; None if not proxied."""
    parts = urlsplit(artifact_uri)
    if parts.scheme != "mlflow-artifacts":
        return None
    return parts.path.strip("/")


def batches(params: Sequence[Pair], metrics: Sequence[Metric],
            tags: Sequence[Pair]) -> Iterator[dict[str, Any]]:
    """Bodies of runs/log-batch within the server's limits; values too long are cut as MLflow
    cuts them (params at 6000 characters, tags at 8000); keys too long cannot be sent."""
    params_left = _entries(params, MAX_PARAM_VALUE)
    tags_left = _entries(tags, MAX_TAG_VALUE)
    metrics_left = [m for m in metrics if len(m["key"]) <= MAX_KEY]
    while params_left or tags_left or metrics_left:
        body: dict[str, Any] = {}
        room = MAX_ENTITIES
        for name, items, limit in (("params", params_left, MAX_PARAMS),
                                   ("tags", tags_left, MAX_TAGS),
                                   ("metrics", metrics_left, MAX_METRICS)):
            take = min(limit, room, len(items))
            if take:
                body[name] = items[:take]
                del items[:take]
                room -= take
        yield body


def _entries(pairs: Iterable[Pair], limit: int) -> list[dict[str, str]]:
    return [{"key": k, "value": v[:limit]} for k, v in pairs if len(k) <= MAX_KEY]


def _timeout(env: Mapping[str, str]) -> float:
    try:
        value = float(env.get("MLFLOW_HTTP_REQUEST_TIMEOUT", DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S
    return value if value > 0 else DEFAULT_TIMEOUT_S


def _auth_headers(env: Mapping[str, str], user: str | None, password: str | None
                  ) -> dict[str, str]:
    token = env.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user = env.get("MLFLOW_TRACKING_USERNAME") or user
    password = env.get("MLFLOW_TRACKING_PASSWORD") or password
    if user and password:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    return {}


def _tls_context(env: Mapping[str, str]) -> ssl.SSLContext:
    try:
        return _context(env)
    except (OSError, ssl.SSLError) as exc:
        raise TrackingError(f"cannot use the TLS settings of MLFLOW_TRACKING_SERVER_CERT_PATH or "
                            f"MLFLOW_TRACKING_CLIENT_CERT_PATH: {exc}") from None


def _context(env: Mapping[str, str]) -> ssl.SSLContext:
    if env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in ("true", "1"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=env.get("MLFLOW_TRACKING_SERVER_CERT_PATH")
                                             or None)
    client_cert = env.get("MLFLOW_TRACKING_CLIENT_CERT_PATH")
    if client_cert:
        context.load_cert_chain(client_cert)
    return context
