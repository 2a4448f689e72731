"""The model registry under REPRUN_HOME: ``models/``.

```
models/<name>/versions/<n>.json     a version (runner.models.types.ModelVersion), never rewritten
                                     except to add a run that made the same files
models/<name>/aliases.json          alias -> version
models/<name>/alias-history.jsonl   every move of an alias: who, when, from which version
models/<name>/summary.json         what 'models list' shows of it, rewritten at each change
models/<name>/.lock                 held while a version number is chosen or an alias moved
models/.blobs/<hex>                 the files of every version, by their BLAKE3 digest
models/.runs/<run id>/<name>@<n>    the versions a run made (so that deleting it is refused)
```

Every file is written atomically (a temporary file renamed), versions are numbered 1, 2, ...
under the model's lock (``fcntl.flock``), so two ``register`` commands at once get two numbers
and neither is lost. A version keeps its files in the blobs, so it outlives its run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner.errors import StoreError, UsageError
from runner.fsutil import atomic_write_text
from runner.models.names import Ref, check_name
from runner.models.types import AliasMove, ModelVersion, from_json

MODELS = "models"
BLOBS = ".blobs"
RUNS = ".runs"
VERSIONS = "versions"
ALIASES = "aliases.json"
HISTORY = "alias-history.jsonl"
SUMMARY = "summary.json"
LOCK = ".lock"


class ModelStore:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.root = home / MODELS
        self.blobs = self.root / BLOBS

    # --- reading ---------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every registered model, sorted."""
        try:
            entries = os.listdir(self.root)  # noqa: PTH208 (names only: faster)
        except FileNotFoundError:
            return []
        return sorted(n for n in entries if not n.startswith("."))

    def versions(self, name: str) -> list[int]:
        """The version numbers of ``name``, ascending (empty when it is not registered)."""
        try:
            entries = os.listdir(self.root / name / VERSIONS)  # noqa: PTH208
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(int(e[:-5]) for e in entries if e.endswith(".json") and e[:-5].isdigit())

    def version(self, name: str, number: int) -> ModelVersion:
        path = self._version_path(name, number)
        try:
            data = json.loads(path.read_bytes())
            return from_json(ModelVersion, data)
        except FileNotFoundError:
            raise UsageError(f"model '{name}' has no version {number}",
                             hint=f"see 'reprun models show {name}'") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"the model version file {path} cannot be read: {exc}") from None

    def aliases(self, name: str) -> dict[str, int]:
        path = self.root / name / ALIASES
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StoreError(f"the aliases file {path} cannot be read: {exc}") from None
        return {str(k): int(v) for k, v in data.items()}

    def history(self, name: str) -> list[AliasMove]:
        path = self.root / name / HISTORY
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [from_json(AliasMove, json.loads(line)) for line in lines if line.strip()]

    def summary(self, name: str) -> dict[str, Any] | None:
        """The model's row of ``models list`` as last written (None: not written yet)."""
        try:
            data: dict[str, Any] = json.loads((self.root / name / SUMMARY).read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError):
            return None  # made again from the versions
        return data

    def make_summary(self, name: str) -> dict[str, Any] | None:
        """The model's row of ``models list``, from its versions and aliases."""
        numbers = self.versions(name)
        if not numbers:
            return None
        latest = self.version(name, numbers[-1])
        text = latest.created_at.isoformat()
        return {
            "name": name, "versions": len(numbers), "latest": numbers[-1],
            "aliases": self.aliases(name),
            "updated_at": text[:-6] + "Z" if text.endswith("+00:00") else text,
            "description": latest.description, "run_id": latest.run_id,
        }

    def resolve(self, ref: Ref) -> ModelVersion:
        """The version a reference names; UsageError for an unknown model, version or alias."""
        numbers = self.versions(check_name(ref.name))
        if not numbers:
            known = self.names()
            hint = (f"registered: {', '.join(known[:10])}" if known
                    else "register one with 'reprun models register NAME RUN'")
            raise UsageError(f"no model named '{ref.name}'", hint=hint)
        if ref.alias is not None:
            aliases = self.aliases(ref.name)
            if ref.alias not in aliases:
                have = ", ".join(sorted(aliases)) or "none"
                raise UsageError(f"model '{ref.name}' has no alias '{ref.alias}' (aliases: "
                                 f"{have})", hint=f"set one with 'reprun models alias "
                                                  f"{ref.name} VERSION {ref.alias}'")
            return self.version(ref.name, aliases[ref.alias])
        if ref.version is not None and ref.version not in numbers:
            raise UsageError(f"model '{ref.name}' has no version {ref.version} (versions 1 to "
                             f"{numbers[-1]})", hint=f"see 'reprun models show {ref.name}'")
        return self.version(ref.name, ref.version or numbers[-1])

    def blob(self, digest: str) -> Path:
        return self.blobs / digest.partition(":")[2]

    def versions_from_runs(self, run_ids: list[str]) -> dict[str, list[str]]:
        """Run id -> the versions (``name@n``) registered from it, for the runs that have any."""
        found = {}
        for run_id in run_ids:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                made = sorted(p.name for p in (self.root / RUNS / run_id).iterdir())
                if made:
                    found[run_id] = made
        return found

    # --- writing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, name: str) -> Iterator[None]:
        """The model's lock, held by this process while the block runs."""
        directory = self.root / check_name(name)
        with self.writing("the model was not changed"):
            (directory / VERSIONS).mkdir(parents=True, exist_ok=True)
            handle = (directory / LOCK).open("a")
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            yield

    def add_blob(self, source: Path, digest: str) -> bool:
        """Keep a copy of ``source`` under its digest; True when it was not there before."""
        target = self.blob(digest)
        if target.exists():
            return False
        self.blobs.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.blobs, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            Path(tmp).chmod(0o444)
            Path(tmp).replace(target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return True

    def next_version(self, name: str) -> int:
        """The next number (call with the model's lock held)."""
        numbers = self.versions(name)
        return numbers[-1] + 1 if numbers else 1

    def write_version(self, version: ModelVersion, new: bool) -> None:
        """Write a version (with the lock held); ``new``: it must not exist yet."""
        path = self._version_path(version.name, version.version)
        if new and path.exists():
            raise StoreError(f"version {version.version} of '{version.name}' exists already")
        refs = [self.root / RUNS / run_id / f"{version.name}@{version.version}"
                for run_id in version.runs]
        made: list[Path] = []
        try:
            for ref in refs:
                if not ref.exists():
                    ref.parent.mkdir(parents=True, exist_ok=True)
                    ref.touch()
                    made.append(ref)
            atomic_write_text(path, version.model_dump_json(indent=2) + "\n")
        except BaseException:
            for ref in made:
                ref.unlink(missing_ok=True)
            raise
        self._write_summary(version.name)

    def set_alias(self, name: str, alias: str, version: int | None, by: str,
                  at: Any) -> AliasMove:
        """Point ``alias`` at ``version`` (None: delete it), with the lock held; the move is
        added to the history first, then the aliases replaced."""
        aliases = self.aliases(name)
        previous = aliases.get(alias)
        if version is None:
            if previous is None:
                raise UsageError(f"model '{name}' has no alias '{alias}'",
                                 hint=f"its aliases: {', '.join(sorted(aliases)) or 'none'}")
            del aliases[alias]
        else:
            aliases[alias] = version
        move = AliasMove(alias=alias, version=version, previous=previous, by=by, at=at)
        history = self.root / name / HISTORY
        line = (move.model_dump_json() + "\n").encode("utf-8")
        size = history.stat().st_size if history.exists() else 0
        try:
            with history.open("ab") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            atomic_write_text(self.root / name / ALIASES,
                              json.dumps(aliases, indent=2, sort_keys=True) + "\n")
        except BaseException:
            with contextlib.suppress(OSError), history.open("ab") as handle:
                handle.truncate(size)  # the move did not happen: no line says it did
            raise
        self._write_summary(name)
        return move

    def _write_summary(self, name: str) -> None:
        """Rewrite the summary (with the lock held); a summary that cannot be written is
        removed, and ``models list`` makes it from the versions instead."""
        path = self.root / name / SUMMARY
        try:
            atomic_write_text(path, json.dumps(self.make_summary(name), ensure_ascii=False),
                              durable=False)
        except OSError:
            path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def writing(self, consequence: str) -> Iterator[None]:
        """An OSError of the block as the store's one-line error."""
        try:
            yield
        except OSError as exc:
            raise self.cannot_write(exc, consequence) from None

    def cannot_write(self, exc: OSError, consequence: str) -> StoreError:
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return StoreError(f"the model store {self.root} is full ({reason}): {consequence}",
                              hint="free some space and try again")
        where = f" ({exc.filename})" if exc.filename else ""
        return StoreError(f"cannot write the model store {self.root}: {reason}{where}: "
                          f"{consequence}")

    def _version_path(self, name: str, number: int) -> Path:
        return self.root / name / VERSIONS / f"{number}.json"

