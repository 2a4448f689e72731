"""The docker backend: bake the project into a derived image, run its command in a container.

The engine is spoken to through the light client `backends.docker.engine` (HTTP API, no shell
strings);
the docker SDK is loaded only when an image must be built or pulled. The image is built or reused
by content (`backends.docker.image`). The container gets the run's mounts and variables; as the
docker CLI does for ``docker run --rm``, reprun creates it, attaches to its output, waits for it,
then starts it: its output is streamed into the terminal and the run's log, its exit code is
passed through, and the engine removes it when it exits (``AutoRemove``) unless it is to be kept.
Cancelling interrupts the command, then stops the container (SIGTERM, SIGKILL after the grace
period).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from backends.base import Outcome, RunHandle, RunRequest
from backends.docker import run_image
from backends.docker.container import OUTPUT_TARGET, STREAM_TARGET, ContainerSpec
from backends.docker.engine import (
    STDOUT,
    Engine,
    EngineError,
    Response,
    connect,
    frames,
    wait_result,
)
from runner.errors import BackendError
from runner.record.types import BackendInfo, DockerInfo, Status, now
from runner.tracking.mlflow import ContainerTracking, for_container

ENDPOINT_MARK = "REPRUN_MLFLOW_ENDPOINT"  # the tracking variables are reprun's endpoint's

DOCKERFILE_NAME = run_image.SAVED_DOCKERFILE
BUILD_LOG = run_image.BUILD_LOG
POLL_S = 0.1
_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

__all__ = ["DockerBackend", "DockerHandle", "connect"]


class DockerBackend:
    name: ClassVar[str] = "docker"

    def submit(self, request: RunRequest) -> RunHandle:
        spec = request.container
        if spec is None:
            raise BackendError("the docker backend was given no container settings")
        run_dir = request.run_dir or request.log_path.parent
        engine, version = connect(request.env)
        info = _prepare_image(engine, request, spec, run_dir)
        info = info.model_copy(update={"engine_version": version})
        container = _create(engine, request, spec, info.image_id or info.image)
        try:
            output, waiting = _start(engine, container, spec.keep)
            info = info.model_copy(update={"container_id": container})
            return DockerHandle(request, engine, container, info, output, waiting)
        except BaseException:  # e.g. Ctrl-C before the caller holds the handle
            with contextlib.suppress(BackendError, OSError):
                engine.remove(container, force=True)
            raise


def _prepare_image(
    engine: Engine, request: RunRequest, spec: ContainerSpec, run_dir: Path
) -> DockerInfo:
    """Find or build the base and the derived image; the Dockerfile is saved beside the record."""
    image = run_image.prepare_run_image(engine, spec, request.workdir, request.resolved_env,
                                        request.env, run_dir, request.notify)
    try:
        built = run_image.build_run_image(engine, image, spec, run_dir, request.notify)
    finally:
        image.close()
    tracking = _tracking(request, spec)
    return DockerInfo(
        base_image=spec.base_label, base_image_replaces=spec.replaces,
        base_image_id=image.base_id, image=built.tag, image_id=built.image_id,
        built=built.built, repo_digest=built.repo_digest, dockerfile=DOCKERFILE_NAME,
        build_log=BUILD_LOG if (run_dir / BUILD_LOG).exists() else None,
        container_name=_container_name(request.run_id), command=spec.argv(request.command),
        workdir=spec.workdir,
        volumes=[*(m.render() for m in spec.mounts), f"{request.output_dir}:{OUTPUT_TARGET}:rw",
                 *_stream_volume(request), *(f"{s}:{t}:ro" for s, t in tracking.mounts)],
        env_names=list(dict.fromkeys([*spec.env_names(), *tracking.env])),
        network=tracking.network, gpus=spec.gpus, shm_size=spec.shm_size,
        kept=spec.keep,
    )


def _tracking(request: RunRequest, spec: ContainerSpec) -> ContainerTracking:
    """MLflow variables, network, extra hosts and TLS files that let the command reach its
    server."""
    if not request.tracking_env:
        return ContainerTracking({}, spec.network)
    if request.tracking_env.get(ENDPOINT_MARK) and spec.network not in (None, "host"):
        # reprun's own endpoint listens on the loopback only: a container on a network of its
        # own cannot reach it, and its MLflow client does what it does with no tracking URI.
        return ContainerTracking({}, spec.network)

    return for_container(request.tracking_env, spec.network, request.env)


def _stream_volume(request: RunRequest) -> list[str]:
    stream = request.metrics_stream
    return [] if stream is None else [f"{stream.parent}:{STREAM_TARGET}:rw"]


def _container_name(run_id: str) -> str:
    return f"reprun-{run_id[:12]}"


def shm_bytes(size: str) -> int:
    """``2g`` -> bytes (docker's units: b, k, m, g, powers of 1024; none means bytes)."""
    unit = size[-1].lower() if size and size[-1].isalpha() else "b"
    number = size[:-1] if size and size[-1].isalpha() else size
    return int(number) * _UNITS[unit]


def container_config(request: RunRequest, spec: ContainerSpec, image: str) -> dict[str, Any]:
    """The body of the engine's container create: command, variables, mounts and limits."""
    mounts = [{"Type": m.kind, "Source": m.source, "Target": m.target, "ReadOnly": m.read_only}
              for m in spec.mounts]
    mounts.append({"Type": "bind", "Source": str(request.output_dir), "Target": OUTPUT_TARGET,
                   "ReadOnly": False})
    stream = request.metrics_stream
    if stream is not None:  # the REPRUN_METRICS file's directory, so that appends reach the host
        mounts.append({"Type": "bind", "Source": str(stream.parent), "Target": STREAM_TARGET,
                       "ReadOnly": False})
    host: dict[str, Any] = {"Mounts": mounts, "AutoRemove": not spec.keep}
    if spec.gpus is not None:
        count = -1 if spec.gpus == "all" else int(spec.gpus)
        host["DeviceRequests"] = [{"Driver": "", "Count": count, "Capabilities": [["gpu"]]}]
    if spec.shm_size is not None:
        host["ShmSize"] = shm_bytes(spec.shm_size)
    tracking = _tracking(request, spec)
    mounts += [{"Type": "bind", "Source": source, "Target": target, "ReadOnly": True}
               for source, target in tracking.mounts]
    if tracking.network is not None:
        host["NetworkMode"] = tracking.network
    if tracking.extra_hosts:
        host["ExtraHosts"] = list(tracking.extra_hosts)
    env = spec.container_env(request.run_id, request.env,
                             stream.name if stream is not None else None)
    env.update(tracking.env)
    return {
        "Image": image, "Cmd": spec.argv(request.command), "WorkingDir": spec.workdir,
        "Env": [f"{name}={value}" for name, value in env.items()],
        "Labels": {"reprun.run_id": request.run_id},
        "AttachStdin": False, "AttachStdout": True, "AttachStderr": True, "Tty": False,
        "OpenStdin": False, "HostConfig": host,
    }


def _create(engine: Engine, request: RunRequest, spec: ContainerSpec, image: str) -> str:
    try:
        return engine.create_container(container_config(request, spec, image),
                                       name=_container_name(request.run_id))
    except EngineError as exc:
        raise BackendError(f"could not create the container: {exc.message}") from None


def _start(engine: Engine, container: str, keep: bool
           ) -> tuple[Response, Response]:
    """Attach to the output, wait (for the removal unless kept), start: no output is missed."""
    output = engine.attach(container)
    waiting: Response | None = None
    try:
        waiting = engine.wait(container, "next-exit" if keep else "removed")
        engine.start(container)
    except BaseException as exc:
        output.close()
        if waiting is not None:
            waiting.close()
        if isinstance(exc, EngineError):
            raise BackendError(f"could not start the container: {exc.message}") from None
        raise
    return output, waiting


class DockerHandle:
    """A running container; its output goes to the log file and, if asked, the terminal."""

    def __init__(self, request: RunRequest, engine: Engine, container: str, info: DockerInfo,
                 output: Response, waiting: Response) -> None:
        self.request = request
        self._engine = engine
        self._container = container
        self._info = info
        self._stop_signal: int | None = None
        self._hurry = threading.Event()
        self._outcome: Outcome | None = None
        self._result: dict[str, Any] = {}
        self.started_at = now()
        self._log = request.log_path.open("ab")
        self._pump = threading.Thread(target=self._follow, args=(output,),
                                      name="reprun-docker-output", daemon=True)
        self._pump.start()
        self._waiter = threading.Thread(target=self._wait_exit, args=(waiting,),
                                        name="reprun-docker-wait", daemon=True)
        self._waiter.start()

    def info(self) -> BackendInfo:
        return BackendInfo(name=DockerBackend.name, docker=self._info)

    def facts(self) -> Mapping[str, Any]:
        return {}  # everything is in info().docker

    def _follow(self, output: Response) -> None:
        """Copy the container's output, as it comes, to the log and the terminal."""
        try:
            for stream, chunk in frames(output):
                terminal = sys.stdout.buffer if stream == STDOUT else sys.stderr.buffer
                self._write(chunk, terminal)
        except (OSError):
            pass

    def _write(self, chunk: bytes, terminal: BinaryIO) -> None:
        self._log.write(chunk)
        self._log.flush()
        if self.request.echo:
            terminal.write(chunk)
            terminal.flush()

    def _wait_exit(self, waiting: Response) -> None:
        try:
            self._result = wait_result(waiting)
        except (OSError, ValueError) as exc:
            self._result = {"StatusCode": None, "Error": {"Message": str(exc)}}

    def cancel(self, first_signal: int = signal.SIGINT) -> None:
        if self._stop_signal is None:
            self._stop_signal = first_signal
        else:
            self._hurry.set()

    def status(self) -> Status:
        return self._outcome.status if self._outcome is not None else Status.RUNNING

    def wait(self) -> Outcome:
        if self._outcome is not None:
            return self._outcome
        while self._waiter.is_alive() and self._stop_signal is None:
            self._waiter.join(POLL_S)
        if self._stop_signal is not None and self._waiter.is_alive():
            self._stop(self._stop_signal)
        self._waiter.join()
        self._pump.join(5.0)
        self._log.close()
        self._outcome = self._make_outcome()
        kept = self.request.container is not None and self.request.container.keep
        if not kept and self._result.get("StatusCode") is None:
            # the engine removes it on exit (AutoRemove); make sure when the wait went wrong
            with contextlib.suppress(BackendError, OSError):
                self._engine.remove(self._container, force=True)
        self._engine.close()
        return self._outcome

    def _kill(self, sig: str | int) -> None:
        with contextlib.suppress(BackendError, OSError):
            self._engine.kill(self._container, sig)

    def _stop(self, first: int) -> None:
        """``first`` to the command, SIGTERM half-way through the grace period, then SIGKILL."""
        grace = self.request.grace_period
        for sig, until in ((first, grace / 2), (signal.SIGTERM, grace / 2)):
            self._kill(int(sig))
            waited = 0.0
            while self._waiter.is_alive() and waited < until and not self._hurry.is_set():
                self._waiter.join(POLL_S)
                waited += POLL_S
            if not self._waiter.is_alive():
                return
        self._kill("SIGKILL")

    def _make_outcome(self) -> Outcome:
        raw = self._result.get("StatusCode")
        code = int(raw) if raw is not None else None
        error = self._result.get("Error")
        facts: dict[str, str] = {}
        if self._stop_signal is not None:
            name = signal.Signals(self._stop_signal).name
            facts["signal"] = name
            return Outcome(Status.KILLED, code, self.started_at, now(), f"stopped by {name}",
                           facts)
        if code == 0:
            return Outcome(Status.FINISHED, 0, self.started_at, now(), None, facts)
        reason = f"command exited with code {code}" if code is not None else (
            f"the container could not be followed: {error}")
        return Outcome(Status.FAILED, code, self.started_at, now(), reason, facts)

    def logs(self) -> Iterator[str]:
        with self.request.log_path.open(encoding="utf-8", errors="replace") as handle:
            yield from handle
