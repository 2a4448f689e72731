"""A conda.yaml request made concrete, without importing rattler: channels, specs, pip lines, key.

The request key covers what decides a solve: the conda specs and pip lines (not ``name``, not the
file's layout or comments), the channels in effect (``--conda-channel`` overrides the file's;
credentials removed), the platform, the C library version and ``CONDA_OVERRIDE_*`` variables
(what virtual packages are detected from), and for the pip lines what the Python request key
covers (files they refer to, index settings). The key selects a cached lock, never a prefix.

Also here: MLflow's conversion of a conda.yaml into a python_env for ``--env-manager uv`` or
``virtualenv``, which refuses, instead of warning, when conda packages would be dropped.
"""

from __future__ import annotations

import json
import platform
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner.envs.pyreq import make_request
from runner.errors import NotSupportedError, Problem, SpecError
from runner.frozen import frozen
from runner.fsutil import sha256_bytes
from runner.redact import redact_url
from runner.spec.types import CondaEnvFile, PythonEnvFile

KEY_VERSION = 1
DEFAULT_CHANNELS = ("conda-forge",)
_TOKEN = re.compile(r"/t/[^/]+/")
_NAME = re.compile(r"^\s*([A-Za-z0-9_.\-]+)")
_PYTHON_SPEC = re.compile(r"^\s*python\s*(?:(==|=|>=|<=|~=|<|>|!=)\s*|\s)?\s*([0-9][0-9.*]*)?\s*$")
BUILD_TOOLS = ("pip", "setuptools", "wheel")


@frozen
class CondaRequest:
    """What to solve and install: conda specs, channels, pip lines (anchored), and the key."""

    file: Path | None
    specs: tuple[str, ...]
    channels: tuple[str, ...]
    pip_lines: tuple[str, ...]
    subdir: str
    variables: tuple[tuple[str, str], ...]
    key: str


def redact_channel(url: str) -> str:
    """A channel URL without credentials: no user:password, no anaconda.org ``/t/<token>/``."""
    return _TOKEN.sub("/t/<TOKEN>/", redact_url(url))


def current_subdir() -> str:
    """The conda platform of this machine (linux-64, linux-aarch64, osx-arm64, win-64...)."""
    machine = platform.machine().lower()
    arch = {"x86_64": "64", "amd64": "64", "aarch64": "aarch64", "arm64": "arm64",
            "ppc64le": "ppc64le", "s390x": "s390x"}.get(machine, machine)
    system = {"linux": "linux", "darwin": "osx", "win32": "win"}.get(sys.platform, sys.platform)
    if system == "osx" and arch == "aarch64":
        arch = "arm64"
    return f"{system}-{arch}"


def make_conda_request(
    env_file: CondaEnvFile, source: Path | None, project_dir: Path,
    channel_override: Sequence[str], env: Mapping[str, str],
) -> CondaRequest:
    channels = tuple(channel_override) or tuple(env_file.channels) or DEFAULT_CHANNELS
    specs = tuple(env_file.conda_specs)
    pip = make_request("conda", None, env_file.pip, project_dir, source, env) if env_file.pip \
        else None
    subdir = current_subdir()
    material = {
        "v": KEY_VERSION,
        "specs": list(specs),
        "channels": [redact_channel(c) for c in channels],
        "subdir": subdir,
        "libc": list(platform.libc_ver()),
        "overrides": {k: v for k, v in sorted(env.items()) if k.startswith("CONDA_OVERRIDE_")},
        "pip": json.loads(pip.key_material) if pip else None,
        "variables": env_file.variables,
    }
    key = sha256_bytes(json.dumps(material, sort_keys=True).encode())
    return CondaRequest(source, specs, channels, pip.lines if pip else (), subdir,
                        tuple(sorted(env_file.variables.items())), key)


def spec_name(spec: str) -> str:
    match = _NAME.match(spec)
    return match.group(1).lower() if match else spec.strip().lower()


def to_python_env(env_file: CondaEnvFile, source: Path | None, manager: str) -> PythonEnvFile:
    """The python/pip part of a conda.yaml as a python_env, as MLflow converts it.

    Refuses when the file asks for conda packages other than python, pip, setuptools and wheel
    (MLflow drops them with a warning), naming every one that would be lost.
    """
    python: str | None = None
    build: list[str] = []
    dropped: list[str] = []
    for spec in env_file.conda_specs:
        name = spec_name(spec)
        if name == "python":
            python = _python_version(spec, source)
        elif name in BUILD_TOOLS:
            build.append(_pip_spec(spec))
        else:
            dropped.append(spec)
    if dropped:
        listed = ", ".join(f"'{d}'" for d in dropped)
        raise NotSupportedError(
            f"--env-manager {manager} cannot install the conda package(s) {listed} of "
            f"{source or 'conda.yaml'}: only python and its pip: list carry over",
            hint="use --env-manager conda (the default for conda projects), or move them to "
                 "the pip: list if they are on PyPI",
        )
    return PythonEnvFile(python=python, build_dependencies=build, dependencies=env_file.pip)


def _python_version(spec: str, source: Path | None) -> str | None:
    match = _PYTHON_SPEC.match(spec)
    if match is None or (match.group(1) or "=") not in ("=", "==") or (
            match.group(1) and not match.group(2)):
        raise SpecError([Problem(source, "dependencies",
                                 f"'{spec}': a python converted for uv or virtualenv must be "
                                 "pinned with = or == (python=3.11)",
                                 hint="pin it, or use --env-manager conda")])
    version = match.group(2)
    return version.rstrip(".*") if version else None


def _pip_spec(spec: str) -> str:
    """``pip=24.0`` (conda) -> ``pip==24.0`` (pip)."""
    name = spec_name(spec)
    rest = spec.strip()[len(name):].strip()
    if rest.startswith("=") and not rest.startswith("=="):
        rest = "=" + rest
    return f"{name}{rest}"
