"""Bring back what a pod wrote to ``REPRUN_OUTPUT_DIR``, through the API server alone.

The pod may have no route to the machine running reprun, and its filesystem goes with it. So the
container's command is wrapped (`WRAPPER`): the wrapper makes the output directory, runs the
command (passing SIGTERM on), and after it ends prints the directory as a gzipped tar, base64, to
its own log, between two marker lines that carry the run id::

    ::reprun-outputs-<run id>:: begin <compressed size>
    H4sIAAAAAAAAA+3OMQ6CQBCF4am9...
    ::reprun-outputs-<run id>:: end

`OutputSplitter` takes those lines out of the log as it streams (the user's output stays as it
was) and `unpack` extracts the archive into the run's local output directory, where the run's
outputs are recorded by the same code as a local run's. The wrapper exits with the command's code.

When the archive would be larger than ``outputs_max_bytes`` (the kubelet rotates a container log
at 10 MiB by default, and the log is read in one piece), nothing is sent but the list of files,
and the record says which files were not collected. An image without ``tar`` or ``base64`` says
so in one marker line.
"""

from __future__ import annotations

import base64
import binascii
import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# $1: the command; $2: the marker; $3: the largest archive to send (0: send nothing).
WRAPPER = r"""out="${REPRUN_OUTPUT_DIR:-/var/tmp/reprun-outputs}"
mkdir -p "$out" || echo "reprun: cannot create REPRUN_OUTPUT_DIR $out" >&2
/bin/sh -c "$1" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM
trap 'kill -INT "$child" 2>/dev/null' INT
while :; do
  wait "$child"; code=$?
  kill -0 "$child" 2>/dev/null || break
done
trap - TERM INT
if [ "$3" -gt 0 ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
  if ! command -v tar >/dev/null 2>&1 || ! command -v base64 >/dev/null 2>&1; then
    echo "$2 unavailable the image has no tar or no base64"
  else
    size=$(tar -czf - -C "$out" . | wc -c)
    if [ "$size" -gt "$3" ]; then
      echo "$2 toolarge $size"
      (cd "$out" && find . -type f) | while IFS= read -r f; do echo "$2 file ${f#./}"; done
    else
      echo "$2 begin $size"
      tar -czf - -C "$out" . | base64
      echo "$2 end"
    fi
  fi
fi
exit "$code"
"""


def marker(run_id: str) -> str:
    return f"::reprun-outputs-{run_id}::"


def wrapped_command(command: str, run_id: str, max_bytes: int) -> list[str]:
    """The container's command: the wrapper, with the user's command as its first argument."""
    return ["/bin/sh", "-c", WRAPPER, "reprun", command, marker(run_id), str(max_bytes)]


@dataclass
class Collected:
    """What the log carried about the outputs."""

    state: str = "none"  # none | receiving | complete | toolarge | unavailable
    size: int = 0
    chunks: list[bytes] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    detail: str = ""


class OutputSplitter:
    """Separates the outputs block from the user's log lines (fed one line at a time)."""

    def __init__(self, run_id: str) -> None:
        self.mark = marker(run_id).encode()
        self.collected = Collected()

    def line(self, text: bytes) -> bytes | None:
        """What of ``text`` (one log line, without its newline) belongs to the user's log."""
        got = self.collected
        if got.state == "receiving" and self.mark not in text:
            got.chunks.append(text.strip())
            return None
        where = text.find(self.mark)
        if where < 0:
            return text
        self._marker_line(text[where + len(self.mark):].decode("utf-8", "replace").strip())
        before = text[:where]
        return before if before else None  # the command's last line had no newline

    def _marker_line(self, rest: str) -> None:
        got = self.collected
        word, _, value = rest.partition(" ")
        if word == "begin":
            got.state, got.chunks = "receiving", []
            got.size = int(value) if value.isdigit() else 0
        elif word == "end" and got.state == "receiving":
            got.state = "complete"
        elif word == "toolarge":
            got.state = "toolarge"
            got.size = int(value) if value.isdigit() else 0
        elif word == "file":
            got.files.append(value)
        elif word == "unavailable":
            got.state, got.detail = "unavailable", value


def split_log(log: bytes, run_id: str) -> tuple[bytes, Collected]:
    """A whole log (a detached run's): the user's part and the outputs block."""
    splitter = OutputSplitter(run_id)
    kept = []
    lines = log.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for line in lines:
        text = splitter.line(line)
        if text is not None:
            kept.append(text + b"\n")
    return b"".join(kept), splitter.collected


def unpack(collected: Collected, output_dir: Path, max_bytes: int) -> str | None:
    """Extract the outputs into ``output_dir``; a one-line problem when they did not all come."""
    state = collected.state
    if state == "none":
        return None
    if state == "unavailable":
        return f"outputs not collected: {collected.detail}"
    if state == "toolarge":
        names = ", ".join(collected.files[:20]) + (" ..." if len(collected.files) > 20 else "")
        return (f"outputs not collected: their archive is {collected.size} bytes, over "
                f"outputs_max_bytes ({max_bytes}); files left in the pod: {names or '-'}")
    if state != "complete":
        return ("outputs not collected: the log ended inside the outputs archive (was the log "
                "rotated or the pod deleted?)")
    try:
        data = base64.b64decode(b"".join(collected.chunks), validate=True)
        output_dir.mkdir(parents=True, exist_ok=True)
        skipped: list[str] = []
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.extractall(output_dir, filter=_files_only(skipped))
    except (binascii.Error, tarfile.TarError, OSError, EOFError) as exc:
        return f"outputs not collected: the archive in the log is damaged ({exc})"
    if skipped:
        shown = ", ".join(skipped[:20]) + (" ..." if len(skipped) > 20 else "")
        return f"outputs: links and special files are not unpacked (never followed): {shown}"
    return None


def _files_only(skipped: list[str]) -> Any:
    """A tar filter that unpacks regular files and folders only (the "data" filter's checks
    besides); a link (symbolic or hard) or a device is left out and named in ``skipped``."""

    def accept(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        if not (member.isreg() or member.isdir()):
            skipped.append(member.name[:200])
            return None
        return tarfile.data_filter(member, path)

    return accept
