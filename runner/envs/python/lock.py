"""Request -> lock: ``uv pip compile --generate-hashes``, and uv failures as one-line errors.

The lock is a requirements file: every distribution pinned ``name==version`` with the sha256 of the
artifact, annotated with the index it came from (credentials removed), under a short header that
names the Python version and the platform it was resolved for.

The lock's bytes depend only on what was resolved, never on the machine that resolved it: no path
of the store (uv's ``# via -r <input file>`` names the request ``python_env``), and paths inside
the project (``-e .``, ``--find-links ./wheels``) are written relative to the project directory
(``anchor_entry`` and ``project_location`` make them absolute again where the lock is used). So
the same request gives the same lock, hash and image on every machine and in every checkout.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner.envs.python.request import PythonRequest, is_url_option, platform_tag
from runner.errors import EnvBuildError
from runner.frozen import frozen
from runner.process import Completed, Pending, capture
from runner.redact import redact_url

LOCK_FILENAME = "python.lock.txt"
REQUEST_LABEL = "python_env"  # what uv's "# via -r <input file>" names in a lock
TIMEOUT_S = 3600.0
_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
_NOT_FOUND = re.compile(r"Because (\S+) was not found in the (package registry|provided package"
                        r" locations)")
_NO_VERSION = re.compile(r"Because there (?:is|are) no versions? of (\S+)")
_BUILD = re.compile(r"Failed to (?:build|download and build) `([^`]+)`")


@frozen
class Interpreter:
    """A Python interpreter: its path and exact version."""

    path: str
    version: str


def uv_bin() -> str:
    """The uv executable shipped by the ``uv`` package."""
    from uv import find_uv_bin

    return str(find_uv_bin())


def run_logged(
    argv: Sequence[str], log: Path, env: Mapping[str, str], cwd: Path | None = None
) -> Completed:
    """Run a tool to completion and append its command and output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = capture(argv, env=env, cwd=cwd, timeout=TIMEOUT_S, contain=True)
    except (FileNotFoundError, PermissionError) as exc:
        raise _cannot_run(argv, exc) from None
    append_log(log, done)
    return done


def _cannot_run(argv: Sequence[str], exc: OSError) -> EnvBuildError:
    return EnvBuildError(f"cannot run '{argv[0]}': {exc}",
                         hint="reinstall reprun (it depends on uv and virtualenv)")


def append_log(log: Path, done: Completed) -> None:
    """Append a finished command and its output to ``log``, credentials removed."""
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(redact_url(a) for a in done.argv)}\n")
        handle.write(redact_text(done.stdout + done.stderr))
        handle.write(f"[exit {done.returncode}]\n\n")


def redact_text(text: str) -> str:
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def log_path(logs: Path, kind: str, key: str) -> Path:
    """A new log file name (the directory is created): time, step, key and process id."""
    logs.mkdir(parents=True, exist_ok=True)
    return logs / f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{key[:12]}-{os.getpid()}.log"


def compile_lock(
    request: PythonRequest, interpreter: Interpreter, manager: str, logs: Path,
    env: Mapping[str, str], project_dir: Path,
) -> str:
    """Resolve ``request`` for ``interpreter`` into the text of a hashed lock."""
    return start_compile(request, interpreter, manager, logs, env, project_dir).text()


@dataclass
class Compiling:
    """A resolution running in the background (``pending`` is None when there is nothing to
    resolve); ``text`` waits for the lock, ``cancel`` stops it."""

    key: str
    interpreter: Interpreter
    header: str
    project_dir: Path = Path()
    log: Path | None = None
    pending: Pending | None = None
    started: float = field(default_factory=time.monotonic)

    def text(self) -> str:
        if self.pending is None or self.log is None:
            return self.header
        done = self.pending.result(TIMEOUT_S)
        append_log(self.log, done)
        if not done.ok:
            raise EnvBuildError(explain(done.stderr, "resolving the environment failed"),
                                hint=f"full log: {self.log}")
        body = portable(done.stdout, self.log.with_suffix(".in"), self.project_dir)
        return self.header + "\n".join(_clean(line) for line in body.splitlines()) + "\n"

    def cancel(self) -> None:
        if self.pending is not None:
            self.pending.cancel()


def start_compile(
    request: PythonRequest, interpreter: Interpreter, manager: str, logs: Path,
    env: Mapping[str, str], project_dir: Path,
) -> Compiling:
    """Start resolving ``request`` (``uv pip compile --generate-hashes``) in the background."""
    header = lock_header(interpreter, manager)
    if not request.lines:
        return Compiling(request.key, interpreter, header, project_dir)
    log = log_path(logs, "resolve", request.key)
    infile = log.with_suffix(".in")
    infile.write_text("\n".join(request.lines) + "\n", encoding="utf-8")
    argv = [uv_bin(), "pip", "compile", str(infile), "--generate-hashes", "--no-header",
            "--emit-index-url", "--emit-index-annotation", "--python", interpreter.path,
            "--python-version", interpreter.version, "--quiet", "--color", "never"]
    try:
        pending = Pending(argv, project_dir, env)
    except (FileNotFoundError, PermissionError) as exc:
        raise _cannot_run(argv, exc) from None
    return Compiling(request.key, interpreter, header, project_dir, log, pending)


def lock_header(interpreter: Interpreter, manager: str) -> str:
    """What the lock was resolved for. No path (of the interpreter or of the request): the
    builder finds an interpreter of the locked version on the machine that installs it."""
    return (f"# reprun lock: resolved by uv pip compile --generate-hashes for {manager}\n"
            f"# python: {interpreter.version}\n"
            f"# platform: {platform_tag()}\n")


def portable(text: str, infile: Path, project_dir: Path) -> str:
    """uv's output without the paths of this machine: the input file (a log of the store) is
    named ``python_env``; paths inside the project become relative to it (``.``, ``./wheels``)."""
    text = text.replace(f"-r {infile}", f"-r {REQUEST_LABEL}")
    for root in dict.fromkeys((str(project_dir), str(project_dir.resolve()))):
        if root in ("", ".", "/"):
            continue
        for prefix in (Path(root).as_uri(), f"file://{root}", root):
            pattern = re.compile(re.escape(prefix) + r"(?=[/\s]|$)((?:/\S*)?)", re.MULTILINE)
            text = pattern.sub(lambda m: "." + m.group(1), text)
    return text


def anchor_entry(entry: str, project_dir: Path) -> str:
    """A lock entry (``-e ./pkg``, ``./wheels/x.whl --hash=...``) with a project-relative path
    made absolute; absolute paths (locks written before paths were relative) are kept."""
    words = entry.split(" ")
    for index, word in enumerate(words):
        if word in ("-e", "--editable"):
            continue
        if word == "." or word.startswith("./"):
            words[index] = str(project_dir / word) if word != "." else str(project_dir)
        break
    return " ".join(words)


def project_location(location: str, project_dir: Path | None) -> str:
    """A ``# from`` location of the lock as pip can use it: ``./wheels`` under the project."""
    if project_dir is not None and (location == "." or location.startswith("./")):
        return str(project_dir / location)
    return location


def installs_project_files(lock: str) -> bool:
    """Whether the lock installs a local package of the project (``-e .``, ``./pkg``): what is
    installed is then that checkout's, not artifacts checked against a hash."""
    _, local = split_lock(lock)
    return any(anchor_entry(entry, Path("/")) != entry for entry in local)


def _clean(line: str) -> str:
    """Remove credentials from index URLs and their annotations."""
    stripped = line.strip()
    if is_url_option(stripped) or stripped.startswith("# from "):
        return redact_text(line)
    return line


def lock_interpreter(lock: str) -> Interpreter | None:
    """The Python a lock was resolved for: its version, and its path in locks written before
    locks were portable (an empty path otherwise)."""
    for line in lock.splitlines():
        if line.startswith("# python: "):
            version, _, path = line.removeprefix("# python: ").strip().partition(" ")
            return Interpreter(path, version)
    return None


def pinned_packages(lock: str) -> tuple[tuple[str, str], ...]:
    """The ``name==version`` pins of a lock, as (name, version): what an image build installs."""
    pins = []
    for entry in split_lock(lock)[0]:
        requirement = entry.split(" --hash=", 1)[0].split(";", 1)[0].strip()
        name, sep, version = requirement.partition("==")
        if sep:
            pins.append((name.split("[", 1)[0].strip(), version.strip()))
    return tuple(sorted(pins))


def split_lock(lock: str) -> tuple[list[str], list[str]]:
    """(hashed requirement text, local paths): local projects cannot carry a hash."""
    hashed: list[str] = []
    local: list[str] = []
    entries = _entries(lock)
    for entry in entries:
        if is_url_option(entry):
            continue  # the index comes from the configuration, with its credentials
        if "--hash=" in entry:
            hashed.append(entry)
        else:
            local.append(entry)
    return hashed, local


def _entries(lock: str) -> list[str]:
    """Logical lines of a requirements file, continuations joined, comments dropped."""
    entries, current = [], ""
    for raw in lock.splitlines():
        line = raw.split("#", 1)[0].rstrip() if raw.lstrip().startswith("#") else raw.rstrip()
        if not line.strip():
            continue
        current += " " + line.rstrip("\\").strip()
        if not line.endswith("\\"):
            entries.append(current.strip())
            current = ""
    if current.strip():
        entries.append(current.strip())
    return entries


def explain(stderr: str, fallback: str) -> str:
    """One line a person can act on, from uv's error output."""
    text = " ".join(line.strip() for line in stderr.splitlines() if line.strip())
    if match := _NOT_FOUND.search(text):
        where = "the package index" if match.group(2) == "package registry" else "the find-links"
        return f"package '{match.group(1)}' not found in {where}"
    if "No solution found" in text:
        reason = text.split("cause:", 1)[1] if "cause:" in text else text
        reason = reason.split("hint:", 1)[0].strip()
        if match := _NO_VERSION.search(reason):
            return f"no version of '{match.group(1)}' matches: {reason}"
        return f"resolution conflict: {reason}"
    if match := _BUILD.search(text):
        detail = _after(text, "[stderr]") or _after(text, "cause:")
        return f"building '{match.group(1)}' from source failed: {detail}"[:400]
    if "Failed to fetch" in text or "error sending request" in text or "dns error" in text:
        url = _URL.search(text)
        shown = redact_url(url.group(0)).rstrip(".:`") if url else "the package index"
        return f"the package index is unreachable ({shown})"
    first = next((ln.removeprefix("error:").strip() for ln in stderr.splitlines()
                  if ln.startswith("error:")), "")
    return f"{fallback}: {first}" if first else fallback


def _after(text: str, marker: str) -> str:
    if marker not in text:
        return ""
    return text.split(marker, 1)[1].split("hint:", 1)[0].strip()
