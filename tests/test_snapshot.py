"""The snapshot's gitignore-style rules and its archive, in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.source.snapshot import extract_snapshot, is_excluded, make_snapshot, parse_rules


@pytest.mark.parametrize(("rules", "path", "is_dir", "excluded"), [
    (["*.log"], "a.log", False, True),
    (["*.log"], "deep/er/a.log", False, True),
    (["*.log", "!keep.log"], "x/keep.log", False, False),
    (["build/"], "build", True, True),
    (["build/"], "build", False, False),          # a file named build stays
    (["/top.txt"], "top.txt", False, True),
    (["/top.txt"], "sub/top.txt", False, False),  # anchored to the root
    (["docs/*.md"], "docs/a.md", False, True),
    (["docs/*.md"], "docs/x/a.md", False, False),  # * stays in one segment
    (["docs/**/*.md"], "docs/x/y/a.md", False, True),
    (["**/tmp"], "a/b/tmp", True, True),
    (["data/**"], "data/x/y.csv", False, True),
    (["file?.txt"], "file1.txt", False, True),
    (["file[0-9].txt"], "filex.txt", False, False),
    (["# comment", ""], "# comment", False, False),
])
def test_rules(rules: list[str], path: str, is_dir: bool, excluded: bool) -> None:
    assert is_excluded(parse_rules(rules), path, is_dir) is excluded


def test_identical_content_gives_identical_archives(tmp_path: Path) -> None:
    for name in ("one", "two"):
        project = tmp_path / name / "proj"
        (project / "pkg").mkdir(parents=True)
        (project / "pkg" / "m.py").write_text("x = 1\n")
        (project / "run.sh").write_text("echo hi\n")
        (project / "run.sh").chmod(0o755)
        (project / "__pycache__").mkdir()
        (project / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    first = make_snapshot(tmp_path / "one" / "proj", tmp_path / "one.tar.gz")
    second = make_snapshot(tmp_path / "two" / "proj", tmp_path / "two.tar.gz")
    assert first.sha256 == second.sha256
    assert first.files == 2 and first.excluded == ["__pycache__/"]
    out = tmp_path / "out"
    extract_snapshot(tmp_path / "one.tar.gz", first.sha256, out)
    assert (out / "pkg" / "m.py").read_text() == "x = 1\n"
    assert (out / "run.sh").stat().st_mode & 0o111
