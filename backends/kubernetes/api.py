"""Talking to the Kubernetes API: credentials, retries with backoff, errors in one line.

The only module (with `backends.kubernetes.watch`) that imports the ``kubernetes`` library.
Transient answers (429, 5xx, 410 Gone, dropped connections) are retried with exponential backoff
(``Retry-After`` is honoured); permanent ones (403, 404, 409, 422...) become a `BackendError`
carrying the server's own message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from runner.errors import BackendError
from runner.extras import needs_extra

with needs_extra("kubernetes", "Kubernetes runs"):
    import urllib3
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException

T = TypeVar("T")
TRANSIENT = frozenset({410, 429, 500, 502, 503, 504})
ATTEMPTS = 6
FIRST_DELAY_S = 0.2
MAX_DELAY_S = 5.0
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass
class Cluster:
    """An API connection and the facts the record keeps about it."""

    api: client.ApiClient
    server: str
    context: str | None
    default_namespace: str

    @property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)


def connect(context: str | None) -> Cluster:
    """From the kubeconfig (``KUBECONFIG`` or ~/.kube/config, ``context``), else in-cluster."""
    try:
        contexts, active = config.list_kube_config_contexts()
    except (ConfigException, OSError) as exc:
        if context:
            raise BackendError(f"kube-context '{context}': no kubeconfig could be read ({exc})",
                               hint="set KUBECONFIG or remove kube-context") from None
        return _in_cluster()
    chosen = next((c for c in contexts if c["name"] == context), None) if context else active
    if chosen is None:
        names = ", ".join(c["name"] for c in contexts)
        raise BackendError(f"kube-context '{context}' is not in the kubeconfig",
                           hint=f"use one of: {names}")
    try:
        api = config.new_client_from_config(context=chosen["name"])
    except (ConfigException, OSError, ValueError) as exc:
        raise BackendError(f"kubeconfig context '{chosen['name']}' cannot be used: {exc}") from None
    namespace = chosen.get("context", {}).get("namespace") or "default"
    return Cluster(api, api.configuration.host, chosen["name"], namespace)


def _in_cluster() -> Cluster:
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except ConfigException:
        raise BackendError(
            "no Kubernetes credentials: no kubeconfig (KUBECONFIG or ~/.kube/config) and not "
            "running inside a cluster", hint="set KUBECONFIG or give kube-context",
        ) from None
    namespace = "default"
    if IN_CLUSTER_NAMESPACE.is_file():
        namespace = IN_CLUSTER_NAMESPACE.read_text().strip() or namespace
    return Cluster(client.ApiClient(configuration), configuration.host, None, namespace)


def call(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, retried while the API answers with a transient error."""
    delay = FIRST_DELAY_S
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status not in TRANSIENT or attempt == ATTEMPTS:
                raise api_error(what, exc) from None
            wait = _retry_after(exc) or delay
        except (urllib3.exceptions.HTTPError, ConnectionError) as exc:
            if attempt == ATTEMPTS:
                raise BackendError(f"cannot reach the Kubernetes API to {what}: {exc}",
                                   hint="check the cluster address and the network") from None
            wait = delay
        time.sleep(min(wait, MAX_DELAY_S))
        delay = min(delay * 2, MAX_DELAY_S)
    raise AssertionError("unreachable")


def _retry_after(exc: ApiException) -> float | None:
    value = (exc.headers or {}).get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def server_message(exc: ApiException) -> str:
    """The ``message`` of the Status the server sent, on one line."""
    message = ""
    try:
        body = json.loads(exc.body) if exc.body else {}
        message = str(body.get("message") or "")
    except (ValueError, AttributeError):
        message = str(exc.body or "")
    return " ".join((message or str(exc.reason or "")).split())


class NotFound(BackendError):
    """The API answered 404: the object (or namespace) does not exist."""


class Conflict(BackendError):
    """The API answered 409: an object of that name exists already."""


def api_error(what: str, exc: ApiException) -> BackendError:
    """A one-line error naming what was tried, the HTTP status and the server's message."""
    hints = {
        401: "the credentials of the kubeconfig were refused; refresh them",
        403: "the kubeconfig user lacks the permission (RBAC); ask for it in that namespace",
        404: "check the namespace and that the object still exists",
        409: "an object of that name exists already",
        422: "the backend config or the Job template produces an invalid Job; fix the field named",
    }
    message = server_message(exc)
    kind = {404: NotFound, 409: Conflict}.get(exc.status or 0, BackendError)
    return kind(f"Kubernetes API refused to {what} ({exc.status} {exc.reason}): {message}",
                        hint=hints.get(exc.status or 0, ""))


def request(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call an API method and return the JSON answer as plain data (camelCase keys)."""

    def once() -> dict[str, Any]:
        resp = fn(*args, _preload_content=False, **kwargs)
        try:
            if not 200 <= resp.status < 300:
                raise ApiException(http_resp=resp)
            data = json.loads(resp.data or b"{}")
        finally:
            resp.release_conn()
        return data if isinstance(data, dict) else {}

    return call(what, once)
