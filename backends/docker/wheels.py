"""The artifacts of a Python lock, fetched on the host for an image build that needs no network.

A container on a locked-down machine often cannot reach the package index (no network, no proxy
CA), and it should not have to: the lock already names every distribution with its sha256. The
wheels are downloaded once per lock on the host — where pip's and uv's index settings, proxies and
credentials apply — into ``<cache>/wheels/<lock sha256>/``, checked against the lock's hashes, and
copied into the build context; the image installs them with ``--no-index --require-hashes``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from runner.envs.base import Lock
from runner.envs.cache import cache_root
from runner.envs.python import anchor_entry, project_location, redact_text, uv_sources_for_pip
from runner.errors import EnvBuildError
from runner.process import capture
from runner.redact import redact_url

COMPLETE = ".complete"


def lock_sources(lock: Lock, project_dir: Path | None = None) -> list[str]:
    """pip options for the places the lock says its distributions came from (``# from URL``;
    ``# from ./wheels``: a folder of the project)."""
    args: list[str] = []
    for line in lock.content.splitlines():
        text = line.strip()
        if not text.startswith("# from "):
            continue
        location = project_location(text.removeprefix("# from ").strip(), project_dir)
        local = location.startswith(("file://", "/"))
        option = "--find-links" if local else "--extra-index-url"
        if [option, location] != args[-2:] and location not in args:
            args += [option, location]
    return args


def wheels_for(lock: Lock, env: Mapping[str, str], project_dir: Path | None = None) -> Path:
    """A folder holding every artifact ``lock`` pins (downloaded once per lock, then reused);
    ``project_dir`` anchors the lock's project-relative paths (``./wheels``)."""
    folder = cache_root(env) / "wheels" / lock.sha256
    if (folder / COMPLETE).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".fetch-") as tmp:
        staging = Path(tmp) / "wheels"
        staging.mkdir()
        _download(lock, env, staging, folder.parent / f"{lock.sha256[:16]}.log", project_dir)
        (staging / COMPLETE).write_text(lock.sha256 + "\n")
        try:
            staging.rename(folder)
        except OSError:  # another run published the same lock's wheels first
            if not (folder / COMPLETE).is_file():
                shutil.rmtree(folder, ignore_errors=True)
                staging.rename(folder)
    return folder


def _download(lock: Lock, env: Mapping[str, str], dest: Path, log: Path,
              project_dir: Path | None) -> None:
    requirements = dest.parent / lock.filename
    lines = lock.content.splitlines()
    if project_dir is not None:
        lines = [anchor_entry(line, project_dir) for line in lines]
    requirements.write_text("\n".join(lines) + "\n", encoding="utf-8")
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes",
            "--disable-pip-version-check", "--no-input", "--dest", str(dest),
            "-r", str(requirements), *lock_sources(lock, project_dir), *uv_sources_for_pip(env)]
    try:
        done = capture(argv, env=env, timeout=3600, contain=True)
    except FileNotFoundError as exc:
        raise EnvBuildError(f"cannot run pip to fetch the locked packages: {exc}") from None
    shown = " ".join(redact_url(a) for a in argv)
    log.write_text(f"$ {shown}\n{redact_text(done.stdout + done.stderr)}", encoding="utf-8")
    if done.ok:
        return
    if "No module named pip" in done.stderr:
        raise EnvBuildError(
            "pip is not installed beside reprun; it fetches the locked packages for the image",
            hint=f"install it: {sys.executable} -m ensurepip",
        )
    last = next((ln for ln in reversed(done.stderr.splitlines()) if ln.strip()), "pip failed")
    raise EnvBuildError(f"fetching the locked packages for the image failed: {last.strip()}",
                        hint=f"full log: {log}")


def wheel_files(folder: Path) -> tuple[tuple[str, bytes], ...]:
    """The artifacts of ``folder`` as build-context files under ``wheels/`` (sorted by name)."""
    return tuple(
        (f"wheels/{path.name}", path.read_bytes())
        for path in sorted(folder.iterdir())
        if path.is_file() and path.name != COMPLETE
    )
