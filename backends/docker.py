"""The docker backend: bake the project into a derived image, run its command in a container.

Everything goes through the Docker SDK (no shell strings): the image is built or reused by content
(`backends.docker_image`), the container gets the run's mounts and variables, its output is streamed
into the terminal and the run's log, its exit code is passed through. Cancelling interrupts the
command, then stops the container (SIGTERM, SIGKILL after the grace period); the container is
removed afterwards unless it is to be kept.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import docker
from docker.errors import APIError, DockerException, NotFound
from docker.models.containers import Container
from docker.types import DeviceRequest
from docker.types import Mount as SdkMount

from backends import run_image
from backends.base import Outcome, RunHandle, RunRequest
from backends.container import OUTPUT_TARGET, ContainerSpec
from runner.errors import BackendError
from runner.record import BackendInfo, DockerInfo, Status, now

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
DOCKERFILE_NAME = run_image.SAVED_DOCKERFILE
BUILD_LOG = run_image.BUILD_LOG
POLL_S = 0.1


def connect(env: Mapping[str, str],
            also: str = "") -> tuple[docker.DockerClient, str | None]:
    """A client for the engine DOCKER_HOST names (or the default socket), and its version.

    ``also`` ends the hint of the error when no engine answers (another way out).
    """
    host = env.get("DOCKER_HOST") or DEFAULT_SOCKET
    try:
        client = docker.DockerClient.from_env(environment=dict(env))
        version = client.version().get("Version")
    except DockerException as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BackendError(
            f"no Docker engine answers at {host} ({reason[:200]})",
            hint="start one (dockerd), or point DOCKER_HOST at it, e.g. "
                 "DOCKER_HOST=unix:///run/docker.sock or DOCKER_HOST=tcp://127.0.0.1:2375"
                 + also,
        ) from None
    return client, str(version) if version else None


class DockerBackend:
    name: ClassVar[str] = "docker"

    def submit(self, request: RunRequest) -> RunHandle:
        spec = request.container
        if spec is None:
            raise BackendError("the docker backend was given no container settings")
        run_dir = request.run_dir or request.log_path.parent
        client, version = connect(request.env)
        info = _prepare_image(client, request, spec, run_dir)
        info = info.model_copy(update={"engine_version": version})
        container = _start(client, request, spec, info.image_id or info.image)
        try:
            info = info.model_copy(update={"container_id": container.id})
            return DockerHandle(request, client, container, info)
        except BaseException:  # e.g. Ctrl-C before the caller holds the handle
            with contextlib.suppress(DockerException):
                container.remove(force=True)
            raise


def _prepare_image(
    client: docker.DockerClient, request: RunRequest, spec: ContainerSpec, run_dir: Path
) -> DockerInfo:
    """Find or build the base and the derived image; the Dockerfile is saved beside the record."""
    image = run_image.prepare_run_image(client, spec, request.workdir, request.resolved_env,
                                        request.env, run_dir, request.notify)
    try:
        built = run_image.build_run_image(client, image, spec, run_dir, request.notify)
    finally:
        image.close()
    return DockerInfo(
        base_image=spec.base_label,
        base_image_id=image.base_id, image=built.tag, image_id=built.image_id,
        built=built.built, repo_digest=built.repo_digest, dockerfile=DOCKERFILE_NAME,
        build_log=BUILD_LOG if (run_dir / BUILD_LOG).exists() else None,
        container_name=_container_name(request.run_id), command=spec.argv(request.command),
        workdir=spec.workdir,
        volumes=[*(m.render() for m in spec.mounts), f"{request.output_dir}:{OUTPUT_TARGET}:rw"],
        env_names=spec.env_names(), network=spec.network, gpus=spec.gpus,
        shm_size=spec.shm_size, kept=spec.keep,
    )


def _container_name(run_id: str) -> str:
    return f"reprun-{run_id[:12]}"


def _start(
    client: docker.DockerClient, request: RunRequest, spec: ContainerSpec, image: str
) -> Container:
    mounts = [SdkMount(m.target, m.source, type=m.kind, read_only=m.read_only)
              for m in spec.mounts]
    mounts.append(SdkMount(OUTPUT_TARGET, str(request.output_dir), type="bind"))
    options: dict[str, Any] = {}
    if spec.gpus is not None:
        count = -1 if spec.gpus == "all" else int(spec.gpus)
        options["device_requests"] = [DeviceRequest(count=count, capabilities=[["gpu"]])]
    if spec.shm_size is not None:
        options["shm_size"] = spec.shm_size
    if spec.network is not None:
        options["network_mode"] = spec.network
    try:
        container = client.containers.create(
            image, command=spec.argv(request.command), working_dir=spec.workdir,
            environment=spec.container_env(request.run_id, request.env), mounts=mounts,
            name=_container_name(request.run_id), labels={"reprun.run_id": request.run_id},
            detach=True, **options,
        )
    except APIError as exc:
        raise BackendError(f"could not create the container: {exc.explanation or exc}") from None
    try:
        container.start()
    except BaseException as exc:
        with contextlib.suppress(DockerException):
            container.remove(force=True)
        if isinstance(exc, APIError):
            raise BackendError(
                f"could not start the container: {exc.explanation or exc}"
            ) from None
        raise
    return container


class DockerHandle:
    """A running container; its output goes to the log file and, if asked, the terminal."""

    def __init__(self, request: RunRequest, client: docker.DockerClient, container: Container,
                 info: DockerInfo) -> None:
        self.request = request
        self._client = client
        self._container = container
        self._info = info
        self._stop_signal: int | None = None
        self._hurry = threading.Event()
        self._outcome: Outcome | None = None
        self._result: dict[str, Any] = {}
        self.started_at = now()
        self._log = request.log_path.open("ab")
        self._log_lock = threading.Lock()
        self._pumps = [
            threading.Thread(target=self._follow, args=(stream,), name=f"reprun-docker-{stream}",
                             daemon=True)
            for stream in ("stdout", "stderr")
        ]
        for pump in self._pumps:
            pump.start()
        self._waiter = threading.Thread(target=self._wait_exit, name="reprun-docker-wait",
                                        daemon=True)
        self._waiter.start()

    def info(self) -> BackendInfo:
        return BackendInfo(name=DockerBackend.name, docker=self._info)

    def facts(self) -> Mapping[str, Any]:
        return {}  # everything is in info().docker

    def _follow(self, stream: str) -> None:
        """Copy one of the container's streams, as it comes, to the log and the terminal."""
        terminal: BinaryIO = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
        try:
            chunks = self._client.api.logs(
                str(self._container.id), stdout=stream == "stdout", stderr=stream == "stderr",
                stream=True, follow=True,
            )
            for chunk in chunks:
                self._write(chunk, terminal)
        except DockerException:
            pass

    def _write(self, chunk: bytes, terminal: BinaryIO) -> None:
        with self._log_lock:
            self._log.write(chunk)
            self._log.flush()
        if self.request.echo:
            terminal.write(chunk)
            terminal.flush()

    def _wait_exit(self) -> None:
        try:
            self._result = dict(self._container.wait())
        except DockerException as exc:
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
        for pump in self._pumps:
            pump.join(5.0)
        self._log.close()
        self._outcome = self._make_outcome()
        if not self.request.container or not self.request.container.keep:
            with contextlib.suppress(NotFound):
                self._container.remove(force=True)
        return self._outcome

    def _stop(self, first: int) -> None:
        """``first`` to the command, SIGTERM half-way through the grace period, then SIGKILL."""
        grace = self.request.grace_period
        for sig, until in ((first, grace / 2), (signal.SIGTERM, grace / 2)):
            with contextlib.suppress(DockerException):
                self._container.kill(signal=int(sig))
            waited = 0.0
            while self._waiter.is_alive() and waited < until and not self._hurry.is_set():
                self._waiter.join(POLL_S)
                waited += POLL_S
            if not self._waiter.is_alive():
                return
        with contextlib.suppress(DockerException):
            self._container.kill(signal="SIGKILL")

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
