"""The Python of a base image, asked of the image itself and remembered by image id.

A Docker run installs a Python lock into a virtual environment made by the base image's
``python3``; that interpreter, not the host's, runs the command. `image_python` asks it once per
image id (a short container without network: ``python3 -c ...``) and keeps the answer under the
cache root, so that the lock is resolved for that version and the record names it. An image
without ``python3`` gives None (the lock is then resolved for the host's Python, as before).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path

from backends.docker.engine import STDOUT, Engine, EngineError, frames, wait_result
from runner.envs.cache import cache_root
from runner.fsutil import atomic_write_text

PROBE = "import platform, sys; print(platform.python_version(), sys.executable)"
CACHE_DIR = "image-python"
MAX_OUTPUT = 4096


def image_python(engine: Engine, image_id: str, env: Mapping[str, str]) -> str | None:
    """The Python version of image ``image_id`` (cached by id), or None without ``python3``."""
    path = _cache_file(env, image_id)
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return str(json.loads(path.read_text(encoding="utf-8"))["version"])
    answer = _ask(engine, image_id)
    if answer is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"image_id": image_id, "version": answer[0],
                                            "executable": answer[1]}) + "\n", durable=False)
    return answer[0] if answer is not None else None


def _cache_file(env: Mapping[str, str], image_id: str) -> Path:
    name = image_id.replace(":", "-").replace("/", "-")
    return cache_root(env) / CACHE_DIR / f"{name}.json"


def _ask(engine: Engine, image_id: str) -> tuple[str, str] | None:
    """Run ``python3 -c PROBE`` in a short container of the image; (version, executable)."""
    config = {"Image": image_id, "Entrypoint": ["python3", "-c", PROBE], "Cmd": [],
              "AttachStdout": True, "AttachStderr": True, "NetworkDisabled": True,
              "HostConfig": {"NetworkMode": "none"}}
    container = engine.create_container(config)
    try:
        output = engine.attach(container)
        waiting = engine.wait(container)
        try:
            engine.start(container)
        except EngineError:  # no python3 in the image: the entrypoint cannot start
            output.close()
            waiting.close()
            return None
        text = b"".join(data for kind, data in frames(output) if kind == STDOUT)[:MAX_OUTPUT]
        status = wait_result(waiting).get("StatusCode")
    finally:
        engine.remove(container)
    words = text.decode("utf-8", "replace").split()
    if status != 0 or len(words) != 2 or not words[0][:1].isdigit():
        return None
    return words[0], words[1]
