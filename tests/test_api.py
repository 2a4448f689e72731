"""`import reprun`: runs from a script and from inside a run (the new run's parent), a pipeline,
a run in the background, the store's runs, and the exceptions the CLI maps."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from conftest import EXAMPLES, MakeProject, Reprun, init_repo

MLPROJECT = f"""\
name: api
entry_points:
  copy:
    parameters: {{src: path, n: {{type: int, default: 1}}}}
    command: "cat {{src}} > \\"$REPRUN_OUTPUT_DIR/out.txt\\"; echo 'lines: {{n}}'"
    metrics: {{stdout: true}}
  outer:
    parameters: {{src: path}}
    command: "{sys.executable} outer.py {{src}}"
"""

OUTER = """\
import json, os, sys
import reprun

inner = reprun.run(".", entry_point="copy", parameters={"src": sys.argv[1]},
                   env_manager="local")
print("inner", json.dumps({"id": inner.run_id, "parent": inner.parent,
                           "me": os.environ["REPRUN_RUN_ID"]}))
"""


def script(reprun: Reprun, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd,
                          env=reprun.env(), capture_output=True, text=True, timeout=120,
                          check=False)


def last_json(stdout: str) -> Any:
    return json.loads(stdout.strip().splitlines()[-1])


def test_run_from_a_script_and_list_runs(reprun: Reprun, make_project: MakeProject,
                                         tmp_path: Path) -> None:
    project = make_project(MLPROJECT, {"outer.py": OUTER})
    src = tmp_path / "in.txt"
    src.write_text("hello\n")
    done = script(reprun, f"""
        import json, reprun
        run = reprun.run({str(project)!r}, entry_point="copy",
                         parameters={{"src": {str(src)!r}, "n": 3}}, env_manager="local",
                         echo=False)
        found = reprun.runs(where="metrics.lines = 3 and status = FINISHED")
        print(json.dumps({{"id": run.run_id, "status": run.status, "metrics": run.metrics,
                          "out": (run.outputs / "out.txt").read_text(), "parent": run.parent,
                          "found": [r.run_id for r in found], "params": run.params}}))
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    got = last_json(done.stdout)
    assert got["status"] == "FINISHED" and got["out"] == "hello\n"
    assert got["metrics"] == {"lines": 3.0} and got["parent"] is None
    assert got["found"] == [got["id"]]
    assert got["params"] == {"src": str(src), "n": "3"}
    assert reprun.record(got["id"])["status"] == "FINISHED"  # the CLI's store


def test_errors_are_the_exceptions_the_cli_maps(reprun: Reprun, make_project: MakeProject,
                                                tmp_path: Path) -> None:
    project = make_project(MLPROJECT, {"outer.py": OUTER})
    done = script(reprun, f"""
        import reprun
        for call in (lambda: reprun.run({str(project)!r}, entry_point="copy",
                                        parameters={{"src": "in.txt", "n": "x"}}),
                     lambda: reprun.run({str(project)!r}, entry_point="nope"),
                     lambda: reprun.runs(where="metrics.x <")):
            try:
                call()
            except reprun.ReprunError as exc:
                print(type(exc).__name__, isinstance(exc, reprun.USER_ERRORS), exc.render())
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ParameterError True parameter 'src': no such file")
    assert lines[1].startswith("SpecError True proj/MLproject: unknown entry point "
                               "'nope'")
    assert lines[2].startswith("UsageError True")


def test_a_run_started_inside_a_run_is_its_child(reprun: Reprun, make_project: MakeProject,
                                                 tmp_path: Path) -> None:
    project = make_project(MLPROJECT, {"outer.py": OUTER})
    src = tmp_path / "in.txt"
    src.write_text("hello\n")
    outer = reprun("run", str(project), "-e", "outer", "-P", f"src={src}",
                   "--env-manager", "local", cwd=project)
    assert outer.code == 0, outer.stderr
    line = next(x for x in outer.stdout.splitlines() if x.startswith("inner "))
    got = json.loads(line.removeprefix("inner "))
    assert got["parent"] == got["me"]
    inner = reprun.record(got["id"])
    assert inner["parent"] == got["me"] and inner["status"] == "FINISHED"
    shown = reprun("runs", "show", got["id"]).stdout
    assert f"parent:      {got['me']}\n" in shown


def test_a_pipeline_and_a_run_in_the_background(reprun: Reprun, tmp_path: Path) -> None:
    project = tmp_path / "multistep"
    shutil.copytree(EXAMPLES / "multistep", project)
    init_repo(project)
    done = script(reprun, f"""
        import json, reprun
        first = reprun.run({str(project)!r}, entry_point="all", parameters={{"alpha": 0.3}},
                           env_manager="local", synchronous=False, echo=False)
        first.wait()
        again = reprun.run({str(project)!r}, entry_point="all", parameters={{"alpha": 0.3}},
                           env_manager="local", echo=False)
        steps = again.record.pipeline.steps
        print(json.dumps({{"kind": first.record.kind, "status": first.status,
                          "mse": first.metrics["evaluate.mse"],
                          "reused": [s.reused_from is not None for s in steps]}}))
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    got = last_json(done.stdout)
    assert got["kind"] == "pipeline" and got["status"] == "FINISHED"
    assert got["mse"] > 0
    assert got["reused"] == [True, True, True]


def test_a_sweep_from_a_script(reprun: Reprun, make_project: MakeProject,
                               tmp_path: Path) -> None:
    project = make_project(MLPROJECT, {"outer.py": OUTER})
    src = tmp_path / "in.txt"
    src.write_text("hello\n")
    done = script(reprun, f"""
        import json, reprun
        runs = reprun.sweep({str(project)!r}, {{"src": [{str(src)!r}], "n": [2, 5]}},
                            entry_point="copy", env_manager="local", parallel=2,
                            metric="metrics.lines", goal="max")
        print(json.dumps([[r.status, r.metrics["lines"], r.record.sweep.trial] for r in runs]))
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert last_json(done.stdout) == [["FINISHED", 2.0, 0], ["FINISHED", 5.0, 1]]
