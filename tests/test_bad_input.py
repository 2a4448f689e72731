"""Bad input of every kind: one line 'reprun: error: ...', exit 2, no traceback, nothing
half-written."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from conftest import MakeProject, Reprun, Result

MLPROJECT = "name: bad\nentry_points:\n  main:\n    command: \"python -c 'print(1)'\"\n"


def one_line(result: Result, *needles: str) -> str:
    """The result is exit 2 with exactly one error line holding every needle."""
    assert result.code == 2, (result.code, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(result.error_lines) == 1, result.stderr
    line = result.error_lines[0]
    for needle in needles:
        assert needle in line, line
    return line


def alias_bomb() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev, name = chr(96 + i), chr(97 + i)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("text", "needles"), [
    (alias_bomb(), (":6:", "more than 200000 values", "aliases")),
    ("name: x\nentry_points: " + "[" * 3000 + "]" * 3000 + "\n",
     (":2:", "nested deeper than 100 levels")),
    ("name: x\nentry_points:\n  main:\n    command: a\n  main:\n    command: b\n",
     (":5:", "key 'main' is given twice (first on line 3)", "keep one of them")),
    ("name: x\nx: &r [*r]\n", (":2:", "alias *r refers to a value that contains it")),
    ("name: x\nwhen: 2024-13-45\n", ("YAML value error: month must be in 1..12",)),
    ("name: \x07bell\n", ("YAML error: unacceptable character #x0007",)),
    ("name: [unclosed\n", ("YAML syntax error",)),
])
def test_bad_mlproject_yaml(reprun: Reprun, make_project: MakeProject, text: str,
                            needles: tuple[str, ...]) -> None:
    project = make_project(files={})
    (project / "MLproject").write_text(text)
    line = one_line(reprun("run", str(project), "--dry-run"), "MLproject", *needles)
    assert line.startswith("reprun: error: ")


def test_huge_and_non_utf8_yaml(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project(MLPROJECT)
    (project / "python_env.yaml").write_text("dependencies:\n" + "  - pkg\n" * 1_500_000)
    one_line(reprun("run", str(project), "--dry-run"), "python_env.yaml",
             "is larger than 4 MiB")
    (project / "python_env.yaml").write_bytes(b"python: '3.11'\ndependencies: ['\xff\xfe']\n")
    one_line(reprun("run", str(project), "--dry-run"), "python_env.yaml",
             "not UTF-8 text (invalid start byte at byte 31)", "save the file as UTF-8")


def test_kubernetes_config_is_read_within_the_limits(reprun: Reprun, make_project: MakeProject,
                                                     tmp_path: Path) -> None:
    project = make_project(MLPROJECT)
    config = tmp_path / "k8s.yaml"
    config.write_text(alias_bomb())
    one_line(reprun("run", str(project), "-b", "kubernetes", "--backend-config", str(config),
                    "--dry-run"), "k8s.yaml", "more than 200000 values")


def test_environment_file_and_script_outside_the_project(
    reprun: Reprun, make_project: MakeProject, tmp_path: Path
) -> None:
    (tmp_path / "outside.yaml").write_text("python: '3.11'\n")
    (tmp_path / "x.py").write_text("print('outside')\n")
    project = make_project(MLPROJECT + "python_env: ../outside.yaml\n")
    one_line(reprun("run", str(project), "--dry-run"), "python_env: '../outside.yaml' is "
             "outside the project directory", "keep the file in the project")
    (project / "MLproject").write_text(MLPROJECT)
    for script in ("../x.py", str(tmp_path / "x.py")):
        one_line(reprun("run", str(project), "-e", script, "--dry-run"),
                 f"script '{script}' is outside the project directory")
    (project / "linked.py").symlink_to(tmp_path / "x.py")
    one_line(reprun("run", str(project), "-e", "linked.py", "--dry-run"), "outside the project")
    (project / "env.yaml").symlink_to(tmp_path / "outside.yaml")
    (project / "MLproject").write_text(MLPROJECT + "python_env: env.yaml\n")
    one_line(reprun("run", str(project), "--dry-run"), "'env.yaml' is outside the project")


def test_non_utf8_parameter_leaves_no_run_behind(reprun: Reprun,
                                                 make_project: MakeProject) -> None:
    project = make_project(MLPROJECT)
    value = os.fsdecode(b"x=caf\xe9")
    one_line(reprun("run", str(project), "-P", value, "--env-manager", "local"),
             "argument 4 ('x=caf\\xe9') is not UTF-8 text")
    runs = reprun.home / "runs"
    assert not runs.exists() or not any(runs.iterdir())


@pytest.mark.parametrize("limit", ["-5", "0", "many"])
def test_runs_list_limit(reprun: Reprun, limit: str) -> None:
    one_line(reprun("runs", "list", "-n", limit), "'-n' / '--limit'",
             "see 'reprun runs list --help'")


def test_unknown_option_is_one_line(reprun: Reprun) -> None:
    one_line(reprun("run", "--no-such-option", "."), "No such option '--no-such-option'; see",
             "see 'reprun run --help'")


# --- the store -----------------------------------------------------------------------------------

@pytest.mark.parametrize("broken", ["home-file", "runs-file", "index-dir"])
def test_store_of_the_wrong_shape(reprun: Reprun, make_project: MakeProject, broken: str) -> None:
    project = make_project(MLPROJECT)
    if broken == "home-file":
        reprun.home.write_text("")
        needle = "REPRUN_HOME"
    else:
        reprun.home.mkdir()
        if broken == "runs-file":
            (reprun.home / "runs").write_text("")
            needle = "runs ("
        else:
            (reprun.home / "index.sqlite").mkdir()
            needle = "index.sqlite ("
    one_line(reprun("runs", "list"), "the run store is not usable", needle)
    one_line(reprun("run", str(project), "--env-manager", "local"), needle)


# --- exports -------------------------------------------------------------------------------------

@pytest.fixture
def exported(reprun: Reprun, make_project: MakeProject, tmp_path: Path) -> Path:
    project = make_project(MLPROJECT)
    assert reprun("run", str(project), "-q", "--env-manager", "local").code == 0
    run_id = reprun.last_record()["run_id"]
    out = tmp_path / "good.tar.gz"
    done = reprun("export", run_id, "-o", str(out))
    assert done.code == 0, done.stderr
    return out


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def write_archive(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None,
                  ) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def with_manifest(files: dict[str, bytes], manifest_files: object) -> dict[str, bytes]:
    manifest = {"format": "reprun-export", "version": 1, "run_id": "x", "files": manifest_files}
    return {"manifest.json": json.dumps(manifest).encode(), **files}


def test_truncated_export(reprun: Reprun, exported: Path, tmp_path: Path) -> None:
    data = exported.read_bytes()
    # A cut in the compressed padding after the last member, or in the gzip trailer, too.
    for size in (len(data) // 2, len(data) - 30, len(data) - 9, len(data) - 1, 20):
        cut = tmp_path / f"cut-{size}.tar.gz"
        cut.write_bytes(data[:size])
        for args in (("reproduce", str(cut)), ("diff", str(cut), str(exported))):
            one_line(reprun(*args), f"'{cut}' is not a readable export (truncated or damaged")


def test_exports_of_the_wrong_shape(reprun: Reprun, exported: Path, tmp_path: Path) -> None:
    good = members(exported)
    run_json = good["run.json"]
    import hashlib

    digest = hashlib.sha256(run_json).hexdigest()
    cases: dict[str, tuple[dict[str, bytes], dict[str, str] | None, str]] = {
        "files-string": (with_manifest({"run.json": run_json}, "run.json"), None,
                         "its manifest's 'files' is not a mapping"),
        "files-list": (with_manifest({"run.json": run_json}, ["run.json"]), None,
                       "its manifest's 'files' is not a mapping"),
        "escape": (with_manifest({"run.json": run_json, "../evil": b"x"},
                                 {"run.json": digest, "../evil": digest}), None,
                   "it names '../evil', which is not a plain relative file name"),
        "absolute": (with_manifest({"run.json": run_json}, {"run.json": digest, "/etc/x": digest}),
                     None, "it names '/etc/x'"),
        "collide": (with_manifest({"run.json": run_json, "spec": b"a", "spec/x": b"b"},
                                  {"run.json": digest, "spec": digest, "spec/x": digest}), None,
                    "'spec' is both a file and a directory"),
        "link": (with_manifest({"run.json": run_json}, {"run.json": digest, "spec/l": digest}),
                 {"spec/l": "../../run.json"}, "spec/l is a link or a special file"),
        "digest": (with_manifest({"run.json": run_json}, {"run.json": "0" * 64}), None,
                   "run.json does not match its sha256"),
        "no-record": (with_manifest({}, {}), None, "it holds no run.json"),
        "manifest-list": ({"manifest.json": b"[]", "run.json": run_json}, None,
                          "is not a file made by 'reprun export'"),
    }
    for name, (files, links, needle) in cases.items():
        archive = write_archive(tmp_path / f"{name}.tar.gz", files, links)
        one_line(reprun("reproduce", str(archive)), needle)
        assert not (tmp_path / "evil").exists()


def test_hostile_record_inside_an_export(reprun: Reprun, exported: Path, tmp_path: Path) -> None:
    import hashlib

    record = json.loads(members(exported)["run.json"])
    record["source"]["snapshot"]["file"] = "../../../../etc/passwd"
    run_json = json.dumps(record).encode()
    archive = write_archive(tmp_path / "hostile.tar.gz", with_manifest(
        {"run.json": run_json}, {"run.json": hashlib.sha256(run_json).hexdigest()}))
    one_line(reprun("reproduce", str(archive)),
             "(source.snapshot.file: '../../../../etc/passwd' is not a plain file name)")
    record["status"] = {"not": "a status"}
    bad = tmp_path / "run.json"
    bad.write_text(json.dumps(record))
    one_line(reprun("diff", str(bad), str(exported)), "is not a reprun run record (status:")


def test_export_output_paths(reprun: Reprun, exported: Path, tmp_path: Path) -> None:
    run_id = reprun.last_record()["run_id"]
    missing = tmp_path / "no" / "such" / "dir" / "x.tar.gz"
    one_line(reprun("export", run_id, "-o", str(missing)),
             f"the directory '{missing.parent}' does not exist")
    into = tmp_path / "into"
    into.mkdir()
    done = reprun("export", run_id, "-o", str(into))
    assert done.code == 0, done.stderr
    assert done.stdout.strip() == str(into / f"reprun-{run_id[:12]}.tar.gz")
    assert members(into / f"reprun-{run_id[:12]}.tar.gz") == members(exported)
    assert [p.name for p in into.iterdir()] == [f"reprun-{run_id[:12]}.tar.gz"]


def test_damaged_snapshot_inside_a_consistent_export(reprun: Reprun, exported: Path,
                                                     tmp_path: Path) -> None:
    """The digests all match, but the snapshot itself is cut short: one line, nothing kept."""
    import hashlib

    files = members(exported)
    del files["manifest.json"]
    record = json.loads(files["run.json"])
    name = record["source"]["snapshot"]["file"]
    files[name] = files[name][: len(files[name]) // 2]
    record["source"]["snapshot"]["sha256"] = hashlib.sha256(files[name]).hexdigest()
    files["run.json"] = json.dumps(record).encode()
    listed = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    archive = write_archive(tmp_path / "cut-snapshot.tar.gz", with_manifest(files, listed))
    for args in (("reproduce", str(archive)), ("diff", str(archive), str(exported))):
        result = reprun(*args)
        assert result.code == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.error_lines) == 1
        assert "the snapshot '" in result.error_lines[0]
        assert "cannot be unpacked" in result.error_lines[0]
    checkouts = reprun.home / "cache" / "git" / "checkouts"
    assert not checkouts.exists() or list(checkouts.iterdir()) == []


def test_an_export_that_unpacks_beyond_the_limit_is_refused(
        reprun: Reprun, exported: Path, tmp_path: Path) -> None:
    import hashlib

    files = members(exported)
    files["output.log"] = b"\0" * (3 << 20)  # 3 MiB of zeros: a few KiB compressed
    listed = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()
              if name != "manifest.json"}
    archive = write_archive(tmp_path / "bomb.tar.gz", with_manifest(
        {k: v for k, v in files.items() if k != "manifest.json"}, listed))
    assert archive.stat().st_size < 64 << 10
    one_line(reprun("reproduce", str(archive), env={"REPRUN_EXPORT_MAX_MB": "1"}),
             f"'{archive}' would unpack to 3.0 MiB, more than the limit of 1 MiB")
    assert not [log for log in tmp_path.glob("**/output.log") if log.stat().st_size >= 3 << 20]
