"""Pipelines run for real: steps as ordinary runs in a git project, reused when unchanged, a
failed step stopping only its dependents, resume, a missing output, --force and --parallel."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, MakeProject, Reprun, init_repo, pid_alive, wait_for

# copy: its input to out.txt (a step that reads a path); fail: exits 1 unless a flag file exists;
# nothing: FINISHED without writing anything.
ENTRY_POINTS = """\
name: graph
entry_points:
  copy:
    parameters: {src: path}
    command: "cat {src} > \\"$REPRUN_OUTPUT_DIR/out.txt\\""
  flaky:
    parameters: {flag: string}
    command: "test -e {flag} && echo ok > \\"$REPRUN_OUTPUT_DIR/out.txt\\""
  nothing:
    command: "true"
  rendezvous:
    parameters: {me: string, other: string}
    command: "touch {me}; for i in $(seq 200); do test -e {other} && exit 0; sleep 0.1; done;
      exit 1"
pipelines:
"""

BRANCHES = ENTRY_POINTS + """\
  branches:
    parameters: {one: path, two: path}
    steps:
      a: {entry_point: copy, parameters: {src: "{one}"}}
      b: {entry_point: copy, parameters: {src: "{two}"}}
      c: {entry_point: copy, parameters: {src: "{a.outputs}/out.txt"}}
"""


def run_pipeline(reprun: Reprun, project: Path, name: str, *args: str) -> Any:
    return reprun("run", str(project), "-e", name, "--env-manager", "local", *args)


def record(reprun: Reprun, run_id: str) -> Any:
    shown = reprun("runs", "show", run_id, "--json")
    assert shown.code == 0, shown.stderr
    return shown.json()


def pipeline_id(stderr: str) -> str:
    line = next(x for x in stderr.splitlines() if x.startswith("reprun: pipeline run "))
    return line.split()[3]


def steps_said(stderr: str) -> dict[str, str]:
    """step name -> 'ran' / 'reused' / the status, from the lines the pipeline printed."""
    said = {}
    for line in stderr.splitlines():
        if line.startswith("reprun: step ") and ": waiting" not in line:
            name, _, rest = line.removeprefix("reprun: step ").partition(": ")
            said[name] = rest.split()[0].rstrip(",")
    return said


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    """Two inputs outside the project (a change to them is no change to the code)."""
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    one.write_text("one\n")
    two.write_text("two\n")
    return one, two


def test_multistep_example_runs_then_reuses_then_reruns_what_changed(
        reprun: Reprun, tmp_path: Path) -> None:
    project = tmp_path / "multistep"
    shutil.copytree(EXAMPLES / "multistep", project)
    init_repo(project)
    first = run_pipeline(reprun, project, "all", "-P", "alpha=0.3")
    assert first.code == 0, first.stderr
    assert steps_said(first.stderr) == {"prep": "ran", "train": "ran", "evaluate": "ran"}
    pid = pipeline_id(first.stderr)
    top = record(reprun, pid)
    assert top["kind"] == "pipeline" and top["status"] == "FINISHED"
    assert top["parameters"] == {"alpha": "0.3"}
    steps = {s["name"]: s for s in top["pipeline"]["steps"]}
    assert [s["name"] for s in top["pipeline"]["steps"]] == ["prep", "train", "evaluate"]
    assert steps["evaluate"]["needs"] == ["train", "prep"]
    assert "evaluate.mse" in top["metrics"]
    for step in steps.values():
        assert step["status"] == "FINISHED"
        run = record(reprun, step["run_id"])
        assert run["parent"] == top["run_id"] and run["kind"] == "run"
    train = record(reprun, steps["train"]["run_id"])
    prep = record(reprun, steps["prep"]["run_id"])
    assert train["parameters"]["data"] == f"{prep['output_dir']}/clean.csv"
    assert train["parameters"]["alpha"] == "0.3"

    children = reprun("runs", "list", "--where", f"parent = {pid}", "--json").json()
    assert sorted(c["run_id"] for c in children) == sorted(s["run_id"] for s in steps.values())
    assert {c["kind"] for c in children} == {"run"}
    listed = reprun("runs", "list", "--where", "kind = pipeline").stdout.splitlines()
    assert len(listed) == 2 and listed[1].endswith(" multistep / all (pipeline)")
    shown = reprun("runs", "show", pid[:8]).stdout
    assert "pipeline:    all, 3 steps\n" in shown
    assert f"step:        train (train after prep): FINISHED run {train['run_id'][:8]}\n" in shown
    assert f"parent:      {pid}\n" in reprun("runs", "show", train["run_id"]).stdout
    tree = reprun("runs", "lineage", pid[:8]).stdout.splitlines()
    assert tree[1] == f"  {prep['run_id'][:12]}  multistep / prep (FINISHED)  [step prep]"

    again = run_pipeline(reprun, project, "all", "-P", "alpha=0.3")
    assert again.code == 0, again.stderr
    assert steps_said(again.stderr) == {"prep": "reused", "train": "reused",
                                        "evaluate": "reused"}
    assert f"step train: reused {steps['train']['run_id'][:8]}" in again.stderr

    changed = run_pipeline(reprun, project, "all", "-P", "alpha=0.9")
    assert changed.code == 0, changed.stderr
    assert steps_said(changed.stderr) == {"prep": "reused", "train": "ran", "evaluate": "ran"}


def test_a_changed_input_reruns_exactly_the_steps_downstream(
        reprun: Reprun, make_project: MakeProject, data: tuple[Path, Path]) -> None:
    project = make_project(BRANCHES)
    init_repo(project)
    one, two = data
    args = ("-P", f"one={one}", "-P", f"two={two}")
    first = run_pipeline(reprun, project, "branches", *args)
    assert steps_said(first.stderr) == {"a": "ran", "b": "ran", "c": "ran"}, first.stderr
    two.write_text("two, changed\n")
    second = run_pipeline(reprun, project, "branches", *args)
    assert steps_said(second.stderr) == {"a": "reused", "b": "ran", "c": "reused"}
    one.write_text("one, changed\n")
    third = run_pipeline(reprun, project, "branches", *args)
    assert steps_said(third.stderr) == {"a": "ran", "b": "reused", "c": "ran"}
    forced = run_pipeline(reprun, project, "branches", *args, "--force", "b")
    assert steps_said(forced.stderr) == {"a": "reused", "b": "ran", "c": "reused"}


def test_a_failed_step_stops_its_dependents_not_its_siblings_and_resume_continues(
        reprun: Reprun, make_project: MakeProject, data: tuple[Path, Path],
        tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    project = make_project(ENTRY_POINTS + f"""\
  flow:
    steps:
      a: {{entry_point: flaky, parameters: {{flag: "{flag}"}}}}
      b: {{entry_point: copy, parameters: {{src: "{data[1]}"}}}}
      c: {{entry_point: copy, parameters: {{src: "{{a.outputs}}/out.txt"}}}}
""")
    init_repo(project)
    failed = run_pipeline(reprun, project, "flow")
    assert failed.code == 1
    assert steps_said(failed.stderr) == {"a": "FAILED", "b": "ran", "c": "not"}
    assert "reprun: step c: not run: step 'a' did not finish" in failed.stderr
    pid = pipeline_id(failed.stderr)
    top = record(reprun, pid)
    assert top["status"] == "FAILED"
    assert top["reason"].startswith("step a failed, 2 of 3 steps did not finish; 'reprun "
                                    f"pipeline resume {pid[:8]}' continues it")
    statuses = {s["name"]: s["status"] for s in top["pipeline"]["steps"]}
    assert statuses == {"a": "FAILED", "b": "FINISHED", "c": None}
    b_run = top["pipeline"]["steps"][1]["run_id"]

    flag.write_text("")
    resumed = reprun("pipeline", "resume", pid[:8])
    assert resumed.code == 0, resumed.stderr
    assert steps_said(resumed.stderr) == {"a": "ran", "c": "ran"}
    top = record(reprun, pid)
    assert top["status"] == "FINISHED" and top["pipeline"]["resumed"] == 1
    steps = {s["name"]: s for s in top["pipeline"]["steps"]}
    assert steps["b"]["run_id"] == b_run
    assert len(steps["a"]["attempts"]) == 1
    again = reprun("pipeline", "resume", pid[:8])
    assert again.code == 2
    assert again.error_lines == [f"reprun: error: pipeline run {pid[:8]} FINISHED: every step "
                                 f"ran; see 'reprun runs show {pid[:8]}'"]


def test_a_step_that_did_not_write_what_the_next_reads_is_one_line(
        reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project(ENTRY_POINTS + """\
  gap:
    steps:
      a: {entry_point: nothing}
      c: {entry_point: copy, parameters: {src: "{a.outputs}/out.txt"}}
""")
    init_repo(project)
    result = run_pipeline(reprun, project, "gap")
    assert result.code == 1
    lines = [x for x in result.stderr.splitlines() if x.startswith("reprun: step c:")]
    assert len(lines) == 1
    top = record(reprun, pipeline_id(result.stderr))
    a_run = top["pipeline"]["steps"][0]["run_id"]
    assert lines[0] == (
        f"reprun: step c: FAILED (no run): step 'c': parameter 'src' ({{a.outputs}}/out.txt) "
        f"names 'out.txt', which step 'a' (run {a_run[:8]}) FINISHED without writing; make "
        "'a' write out.txt into REPRUN_OUTPUT_DIR, or fix the path in the MLproject")


def test_independent_steps_run_in_parallel(reprun: Reprun, make_project: MakeProject,
                                           tmp_path: Path) -> None:
    left, right = tmp_path / "left", tmp_path / "right"
    project = make_project(ENTRY_POINTS + f"""\
  meet:
    steps:
      l: {{entry_point: rendezvous, parameters: {{me: "{left}", other: "{right}"}}}}
      r: {{entry_point: rendezvous, parameters: {{me: "{right}", other: "{left}"}}}}
""")
    init_repo(project)
    result = run_pipeline(reprun, project, "meet", "--parallel", "2")
    assert result.code == 0, result.stderr
    assert steps_said(result.stderr) == {"l": "ran", "r": "ran"}


@pytest.mark.parametrize(("args", "message"), [
    (("-P", "nope=1"), "reprun: error: parameter 'nope': pipeline 'branches' has no such "
                       "parameter; its parameters: one, two"),
    (("--force", "zz"), "reprun: error: --force zz: the pipeline has no such step; give one "
                        "of: all, a, b, c"),
    (("--detach",), "reprun: error: --detach does not apply to pipeline 'branches': this "
                    "reprun starts each step when the steps it needs have finished; leave "
                    "--detach out (steps may still run remotely)"),
])
def test_bad_pipeline_arguments_are_one_line(reprun: Reprun, make_project: MakeProject,
                                             data: tuple[Path, Path], args: tuple[str, ...],
                                             message: str) -> None:
    project = make_project(BRANCHES)
    extra = () if args[0] == "-P" else ("-P", f"one={data[0]}", "-P", f"two={data[1]}")
    result = run_pipeline(reprun, project, "branches", *args, *extra)
    assert result.code == 2
    assert result.error_lines == [message]


def test_pipeline_options_on_an_entry_point_are_a_usage_error(
        reprun: Reprun, make_project: MakeProject, data: tuple[Path, Path]) -> None:
    project = make_project(BRANCHES)
    result = reprun("run", str(project), "-e", "copy", "-P", f"src={data[0]}", "--parallel", "2")
    assert result.code == 2
    assert result.error_lines == ["reprun: error: --parallel and --force apply to pipelines; "
                                  "'copy' is not one of this project; leave them out, or give "
                                  "-e PIPELINE"]


def test_resume_of_a_run_that_is_no_pipeline(reprun: Reprun, make_project: MakeProject,
                                              data: tuple[Path, Path]) -> None:
    project = make_project(BRANCHES)
    done = reprun("run", str(project), "-e", "copy", "-P", f"src={data[0]}",
                  "--env-manager", "local")
    assert done.code == 0, done.stderr
    run_id = json.loads(reprun("runs", "list", "--json").stdout)[0]["run_id"]
    result = reprun("pipeline", "resume", run_id)
    assert result.code == 2
    assert result.error_lines == [f"reprun: error: run {run_id[:8]} is no pipeline run; give "
                                  "the id of a run of 'reprun run URI -e PIPELINE'"]


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_stops_every_running_step(reprun: Reprun, make_project: MakeProject,
                                         tmp_path: Path, signum: int, code: int) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    project = make_project(ENTRY_POINTS.replace("pipelines:\n", f"""\
  sleeper:
    parameters: {{me: string}}
    command: "echo $$ > {pids}/{{me}}; sleep 60"
pipelines:
  slow:
    steps:
      x: {{entry_point: sleeper, parameters: {{me: x}}}}
      y: {{entry_point: sleeper, parameters: {{me: y}}}}
      z: {{entry_point: copy, parameters: {{src: "{{x.outputs}}/none"}}}}
"""))
    init_repo(project)
    proc = reprun.popen("run", str(project), "-e", "slow", "--env-manager", "local",
                        "--parallel", "2")
    try:
        wait_for(lambda: len(list(pids.iterdir())) == 2)
        proc.send_signal(signum)
        _out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    top = record(reprun, pipeline_id(err))
    assert top["status"] == "KILLED"
    name = signal.Signals(signum).name
    assert top["reason"].startswith(f"interrupted by {name}; 'reprun pipeline resume")
    statuses = {s["name"]: s["status"] for s in top["pipeline"]["steps"]}
    assert statuses == {"x": "KILLED", "y": "KILLED", "z": None}
    for pid_file in pids.iterdir():
        assert not pid_alive(int(pid_file.read_text()))


def test_two_pipeline_runs_at_once_run_each_step_once(
        reprun: Reprun, make_project: MakeProject, data: tuple[Path, Path]) -> None:
    project = make_project(BRANCHES)
    init_repo(project)
    args = ("run", str(project), "-e", "branches", "--env-manager", "local",
            "-P", f"one={data[0]}", "-P", f"two={data[1]}")
    procs = [reprun.popen(*args) for _ in range(2)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    said = [steps_said(e) for e in errs]
    for step in ("a", "b", "c"):
        assert sorted(s[step] for s in said) == ["ran", "reused"], errs


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def test_kill_9_of_the_pipeline_then_resume_picks_up(
        reprun: Reprun, make_project: MakeProject, tmp_path: Path) -> None:
    pids, flag = tmp_path / "pids", tmp_path / "flag"
    pids.mkdir()
    project = make_project(ENTRY_POINTS.replace("pipelines:\n", f"""\
  holder:
    parameters: {{me: string}}
    command: "echo $$ > {pids}/{{me}}; test -e {flag} || sleep 60; echo ok >
      \\"$REPRUN_OUTPUT_DIR/out.txt\\""
pipelines:
  held:
    steps:
      x: {{entry_point: holder, parameters: {{me: x}}}}
      z: {{entry_point: copy, parameters: {{src: "{{x.outputs}}/out.txt"}}}}
"""))
    init_repo(project)
    proc = reprun.popen("run", str(project), "-e", "held", "--env-manager", "local")
    try:
        wait_for(lambda: (pids / "x").is_file() and (pids / "x").read_text().strip() != "")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    # The pipeline's guard ends the step's whole process group (bash and its sleep): nothing
    # goes on unowned.
    step_pid = int((pids / "x").read_text())
    wait_for(lambda: not group_alive(step_pid), timeout=30)
    (top,) = reprun("runs", "list", "--where", "kind = pipeline", "--json").json()
    assert top["status"] == "FAILED"  # its reprun process is gone
    flag.write_text("")
    resumed = reprun("pipeline", "resume", top["run_id"][:8])
    assert resumed.code == 0, resumed.stderr
    assert steps_said(resumed.stderr) == {"x": "ran", "z": "ran"}
    assert record(reprun, top["run_id"])["status"] == "FINISHED"
