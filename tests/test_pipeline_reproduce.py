"""``reprun reproduce PIPELINE_RUN``: every step reproduced in graph order, each reading the
reproduced outputs of the steps before it, with a line per step saying whether its outputs
came out identical; a reused step reproduces the run that made its outputs."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path
from typing import Any

from conftest import EXAMPLES, MakeProject, Reprun, init_repo


def pipeline_id(stderr: str) -> str:
    line = next(x for x in stderr.splitlines() if x.startswith("reprun: pipeline run "))
    return line.split()[3]


def record(reprun: Reprun, run_id: str) -> Any:
    shown = reprun("runs", "show", run_id, "--json")
    assert shown.code == 0, shown.stderr
    return shown.json()


def step_lines(stderr: str) -> dict[str, str]:
    return {line.split()[2].rstrip(":"): line for line in stderr.splitlines()
            if line.startswith("reprun: step ")}


def test_a_pipeline_run_is_reproduced_step_by_step_and_checked(
        reprun: Reprun, tmp_path: Path) -> None:
    project = tmp_path / "multistep"
    shutil.copytree(EXAMPLES / "multistep", project)
    init_repo(project)
    for alpha in ("0.3", "0.9"):  # the second reuses prep
        result = reprun("run", str(project), "-e", "all", "-P", f"alpha={alpha}",
                        "--env-manager", "local")
        assert result.code == 0, result.stderr
    pid = pipeline_id(result.stderr)
    steps = {s["name"]: s for s in record(reprun, pid)["pipeline"]["steps"]}
    assert steps["prep"]["reused_from"] is not None

    again = reprun("reproduce", pid[:8], "--check")
    assert again.code == 0, again.stderr
    lines = step_lines(again.stderr)
    assert list(lines) == ["prep", "train", "evaluate"]
    # the reused step reproduces the run that made its outputs
    assert f"reproduces {steps['prep']['reused_from'][:8]}: FINISHED, outputs identical" in (
        lines["prep"])
    for name in ("train", "evaluate"):
        assert f"reproduces {steps[name]['run_id'][:8]}: FINISHED, outputs identical" in (
            lines[name]), again.stderr
    assert again.stderr.splitlines()[-1] == (
        f"reprun: pipeline run {pid[:8]} reproduced: 3 steps, 3 with identical outputs")
    new = {name: record(reprun, line.split()[4]) for name, line in lines.items()}
    assert new["train"]["reproduces"] == steps["train"]["run_id"]
    assert new["train"]["parameters"]["data"] == f"{new['prep']['output_dir']}/clean.csv"
    assert new["evaluate"]["parameters"]["model"].startswith(new["train"]["output_dir"] + "/")


    # the export carries the pipeline run with its steps' runs (and the run prep reused);
    # reproduced from the file in an empty store, every step comes out identical again
    exported = reprun("export", pid[:8], "-o", str(tmp_path / "pipeline.tar.gz"))
    assert exported.code == 0, exported.stderr
    with tarfile.open(tmp_path / "pipeline.tar.gz") as tar:
        names = set(tar.getnames())
    carried = {steps[n]["run_id"] for n in steps} | {steps["prep"]["reused_from"]}
    assert {n.split("/")[1] for n in names if n.startswith("runs/")} == carried
    assert {f"runs/{rid}/run.json" for rid in carried} <= names
    elsewhere = Reprun(tmp_path / "other-home", tmp_path)
    copied = elsewhere("reproduce", str(tmp_path / "pipeline.tar.gz"), "--check")
    assert copied.code == 0, copied.stderr
    assert copied.stderr.splitlines()[-1] == (
        f"reprun: pipeline run {pid[:8]} reproduced: 3 steps, 3 with identical outputs")
    listed = elsewhere("runs", "list", "--json").json()
    assert sorted(record(elsewhere, r["run_id"])["reproduces"] for r in listed) == sorted(
        [steps["prep"]["reused_from"], steps["train"]["run_id"], steps["evaluate"]["run_id"]])


GRAPH = """\
name: graph
entry_points:
  stamp:
    command: 'date +%s%N > "$REPRUN_OUTPUT_DIR/out.txt"'
  copy:
    parameters: {src: path}
    command: 'cat {src} > "$REPRUN_OUTPUT_DIR/out.txt"'
  fail:
    parameters: {flag: string}
    command: 'test ! -e {flag} && echo ok > "$REPRUN_OUTPUT_DIR/out.txt"'
pipelines:
  all:
    parameters: {flag: string}
    steps:
      a: {entry_point: stamp}
      b: {entry_point: copy, parameters: {src: "{a.outputs}/out.txt"}}
      c: {entry_point: fail, parameters: {flag: "{flag}"}}
      d: {entry_point: copy, parameters: {src: "{c.outputs}/out.txt"}}
"""


def test_outputs_that_differ_and_a_failed_step_are_reported_per_step(
        reprun: Reprun, make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project(GRAPH)
    init_repo(project)
    flag = tmp_path / "flag"
    result = reprun("run", str(project), "-e", "all", "-P", f"flag={flag}",
                    "--env-manager", "local")
    assert result.code == 0, result.stderr
    pid = pipeline_id(result.stderr)
    steps = {s["name"]: s for s in record(reprun, pid)["pipeline"]["steps"]}
    flag.touch()  # step c now fails

    again = reprun("reproduce", pid[:8], "--check")
    assert again.code == 1, again.stderr
    lines = step_lines(again.stderr)
    assert lines["a"].endswith("FINISHED, outputs different: out.txt")
    # b reads the new a's output, which differs: refused as any reproduction whose input changed
    assert lines["b"].startswith(
        f"reprun: step b: not reproduced: input 'src' of run {steps['b']['run_id'][:12]} "
        "changed: "), lines["b"]
    assert lines["b"].endswith("pass --allow-drift to run anyway and record the drift")
    assert lines["c"].endswith(f"reproduces {steps['c']['run_id'][:8]}: FAILED: command exited "
                               "with code 1, outputs missing: out.txt")
    assert lines["d"] == ("reprun: step d: not reproduced: step 'c' was not reproduced or did "
                          "not finish")
    assert again.stderr.splitlines()[-1] == (
        f"reprun: pipeline run {pid[:8]} reproduced: 4 steps, 0 with identical outputs")

    drifting = reprun("reproduce", pid[:8], "--allow-drift")  # b runs on the new a's output
    lines = step_lines(drifting.stderr)
    assert drifting.code == 1 and "FINISHED, outputs different: out.txt" in lines["b"]
