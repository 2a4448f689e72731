"""The shell examples of README.md and docs/*.md run as they are written.

A fenced ```bash block runs when the line just before its opening fence is a marker:

    <!-- runnable -->            run with bash (errexit, pipefail)
    <!-- runnable: docker -->    the same, and it needs a Docker engine (a `docker` test)

Each block runs in its own sandbox, as a user would type it in a clone of this repository: the
current directory holds a copy of example-projects/ and benchmarks/, committed to a fresh git
repository; REPRUN_HOME is the sandbox's own; `reprun` and `python` are this test's interpreter's.
The environment cache (REPRUN_CACHE_DIR) is shared by the blocks of one test process, as it is by
the runs of one user, so environments built by one block are reused by the next.

Docker blocks build on the test base image because the test machine pulls nothing: the
`python:3.11-slim` they name (in the block, and in docker-env's docker_env.image) stands for it,
and so does REPRUN_DOCKER_BASE_IMAGE. The images they build are content-addressed and left in place,
as a user's would be: the next run reuses them, and removing one could break a concurrent run.

Blocks that need a cluster or a remote server (git.example.com, registry.example.com) stay
unmarked; test_marked_blocks_are_found keeps the extraction from silently finding none.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, init_repo

DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"<!-- runnable(?:: (?P<tags>docker))? -->")
# Anything that looks like it was meant to be a marker (so a typo cannot silently skip a block).
NEAR_MARKER = re.compile(r"<!--\s*run|<!--.*run+a?b+l", re.IGNORECASE)
INLINE_CODE = re.compile(r"`[^`]*`")  # a marker quoted in prose is no marker
FENCE = re.compile(r"^(```|~~~)")
RUNNABLE_FENCE = "```bash"
# At least this many runnable blocks exist; fewer means the extraction broke (or docs were lost).
MIN_BLOCKS = 20
MIN_DOCKER_BLOCKS = 2
# The public image docker examples name; in the tests, the local test base image stands for it.
PUBLIC_IMAGE = "python:3.11-slim"


@dataclass(frozen=True)
class Block:
    path: Path
    line: int          # 1-based line of the opening fence
    tags: frozenset[str]
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _problems_and_blocks(path: Path) -> tuple[list[str], list[Block]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = path.relative_to(ROOT)
    problems: list[str] = []
    blocks: list[Block] = []
    index = 0
    in_fence = False
    while index < len(lines):
        line = lines[index]
        if FENCE.match(line.strip()):
            in_fence = not in_fence
            index += 1
            continue
        if in_fence or not NEAR_MARKER.search(INLINE_CODE.sub("", line)):
            index += 1
            continue
        # A marker: exactly one of the accepted forms, alone on its line, right before ```bash.
        match = MARKER.fullmatch(line.strip())
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if match is None:
            problems.append(f"{rel}:{index + 1}: malformed marker {line.strip()!r}; write "
                            "'<!-- runnable -->' or '<!-- runnable: docker -->'")
        elif following.strip() != RUNNABLE_FENCE:
            problems.append(f"{rel}:{index + 1}: a runnable marker must be followed directly by "
                            f"a '{RUNNABLE_FENCE}' fence, not {following!r}")
        else:
            end = index + 2
            while end < len(lines) and not FENCE.match(lines[end].strip()):
                end += 1
            if end == len(lines):
                problems.append(f"{rel}:{index + 2}: the runnable block is never closed")
                break
            tags = frozenset(filter(None, [match.group("tags")]))
            blocks.append(Block(path, index + 2, tags, "\n".join(lines[index + 2:end]) + "\n"))
            index = end + 1
            continue
        index += 1
    return problems, blocks


def _collect() -> tuple[list[str], list[Block]]:
    problems: list[str] = []
    blocks: list[Block] = []
    for path in DOC_FILES:
        found_problems, found_blocks = _problems_and_blocks(path)
        problems += found_problems
        blocks += found_blocks
    return problems, blocks


PROBLEMS, BLOCKS = _collect()


def test_markers_are_well_formed() -> None:
    assert not PROBLEMS, "\n".join(PROBLEMS)


def test_marker_check_catches_typos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself: a misspelt or misplaced marker is a problem, never a silent skip."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    page = tmp_path / "page.md"
    page.write_text("<!-- runable -->\n```bash\necho a\n```\n"
                    "<!--runnable-->\n```bash\necho b\n```\n"
                    "<!-- runnable: dokcer -->\n```bash\necho c\n```\n"
                    "<!-- runnable -->\n\n```bash\necho d\n```\n"
                    "<!-- runnable -->\n```sh\necho e\n```\n"
                    "<!-- runnable -->\n```bash\necho f\n```\n"
                    "<!-- runnable: docker -->\n```bash\necho g\n```\n"
                    "Prose quoting `<!-- runnable -->` is fine.\n")
    problems, blocks = _problems_and_blocks(page)
    assert [p.split(":")[1] for p in problems] == ["1", "5", "9", "13", "18"], problems
    assert [(b.line, b.code, sorted(b.tags)) for b in blocks] == [
        (23, "echo f\n", []), (27, "echo g\n", ["docker"])]


def test_marked_blocks_are_found() -> None:
    docker = [block for block in BLOCKS if "docker" in block.tags]
    assert len(BLOCKS) >= MIN_BLOCKS, [block.id for block in BLOCKS]
    assert len(docker) >= MIN_DOCKER_BLOCKS, [block.id for block in docker]
    assert {block.path.name for block in BLOCKS} >= {"README.md", "reproduce.md", "mlproject.md"}


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("doc-cache")


def _sandbox(tmp_path: Path, base_image: str | None) -> Path:
    work = tmp_path / "reprun"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "local-channel")
    for name in ("example-projects", "benchmarks"):
        shutil.copytree(ROOT / name, work / name, ignore=ignore)
    if base_image is not None:
        mlproject = work / "example-projects" / "docker-env" / "MLproject"
        mlproject.write_text(mlproject.read_text().replace(PUBLIC_IMAGE, base_image))
    init_repo(work)
    return work


def _env(tmp_path: Path, cache: Path, base_image: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPRUN_")}
    bin_dir = str(Path(sys.executable).parent)
    env.update({
        "PATH": bin_dir + os.pathsep + env.get("PATH", ""),
        "REPRUN_HOME": str(tmp_path / "reprun-home"),
        "REPRUN_CACHE_DIR": str(cache),
        "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.invalid",
        "GIT_COMMITTER_NAME": "Ada", "GIT_COMMITTER_EMAIL": "ada@example.invalid",
        "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
    })
    env.pop("VIRTUAL_ENV", None)
    if base_image is not None:
        env["REPRUN_DOCKER_BASE_IMAGE"] = base_image
    return env


def _run_block(block: Block, tmp_path: Path, cache: Path, base_image: str | None) -> None:
    work = _sandbox(tmp_path, base_image)
    script = tmp_path / "block.sh"
    code = block.code
    if base_image is not None:
        code = code.replace(PUBLIC_IMAGE, base_image)
    script.write_text(code)
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", str(script)], cwd=work,
        env=_env(tmp_path, cache, base_image), capture_output=True, text=True, timeout=600,
        check=False,
    )
    assert done.returncode == 0, (
        f"{block.id} failed with exit code {done.returncode}\n--- block\n{block.code}"
        f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}")


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if "docker" not in b.tags],
    ids=lambda b: b.id)
def test_block_runs(block: Block, tmp_path: Path, shared_cache: Path) -> None:
    _run_block(block, tmp_path, shared_cache, None)


@pytest.mark.docker
@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if "docker" in b.tags],
    ids=lambda b: b.id)
def test_docker_block_runs(block: Block, tmp_path: Path, shared_cache: Path,
                           base_image: str) -> None:
    _run_block(block, tmp_path, shared_cache, base_image)


LINK = re.compile(r"\]\((?!https?://|mailto:)(?P<target>[^)#\s]*)(?:#(?P<anchor>[^)\s]+))?\)")


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    in_fence = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.strip()):
            in_fence = not in_fence
        elif not in_fence and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_relative_links_resolve() -> None:
    broken = []
    for path in DOC_FILES:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in LINK.finditer(line):
                target = (path.parent / match["target"]).resolve() if match["target"] else path
                anchor = match["anchor"]
                if not target.exists():
                    broken.append(f"{path.relative_to(ROOT)}:{number}: {match[0]} (no such file)")
                elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
                    broken.append(f"{path.relative_to(ROOT)}:{number}: {match[0]} (no heading)")
    assert not broken, "\n".join(broken)
