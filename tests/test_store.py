"""The run store: listing newest first, id prefixes, the index and its rebuild."""

from __future__ import annotations

from conftest import MakeProject, Reprun


def test_list_show_prefix_and_reindex(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: 'echo hi'\n")
    ids = []
    for _ in range(3):
        assert reprun("run", str(project), "-q").code == 0
        ids.append(reprun("runs", "list", "--json").json()[0]["run_id"])
    listed = reprun("runs", "list", "--json").json()
    assert [r["run_id"] for r in listed] == ids[::-1]  # newest first
    assert len(reprun("runs", "list", "--json", "-n", "2").json()) == 2
    human = reprun("runs", "list")
    assert human.stdout.splitlines()[1].startswith(ids[-1][:12])
    shown = reprun("runs", "show", ids[0][:10])
    assert shown.code == 0 and ids[0] in shown.stdout and "FINISHED" in shown.stdout

    (reprun.home / "index.sqlite").unlink()
    assert [r["run_id"] for r in reprun("runs", "list", "--json").json()] == ids[::-1]
    rebuilt = reprun("runs", "reindex")
    assert rebuilt.code == 0 and "indexed 3 run(s)" in rebuilt.stderr


def test_unknown_and_ambiguous_run_ids(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: 'true'\n")
    for _ in range(2):
        assert reprun("run", str(project), "-q").code == 0
    missing = reprun("runs", "show", "zzzz")
    assert missing.code == 2 and missing.error_lines == [
        "reprun: error: no run matches 'zzzz'; see 'reprun runs list'"
    ]
    ids = [r["run_id"] for r in reprun("runs", "list", "--json").json()]
    common = 0
    while ids[0][common] == ids[1][common]:
        common += 1
    ambiguous = reprun("runs", "show", ids[0][:common])
    if common:
        assert ambiguous.code == 2 and "matches 2 runs" in ambiguous.stderr
    empty = reprun("runs", "show", "")
    assert empty.code == 2 and "no run id given" in empty.stderr


def test_a_damaged_index_is_reported_and_rebuilt(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: 'true'\n")
    assert reprun("run", str(project), "-q").code == 0
    for leftover in reprun.home.glob("index.sqlite-*"):
        leftover.unlink()
    (reprun.home / "index.sqlite").write_bytes(b"this is not a database" * 100)
    broken = reprun("runs", "list")
    assert broken.code == 2
    assert broken.error_lines[0].endswith("rebuild it from the records with 'reprun runs reindex'")
    assert "indexed 1 run(s)" in reprun("runs", "reindex").stderr
    assert len(reprun("runs", "list", "--json").json()) == 1
