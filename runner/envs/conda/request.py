"""A conda.yaml request made concrete, without importing rattler: channels, specs, pip lines, key.

The request key covers what decides a solve: the conda specs and pip lines (not ``name``, not the
file's layout or comments), the channels in effect (``--conda-channel`` overrides the file's;
credentials removed), the platform, the C library version and ``CONDA_OVERRIDE_*`` variables
(what virtual packages are detected from), and for the pip lines what the Python request key
covers (files they refer to, index settings). The key selects a cached lock, never a prefix.
A conda.yaml installed from PyPI (``--env-manager uv`` or ``virtualenv``): `runner.envs.conda.pypi`.
"""

from __future__ import annotations

import json
import platform
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner.envs.python import make_request
from runner.frozen import frozen
from runner.fsutil import sha256_bytes
from runner.redact import redact_url
from runner.spec.types import CondaEnvFile

KEY_VERSION = 1
DEFAULT_CHANNELS = ("conda-forge",)
_TOKEN = re.compile(r"/t/[^/]+/")
_NAME = re.compile(r"^\s*([A-Za-z0-9_.\-]+)")


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
