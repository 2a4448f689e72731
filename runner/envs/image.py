"""The ``docker`` manager: the environment is an image, used as it is (nothing is installed).

Used for docker_env projects and for projects without an environment that run with
``--backend docker``. The lock names the base image asked for; the run record's docker section pins
what it resolved to (image ids).
"""

from __future__ import annotations

from typing import ClassVar

from runner.envs.base import EnvSpec, Lock, ResolvedEnv


class ImageBuilder:
    kind: ClassVar[str] = "docker"

    def lock(self, spec: EnvSpec, refresh: bool) -> Lock:
        docker = spec.request.docker
        if docker is not None and docker.dockerfile:
            text = f"dockerfile: {docker.dockerfile}\n"
        elif docker is not None and docker.image:
            text = f"image: {docker.image}\n"
        else:
            text = "image: the base image of the run (see the record's backend section)\n"
        return Lock(self.kind, "docker-image.txt", text)

    def ensure(self, spec: EnvSpec, lock: Lock) -> ResolvedEnv:
        return ResolvedEnv(self.kind, lock, lock.sha256)
