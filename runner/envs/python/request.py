"""A python_env request made concrete: requirement lines anchored to the project, and its key.

MLflow keys its environments on the *unresolved* request and forgets the files ``-r`` points at;
here the request key covers the python_env file, the text of every ``-r``/``-c`` file
(recursively), the packaging metadata of local ``-e .`` projects, the interpreter asked for, the
platform and the index configuration in effect (credentials removed). The key selects a cached
lock, never an environment.
"""

from __future__ import annotations

import json
import platform
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

from runner.errors import Problem, SpecError
from runner.frozen import frozen
from runner.fsutil import sha256_bytes, sha256_file
from runner.redact import redact_url

KEY_VERSION = 1
FILE_OPTIONS = ("-r", "--requirement", "-c", "--constraint")
PATH_OPTIONS = ("-e", "--editable")
URL_OPTIONS = ("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--no-index")
LINK_OPTIONS = ("-f", "--find-links")
LOCAL_METADATA = ("pyproject.toml", "setup.py", "setup.cfg")
# uv settings that change what a resolution finds.
INDEX_VARIABLES = (
    "UV_INDEX", "UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS",
    "UV_INDEX_STRATEGY", "UV_PRERELEASE", "UV_RESOLUTION", "UV_EXCLUDE_NEWER",
    "UV_CONSTRAINT", "UV_OVERRIDE",
)


@frozen
class PythonRequest:
    """What to resolve: the interpreter asked for and requirement lines with absolute paths."""

    python: str | None
    lines: tuple[str, ...]
    local_paths: tuple[Path, ...]
    key_material: str

    @property
    def key(self) -> str:
        return sha256_bytes(self.key_material.encode("utf-8"))


def platform_tag() -> str:
    return f"{sys.platform}-{platform.machine()}"


def make_request(
    manager: str, python: str | None, lines: list[str], project_dir: Path, source: Path | None,
    env: Mapping[str, str], converted: Mapping[str, object] | None = None,
    target: str | None = None,
) -> PythonRequest:
    """Anchor ``lines`` to ``project_dir`` and compute the request key (which also covers
    ``converted``, how a conda.yaml became these lines, when it did)."""
    files: dict[str, str] = {}
    local: list[Path] = []
    anchored = [_anchor(line, project_dir, source, files, local) for line in lines]
    anchored = [line for line in anchored if line]
    material = {
        "v": KEY_VERSION,
        "manager": manager,
        "python": python or f"={platform.python_version()}",
        "platform": platform_tag(),
        "lines": anchored,
        "files": files,
        "local": {str(p): _local_digest(p) for p in local},
        "index": {k: redact_url(env[k]) for k in INDEX_VARIABLES if env.get(k)},
    }
    if converted is not None:
        material["converted"] = converted
    if target is not None:
        material["target"] = target  # resolved for another Python (an image's)
    key_material = json.dumps(material, sort_keys=True)
    return PythonRequest(python, tuple(anchored), tuple(local), key_material)


def _anchor(
    line: str, base: Path, source: Path | None, files: dict[str, str], local: list[Path]
) -> str:
    """One requirement line with its relative path made absolute; records what it refers to."""
    text = line.split(" #", 1)[0].strip()
    if not text or text.startswith("#"):
        return ""
    option, value = _split_option(text)
    if option in FILE_OPTIONS:
        path = _existing(base / value, source, text)
        _collect_file(path, files, local, source)
        return f"{option} {shlex.quote(str(path))}"
    if option in LINK_OPTIONS and _is_path(value):
        return f"{option} {shlex.quote(str(_existing(base / value, source, text)))}"
    if option in PATH_OPTIONS and _is_path(value):
        path = _existing(base / value, source, text)
        local.append(path)
        return f"{option} {shlex.quote(str(path))}"
    if option is None and _is_path(text):
        path = _existing(base / text, source, text)
        local.append(path)
        return shlex.quote(str(path))
    return text


def _split_option(text: str) -> tuple[str | None, str]:
    if not text.startswith("-"):
        return None, text
    first = text.split(maxsplit=1)[0]
    head, sep, rest = text.partition("=" if first.startswith("--") and "=" in first else " ")
    if not sep and len(head) > 2 and head[1] != "-":
        return head[:2], head[2:].strip()  # -rfile
    return head, rest.strip()


def _is_path(value: str) -> bool:
    return value.startswith((".", "/", "~")) or value == "."


def _existing(path: Path, source: Path | None, line: str) -> Path:
    path = path.expanduser().resolve()
    if not path.exists():
        raise SpecError([Problem(source, "dependencies", f"'{line}': {path} does not exist",
                                 hint="paths are relative to the project directory")])
    return path


def _collect_file(
    path: Path, files: dict[str, str], local: list[Path], source: Path | None
) -> None:
    """Record a requirements file's content, following its own ``-r``/``-c`` lines."""
    if str(path) in files:
        return
    files[str(path)] = sha256_file(path)
    for raw in path.read_text(encoding="utf-8").splitlines():
        text = raw.split(" #", 1)[0].strip()
        option, value = _split_option(text)
        if option in FILE_OPTIONS:
            _collect_file(_existing(path.parent / value, path, text), files, local, source)
        elif (option in PATH_OPTIONS and _is_path(value)) or (option is None and _is_path(text)):
            local.append((path.parent / (value if option else text)).resolve())


def _local_digest(path: Path) -> dict[str, str]:
    """The packaging metadata of a local project: what decides its dependencies."""
    if path.is_file():
        return {path.name: sha256_file(path)}
    return {name: sha256_file(path / name) for name in LOCAL_METADATA if (path / name).is_file()}


def is_url_option(line: str) -> bool:
    option, _ = _split_option(line)
    return option in URL_OPTIONS
