"""The model registry through the real CLI: runs that write a model (a plain file model, and an
MLflow-format folder), versions, aliases and their history, get, reproduce, the MLproject's
``models:``, and every bad input of the issue (one line, exit 2; 1 for the store)."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MakeProject, Reprun, init_repo
from test_faults import Mount, fill, small_fs  # noqa: F401 (small_fs: a fixture)

TRAIN = """
import json, os, random, sys
out = os.environ["REPRUN_OUTPUT_DIR"]
seed = sys.argv[1]
noisy = sys.argv[2] == "yes"
os.makedirs(os.path.join(out, "model"), exist_ok=True)
weights = f"weights {seed} {random.random() if noisy else ''}\\n"
open(os.path.join(out, "model", "weights.txt"), "w").write(weights)
open(os.path.join(out, "model", "MLmodel"), "w").write(
    "flavors:\\n  python_function: {loader_module: toy}\\n  toy: {}\\n"
    "signature:\\n  inputs: '[{\\"type\\": \\"double\\"}]'\\n"
    "  outputs: '[{\\"type\\": \\"long\\"}]'\\n")
open(os.path.join(out, "report.txt"), "w").write("done\\n")
rmse = 0.5 + (random.random() if noisy else 0)
with open(os.environ["REPRUN_METRICS"], "a") as stream:
    stream.write(json.dumps({"rmse": rmse}) + "\\n")
"""
MLPROJECT = """
name: toy
entry_points:
  main:
    parameters:
      seed: {type: string, default: "1"}
      noisy: {type: string, default: "no"}
    command: "python train.py {seed} {noisy}"
"""


@pytest.fixture
def project(make_project: MakeProject) -> Path:
    directory = make_project(MLPROJECT, files={"train.py": TRAIN})
    init_repo(directory)
    return directory


def run(reprun: Reprun, project: Path, *params: str) -> str:
    args = [a for p in params for a in ("-P", p)]
    result = reprun("run", str(project), "--env-manager", "local", "-q", *args)
    assert result.code == 0, result.stderr
    return str(reprun.last_record()["run_id"])


def ok(reprun: Reprun, *args: str) -> str:
    result = reprun(*args)
    assert result.code == 0, result.stderr
    return result.stdout + result.stderr


def one_error(reprun: Reprun, *args: str, code: int = 2) -> str:
    result = reprun(*args)
    assert result.code == code, (result.stdout, result.stderr)
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.error_lines[0]


def test_register_show_alias_get(reprun: Reprun, project: Path, tmp_path: Path) -> None:
    run_id = run(reprun, project, "seed=7")
    ok(reprun, "models", "register", "toy", run_id[:8], "--description", "first",
       "--tag", "team=forecast")
    version = json.loads(ok(reprun, "models", "show", "toy:1", "--json").split("\nreprun")[0])
    assert version["run_id"] == run_id and version["path"] == "model"  # the MLflow model
    assert sorted(f["path"] for f in version["files"]) == ["MLmodel", "weights.txt"]
    assert version["mlflow_model"]["flavors"] == ["python_function", "toy"]
    assert version["mlflow_model"]["signature"]["outputs"] == '[{"type": "long"}]'
    assert version["metrics"] == {"rmse": 0.5}
    assert version["tags"] == {"team": "forecast"} and version["description"] == "first"
    lineage = version["lineage"]
    assert lineage["commit"] and lineage["parameters"]["seed"] == "7"
    assert lineage["lock_file"] and lineage["env_manager"] == "local"
    record = reprun.record(run_id)
    produced = {o["path"]: o["digest"] for o in record["outputs"]}
    assert {f["digest"] for f in version["files"]} == {produced["model/MLmodel"],
                                                       produced["model/weights.txt"]}
    # A file of the outputs as version 2; alias moves are kept with who, when and from where.
    ok(reprun, "models", "register", "toy", f"{run_id}:report.txt")
    ok(reprun, "models", "alias", "toy", "1", "production")
    ok(reprun, "models", "alias", "toy", "2", "production")
    shown = reprun("models", "show", "toy", "--json").json()
    assert [v["version"] for v in shown["versions"]] == [1, 2]
    assert shown["aliases"] == {"production": 2}
    moves = [(m["alias"], m["version"], m["previous"]) for m in shown["alias_history"]]
    assert moves == [("production", 1, None), ("production", 2, 1)]
    assert all(m["by"] and m["at"] for m in shown["alias_history"])
    text = ok(reprun, "models", "show", "toy@production")
    assert "toy version 2  @production" in text and "report.txt (file" in text
    listed = reprun("models", "list", "--json").json()
    assert listed == [{"name": "toy", "versions": 2, "latest": 2,
                       "aliases": {"production": 2}, "updated_at": listed[0]["updated_at"],
                       "description": None, "run_id": run_id}]
    for args in (["list"], ["show", "toy"], ["show", "toy@production"]):  # no pydantic, no yaml
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "runner", "models",
                               *args], env=reprun.env(), capture_output=True, text=True,
                              check=True)
        assert "toy" in proc.stdout
        assert "pydantic" not in proc.stderr and " yaml" not in proc.stderr, args
    out = tmp_path / "got"
    ok(reprun, "models", "get", "toy:1", "-o", str(out))
    assert (out / "weights.txt").read_text() == "weights 7 \n"
    ok(reprun, "models", "alias", "toy", "production", "--delete")
    assert reprun("models", "show", "toy", "--json").json()["aliases"] == {}


def test_a_version_survives_its_run_and_get_checks_digests(reprun: Reprun, project: Path,
                                                           tmp_path: Path) -> None:
    run_id = run(reprun, project)
    ok(reprun, "models", "register", "toy", run_id)
    line = one_error(reprun, "runs", "delete", run_id[:8], "--yes")
    assert f"run {run_id[:12]} made model version(s) toy@1; pass --force" in line
    ok(reprun, "runs", "delete", run_id[:8], "--yes", "--force")
    ok(reprun, "models", "get", "toy@latest", "-o", str(tmp_path / "a"))
    assert (tmp_path / "a" / "MLmodel").is_file()
    # A blob changed behind the store's back: get names the file and writes nothing.
    version = reprun("models", "show", "toy:1", "--json").json()
    digest = next(f["digest"] for f in version["files"] if f["path"] == "weights.txt")
    blob = reprun.home / "models" / ".blobs" / digest.partition(":")[2]
    blob.chmod(stat.S_IWUSR | stat.S_IRUSR)
    blob.write_text("tampered\n")
    line = one_error(reprun, "models", "get", "toy:1", "-o", str(tmp_path / "b"), code=1)
    assert "'weights.txt' of toy version 1 does not match its digest" in line
    assert not (tmp_path / "b").exists()
    assert "no longer in the store" in one_error(reprun, "models", "reproduce", "toy:1")


def test_outputs_without_mlflow_model_and_several_models(reprun: Reprun,
                                                         make_project: MakeProject) -> None:
    plain = make_project("entry_points:\n  main:\n    command: 'echo 1 > $REPRUN_OUTPUT_DIR/a.bin"
                         " && mkdir -p $REPRUN_OUTPUT_DIR/d && echo 2 > $REPRUN_OUTPUT_DIR/d/b'\n",
                         name="plain")
    run_id = run(reprun, plain)
    ok(reprun, "models", "register", "plain", run_id)
    version = reprun("models", "show", "plain", "--json").json()["versions"][0]
    assert version["size"] == 4
    full = reprun("models", "show", "plain:1", "--json").json()
    assert full["path"] == "" and [f["path"] for f in full["files"]] == ["a.bin", "d/b"]
    assert full["mlflow_model"] is None
    two = make_project("entry_points:\n  main:\n    command: 'for m in m1 m2; do mkdir -p "
                       "$REPRUN_OUTPUT_DIR/$m && echo x > $REPRUN_OUTPUT_DIR/$m/MLmodel; done'\n",
                       name="two")
    run_id = run(reprun, two)
    line = one_error(reprun, "models", "register", "two", run_id)
    assert "wrote 2 MLflow models (m1, m2); name one: RUN:PATH" in line
    ok(reprun, "models", "register", "two", f"{run_id}:m2")


def test_mlproject_models_register_each_finished_run(reprun: Reprun, make_project: MakeProject,
                                                     project: Path) -> None:
    text = MLPROJECT + "    models: {toy: model, everything: .}\n"
    (project / "MLproject").write_text(text)
    first = run(reprun, project, "seed=1")
    again = run(reprun, project, "seed=1")  # the same files: no new version
    other = run(reprun, project, "seed=2")
    shown = reprun("models", "show", "toy", "--json").json()
    assert [(v["version"], v["runs"]) for v in shown["versions"]] == [(1, [first, again]),
                                                                       (2, [other])]
    assert len(reprun("models", "show", "everything", "--json").json()["versions"]) == 2
    failing = make_project(MLPROJECT.replace("python train.py", "false && ") +
                           "    models: {never: model}\n", name="failing")
    result = reprun("run", str(failing), "--env-manager", "local", "-q")
    assert result.code != 0
    assert "no model named 'never'" in one_error(reprun, "models", "show", "never")


def test_reproduce_identical_and_not(reprun: Reprun, project: Path) -> None:
    same = run(reprun, project, "seed=3")
    ok(reprun, "models", "register", "same", same)
    result = reprun("models", "reproduce", "same", "--check")
    assert result.code == 0, result.stderr
    assert "same version 1 reproduced identically by run" in result.stderr
    assert "metric rmse: 0.5 -> 0.5 (same)" in result.stderr
    noisy = run(reprun, project, "noisy=yes")
    ok(reprun, "models", "register", "noisy", noisy)
    ok(reprun, "models", "alias", "noisy", "1", "champion")
    result = reprun("models", "reproduce", "noisy@champion")
    assert result.code == 1, result.stderr
    assert "noisy version 1 NOT reproduced identically by run" in result.stderr
    assert re.search(r"metric rmse: [0-9.]+ -> [0-9.]+ \([+-]", result.stderr), result.stderr


BAD_NAMES = ["a/b", "..", "a..b", "a b", "a\x01b", "_x", ""]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names(reprun: Reprun, name: str) -> None:
    line = one_error(reprun, "models", "register", name, "0123abcd")
    assert "model name '" in line and "use letters, digits" in line


def test_bad_references_and_aliases(reprun: Reprun, project: Path) -> None:
    run_id = run(reprun, project)
    ok(reprun, "models", "register", "toy", run_id)
    cases = [
        (("models", "show", "nope"), "no model named 'nope'"),
        (("models", "show", "toy:9"), "model 'toy' has no version 9 (versions 1 to 1)"),
        (("models", "show", "toy:x"), "version 'x' of 'toy' is not a number from 1"),
        (("models", "show", "toy@prod"), "model 'toy' has no alias 'prod' (aliases: none)"),
        (("models", "alias", "toy", "1", "3"), "alias '3' looks like a version"),
        (("models", "alias", "toy", "1", "v2"), "alias 'v2' looks like a version"),
        (("models", "alias", "toy", "2", "prod"), "model 'toy' has no version 2"),
        (("models", "alias", "toy", "prod", "--delete"), "model 'toy' has no alias 'prod'"),
        (("models", "alias", "toy", "1", "a/b"), "alias 'a/b' contains '/'"),
        (("models", "register", "toy", "feedbeef"), "feedbeef"),
        (("models", "register", "toy", f"{run_id}:../x"), "is not a relative path inside"),
        (("models", "register", "toy", f"{run_id}:/etc/passwd"), "is not a relative path"),
        (("models", "register", "toy", f"{run_id}:nothing"), "has no output 'nothing'"),
        (("models", "register", "toy", run_id, "--tag", "novalue"), "is not KEY=VALUE"),
    ]
    for args, expected in cases:
        assert expected in one_error(reprun, *args), args
    assert len(reprun("models", "show", "toy", "--json").json()["versions"]) == 1


def test_paths_that_leave_the_outputs_or_changed(reprun: Reprun, project: Path,
                                                 tmp_path: Path) -> None:
    run_id = run(reprun, project)
    outputs = Path(reprun.record(run_id)["output_dir"])
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("s")
    (outputs / "out-link").symlink_to(secret)
    (outputs / "model" / "link").symlink_to(secret / "key")
    line = one_error(reprun, "models", "register", "toy", f"{run_id}:out-link")
    assert "'out-link' of run" in line and "leads out of its output directory" in line
    line = one_error(reprun, "models", "register", "toy", f"{run_id}:model")
    assert "'model/link' of run" in line and "leads out" in line
    (outputs / "model" / "link").unlink()
    (outputs / "model" / "weights.txt").write_text("changed\n")
    line = one_error(reprun, "models", "register", "toy", f"{run_id}:model")
    assert "'model/weights.txt' of run" in line and "has changed since the run" in line
    assert not (reprun.home / "models" / "toy" / "versions" / "1.json").exists()


def test_a_run_that_did_not_finish(reprun: Reprun, make_project: MakeProject) -> None:
    failing = make_project("entry_points:\n  main:\n    command: 'exit 3'\n", name="failing")
    reprun("run", str(failing), "--env-manager", "local", "-q")
    run_id = reprun.last_record()["run_id"]
    line = one_error(reprun, "models", "register", "m", run_id)
    assert f"run {run_id[:8]} is FAILED, not FINISHED" in line


def test_two_registers_at_once_number_densely(reprun: Reprun, project: Path) -> None:
    """Two processes, each registering ten times as fast as it can: twenty versions, 1 to 20."""
    run_id = run(reprun, project)
    script = ("import sys\nfrom runner.cli import main\n"
              "for _ in range(10):\n"
              "    try:\n        main(['models', 'register', 'race', sys.argv[1]])\n"
              "    except SystemExit as exc:\n        assert exc.code == 0, exc.code\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, run_id], env=reprun.env(),
                              cwd=reprun.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    versions = reprun("models", "show", "race", "--json").json()["versions"]
    assert [v["version"] for v in versions] == list(range(1, 21))
    files = [p.name for p in (reprun.home / "models" / "race" / "versions").iterdir()]
    assert sorted(files, key=lambda f: int(f[:-5])) == [f"{n}.json" for n in range(1, 21)]


def test_a_full_disk_during_register(reprun: Reprun, make_project: MakeProject,
                                     small_fs: Mount) -> None:  # noqa: F811
    """A real full file system: one line, exit 1, no version and no part of a file left; once
    there is room again, the next version is 1."""
    store = Reprun(small_fs("8m") / "home", reprun.cwd)
    big = make_project("entry_points:\n  main:\n    command: 'mkdir $REPRUN_OUTPUT_DIR/m && "
                       "head -c 1000000 /dev/urandom > $REPRUN_OUTPUT_DIR/m/weights'\n",
                       name="big")
    run_id = run(store, big)
    fill(store.home)
    line = one_error(store, "models", "register", "big", run_id, code=1)
    assert "is full (No space left on device): no version was registered" in line
    models = store.home / "models"
    leftovers = [p.name for p in models.rglob("*") if p.is_file() and p.name != ".lock"]
    assert leftovers == [], leftovers
    for filler in store.home.glob("filler*"):
        filler.unlink()
    ok(store, "models", "register", "big", run_id)
    assert [v["version"] for v in store("models", "show", "big", "--json").json()["versions"]] \
        == [1]


def test_serve_refuses_what_it_cannot_serve(reprun: Reprun, make_project: MakeProject) -> None:
    """A model of a run whose environment has no mlflow (reprun's own has none), and files that
    are no MLflow model: one line each, exit 2, nothing started."""
    project = make_project("entry_points:\n  main:\n    command: 'mkdir $REPRUN_OUTPUT_DIR/m "
                           "&& echo \"flavors: {{python_function: {{}}}}\" > "
                           "$REPRUN_OUTPUT_DIR/m/MLmodel && echo 1 > $REPRUN_OUTPUT_DIR/x'\n",
                           name="nomlflow")
    run_id = run(reprun, project)
    ok(reprun, "models", "register", "bare", run_id)
    ok(reprun, "models", "register", "plain", f"{run_id}:x")
    line = one_error(reprun, "models", "serve", "bare")
    assert "the environment of bare version 1 has no mlflow" in line
    line = one_error(reprun, "models", "serve", "plain@latest")
    assert "plain version 1 is not an MLflow model (no MLmodel file)" in line
