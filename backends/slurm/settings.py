"""The Slurm backend config as a run uses it: a frozen dataclass, read without pydantic when warm.

`backends.slurm.config` (pydantic) is the truth and validates a config the first time; what it
accepted is kept in the cache (``REPRUN_CACHE_DIR/slurm-config/<key>.json``, the key a digest of
the config's text, the directory it is relative to and, for a file, its content), so that the
next run of the same config imports neither pydantic nor YAML. A test keeps the fields of
`Settings` equal to the model's.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.envs.cache import cache_root
from runner.frozen import frozen
from runner.fsutil import atomic_write_text

CACHE_DIR = "slurm-config"
VERSION = "1"  # of the cached form: a change of the model changes it


@frozen
class Settings:
    """A validated ``--backend-config`` of ``--backend slurm`` (see SlurmConfig for each key)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    gpus: str | None = None
    nodes: str | None = None
    constraint: str | None = None
    exclude: str | None = None
    extra_args: tuple[str, ...] = ()
    workdir: str | None = None
    env_manager: str | None = None
    start_timeout_seconds: float = 600.0
    poll_seconds: float = 1.0
    given: tuple[str, ...] = ()  # the keys the user set

    def recordable(self) -> dict[str, Any]:
        """The config as given, for the record."""
        values = {name: getattr(self, name) for name in self.given}
        if "extra_args" in values:
            values["extra_args"] = list(values["extra_args"])
        return values


def load_settings(value: str | None, cwd: Path, env: Mapping[str, str]) -> Settings:
    """``--backend-config`` validated: from the cache when this config was seen before."""
    if value is None or not value.strip():
        return Settings()
    return _load(value, cwd, cache_root(env) / CACHE_DIR)


@functools.lru_cache(maxsize=16)
def _load(value: str, cwd: Path, cache: Path) -> Settings:
    key = _key(value, cwd)
    entry = cache / f"{key}.json" if key else None
    if entry is not None:
        try:
            data = json.loads(entry.read_text(encoding="utf-8"))
            return _settings(data["values"], data["given"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    from backends.slurm.config import load_config

    model = load_config(value, cwd)
    values = model.model_dump(mode="json")
    settings = _settings(values, sorted(model.model_fields_set))
    if entry is not None:
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(entry, json.dumps({"values": values,
                                                 "given": list(settings.given)}),
                              durable=False)
        except OSError:
            pass  # a read-only cache: validated again next time
    return settings


def _key(value: str, cwd: Path) -> str | None:
    """The digest naming a config: inline text and its directory, or a file and its content."""
    digest = hashlib.sha256(f"{VERSION}\0{cwd}\0{value}".encode())
    if not value.lstrip().startswith("{"):
        try:
            digest.update((cwd / value).resolve().read_bytes())
        except OSError:
            return None  # the model's loader says what is wrong
    return digest.hexdigest()


def _settings(values: Mapping[str, Any], given: list[str]) -> Settings:
    fields = {name: values[name] for name in Settings.__dataclass_fields__
              if name in values and name != "given"}
    fields["extra_args"] = tuple(fields.get("extra_args") or ())
    return Settings(**fields, given=tuple(given))
