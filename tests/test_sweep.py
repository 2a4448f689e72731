"""reprun sweep through the real CLI: trials in parallel, their records, failures, Ctrl-C, resume,
reuse and an Optuna search."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeProject, Reprun, pid_alive, wait_for

# A tiny objective: loss = (x - 0.3)^2 + n, printed as a metric line.
TRAIN = """
    import os, sys, time
    x, n = float(sys.argv[1]), int(sys.argv[2])
    if os.environ.get("FAIL_AT") == sys.argv[1]:
        sys.exit(3)
    print(f"loss: {(x - 0.3) ** 2 + n}")
"""
MLPROJECT = """
    name: sq
    entry_points:
      main:
        parameters:
          x: {type: float, default: 1}
          n: {type: int, default: 2}
          label: {type: string, default: none}
        command: "python train.py {x} {n}"
        metrics:
          stdout: true
"""






@pytest.fixture
def project(make_project: MakeProject) -> Path:
    return make_project(MLPROJECT, files={"train.py": TRAIN})


def sweep_id_of(stderr: str) -> str:
    for line in stderr.splitlines():
        if line.startswith("reprun: sweep s"):
            return line.split()[2].rstrip(":")
    raise AssertionError(f"no sweep id in: {stderr}")


def sweep_record(reprun: Reprun, sweep_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (reprun.home / "sweeps" / sweep_id / "sweep.json").read_text())
    return data


def test_grid_in_parallel_builds_the_environment_once(reprun: Reprun, project: Path) -> None:
    result = reprun("sweep", str(project), "-P", "x=0:1:0.25", "-P", "n=1,2", "--parallel", "2",
                    "--metric", "metrics.loss:min", "--verbose", "--env-manager", "uv")
    assert result.code == 0, result.stderr
    builds = [line for line in result.stderr.splitlines()
              if "building the uv environment" in line and line.endswith("...")]
    assert len(builds) == 1, result.stderr  # before the first trial, by the sweep itself
    assert result.stderr.index(builds[0]) < result.stderr.index("trial 0")
    sweep_id = sweep_id_of(result.stderr)
    assert "best loss=1.0025 (trial 2" in result.stderr.splitlines()[-1]

    listed = reprun("runs", "list", "--where", f"sweep = {sweep_id}", "-c", "trial,params.x,"
                    "params.n,metrics.loss,sweep", "--sort", "trial", "--json").json()
    assert [row["trial"] for row in listed] == list(range(10))
    assert [(row["params.x"], row["params.n"]) for row in listed[:3]] == [
        ("0", "1"), ("0", "2"), ("0.25", "1")]
    assert {row["sweep"] for row in listed} == {sweep_id}
    plain = reprun("runs", "list", "--json").json()
    assert {row["sweep"] for row in plain} == {sweep_id} and plain[0]["trial"] is not None
    record = reprun.record(listed[4]["run_id"])
    assert record["sweep"] == {"id": sweep_id, "trial": 4}
    assert record["parameters"]["label"] == "none"  # the defaults, as for reprun run
    locks = {reprun.record(r["run_id"])["environment"]["cache_key"] for r in listed}
    assert len(locks) == 1

    saved = sweep_record(reprun, sweep_id)
    assert saved["status"] == "FINISHED" and saved["spec"]["params"] == ["x=0:1:0.25", "n=1,2"]
    assert saved["spec"]["options"]["env_manager"] == "uv"
    assert [t["status"] for t in saved["trials"]] == ["FINISHED"] * 10

    shown = reprun("sweep", "show", sweep_id[:6], "--csv")
    assert shown.code == 0, shown.stderr
    rows = shown.stdout.splitlines()
    assert rows[0] == "rank,trial,status,loss,x,n,run_id"
    assert rows[1].startswith("1,2,FINISHED,1.0025,0.25,1,")  # the best first
    last = rows[-1].split(",")
    assert last[:3] == ["10", "9", "FINISHED"] and float(last[3]) == pytest.approx(2.49)
    as_json = reprun("sweep", "show", sweep_id, "--json").json()
    assert as_json["trials"][0]["index"] == 2
    listing = reprun("sweep", "list")
    assert sweep_id in listing.stdout and "10/10" in listing.stdout


def test_dry_run_lists_the_trials_and_runs_nothing(reprun: Reprun, project: Path) -> None:
    result = reprun("sweep", str(project), "-P", "x=loguniform(1e-4,1e-1)", "-P", "n=3..8",
                    "--random", "5", "--seed", "7", "--dry-run", "--json")
    assert result.code == 0, result.stderr
    trials = result.json()["trials"]
    assert len(trials) == 5 and trials == reprun(
        "sweep", str(project), "-P", "x=loguniform(1e-4,1e-1)", "-P", "n=3..8", "--random",
        "5", "--seed", "7", "--dry-run", "--json").json()["trials"]
    assert all(3 <= int(t["n"]) <= 8 for t in trials)
    text = reprun("sweep", str(project), "-P", "x=1,2", "-P", "label==a,b", "--dry-run")
    assert text.stdout.splitlines() == ["TRIAL  x  label", "0      1  a,b", "1      2  a,b"]
    assert not (reprun.home / "runs").exists() and not (reprun.home / "sweeps").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["-P", "n=1,2.5"], "parameter 'n': '2.5' is not a whole number (declared type int); "
                        "pass for example -P n=10"),
    (["-P", "x=uniform(0,1)"], "-P x=uniform(0,1): a distribution has no grid; add --random N"),
    (["-P", "label=uniform(0,1)", "--random", "2"], "'label' is a string parameter"),
    (["-P", "x=1", "--optimize", "metrics.loss", "--trials", "2"],
     "--optimize metrics.loss: say which way is better"),
    (["-P", "x=1", "--trials", "3"], "--trials goes with --optimize"),
    (["-P", "x"], "malformed parameter '-P x'"),
])
def test_bad_sweeps_are_one_line_and_run_nothing(reprun: Reprun, project: Path, args: list[str],
                                                  message: str) -> None:
    result = reprun("sweep", str(project), *args, "--env-manager", "local")
    assert result.code == 2, result.stderr
    assert len(result.error_lines) == 1 and message in result.error_lines[0], result.stderr
    assert not (reprun.home / "runs").exists()


def test_sweep_without_a_project_is_one_line(reprun: Reprun) -> None:
    result = reprun("sweep")
    assert result.code == 2 and result.error_lines == [
        "reprun: error: give the project to sweep (reprun sweep URI -P NAME=SPEC...), or show, "
        "resume or list; see 'reprun sweep --help'"]
    assert reprun("sweep", "show", "nope").error_lines == [
        "reprun: error: no sweep matches 'nope'; see 'reprun sweep list'"]


def test_an_environment_that_cannot_be_built_fails_the_sweep_before_any_trial(
        reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("""
        name: bad
        python_env: python_env.yaml
        entry_points:
          main:
            parameters: {k: {type: int, default: 0}}
            command: "echo {k}"
    """, files={"python_env.yaml": "dependencies: [no-such-package-reprun-xyz==1.0]\n"})
    result = reprun("sweep", str(project), "-P", "k=1,2", "--env-manager", "uv")
    assert result.code == 1
    assert len(result.error_lines) == 1
    assert "'no-such-package-reprun-xyz' not found" in result.error_lines[0]
    (sweep_dir,) = (reprun.home / "sweeps").iterdir()
    saved = sweep_record(reprun, sweep_dir.name)
    assert saved["status"] == "FAILED" and saved["runner"] is None
    assert saved["reason"].startswith("the environment could not be built: package")
    assert [t["status"] for t in saved["trials"]] == [None, None]
    assert not (reprun.home / "runs").exists() or not list((reprun.home / "runs").iterdir())


def test_a_failed_trial_does_not_stop_the_others(reprun: Reprun, project: Path) -> None:
    result = reprun("sweep", str(project), "-P", "x=0.1,0.2,0.3", "--parallel", "2",
                    "--metric", "loss:min", "--env-manager", "local", env={"FAIL_AT": "0.2"})
    assert result.code == 1
    sweep_id = sweep_id_of(result.stderr)
    saved = sweep_record(reprun, sweep_id)
    assert [t["status"] for t in saved["trials"]] == ["FINISHED", "FAILED", "FINISHED"]
    assert saved["trials"][1]["reason"] == "command exited with code 3"
    assert saved["status"] == "FAILED" and saved["reason"] == "1 of 3 trials failed"
    assert "1 failed" in result.stderr.splitlines()[-1]
    shown = reprun("sweep", "show", sweep_id, "--csv").stdout.splitlines()
    assert shown[-1].startswith("3,1,FAILED,,0.2,")  # failed trials last
    listed = reprun("sweep", "list", "--json")
    assert listed.code == 0, listed.stderr
    best = next(t for t in saved["trials"] if t["index"] == 2)  # loss (x - 0.3)^2 + 2: x=0.3
    assert listed.json() == [{
        "sweep_id": sweep_id, "status": "FAILED", "created_at": saved["created_at"],
        "mode": "grid", "trials_done": 2, "trials_total": 3, "metric": "loss", "goal": "min",
        "best": {"value": best["value"], "trial": 2, "run_id": best["run_id"]},
        "project": "sq"}]
    assert "2/3" in reprun("sweep", "list").stdout


@pytest.mark.parametrize("option", [["--max-failures", "2"], ["--fail-fast"]])
def test_max_failures_stops_starting_trials(reprun: Reprun, project: Path,
                                            option: list[str]) -> None:
    result = reprun("sweep", str(project), "-P", "x=0.1:0.6:0.1", "--env-manager", "local",
                    *option, env={"FAIL_AT": "0.1"})  # only 0.1 fails: then a real failure
    assert result.code == 1
    saved = sweep_record(reprun, sweep_id_of(result.stderr))
    statuses = [t["status"] for t in saved["trials"]]
    if option == ["--fail-fast"]:
        assert statuses == ["FAILED"] + [None] * 5
        assert saved["reason"] == "stopped at the first failed trial (--fail-fast)"
    else:
        assert statuses == ["FAILED"] + ["FINISHED"] * 5  # one failure is under the cap


def test_max_failures_counts_failures(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("""
        entry_points:
          main:
            parameters: {k: {type: int, default: 0}}
            command: "test {k} -ge 3"
    """)
    result = reprun("sweep", str(project), "-P", "k=0..5", "--max-failures", "2",
                    "--env-manager", "local")
    assert result.code == 1
    saved = sweep_record(reprun, sweep_id_of(result.stderr))
    assert [t["status"] for t in saved["trials"]] == ["FAILED", "FAILED", None, None, None, None]
    assert saved["reason"] == "stopped after 2 failed trials (--max-failures 2)"


def held_project(make_project: MakeProject, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A project whose trials wait (a ``sleep`` whose pid goes to ``pids``) while the file
    ``hold`` exists, then print their k: (project, pids, hold)."""
    pids = tmp_path / "pids"
    hold = tmp_path / "hold"
    hold.write_text("")
    project = make_project(f"""
        entry_points:
          main:
            parameters: {{k: {{type: int, default: 0}}}}
            command: 'if test -f {hold}; then sleep 300 & echo $! >> {pids}; wait; fi; echo k={{k}}'
    """)
    return project, pids, hold


def test_ctrl_c_stops_every_trial_then_resume_finishes(reprun: Reprun, tmp_path: Path,
                                                       make_project: MakeProject) -> None:
    project, pids, hold = held_project(make_project, tmp_path)
    proc = reprun.popen("sweep", str(project), "-P", "k=1..5", "--parallel", "2",
                        "--env-manager", "local", "--grace-period", "5")
    wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2)
    children = [int(p) for p in pids.read_text().split()]
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not [p for p in children if pid_alive(p)]
    sweep_id = sweep_id_of(err)
    saved = sweep_record(reprun, sweep_id)
    assert saved["status"] == "KILLED" and "sweep resume" in saved["reason"]
    assert [t["status"] for t in saved["trials"]] == ["KILLED", "KILLED", None, None, None]
    killed = [reprun.record(t["run_id"]) for t in saved["trials"][:2]]
    assert {r["status"] for r in killed} == {"KILLED"}
    assert reprun("runs", "list", "--where", "status = RUNNING", "--json").json() == []

    hold.unlink()
    resumed = reprun("sweep", "resume", sweep_id[:5])
    assert resumed.code == 0, resumed.stderr
    assert "resuming 5 trials of 5" in resumed.stderr
    saved = sweep_record(reprun, sweep_id)
    assert saved["status"] == "FINISHED" and saved["resumed"] == 1
    assert [t["status"] for t in saved["trials"]] == ["FINISHED"] * 5
    assert saved["trials"][0]["attempts"] == [killed[0]["run_id"]]
    again = reprun("sweep", "resume", sweep_id)
    assert again.code == 2 and "every trial ran" in again.error_lines[0]


def test_sigterm_with_a_stubborn_trial(reprun: Reprun, tmp_path: Path,
                                       make_project: MakeProject) -> None:
    pid_file = tmp_path / "pid"
    project = make_project(f"""
        entry_points:
          main:
            parameters: {{k: {{type: int, default: 0}}}}
            command: "trap '' INT TERM; sleep 300 & echo $! > {pid_file}; wait"
    """)
    proc = reprun.popen("sweep", str(project), "-P", "k=1,2", "--env-manager", "local",
                        "--grace-period", "1")
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    stubborn = int(pid_file.read_text())
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert not pid_alive(stubborn)
    saved = sweep_record(reprun, sweep_id_of(err))
    assert [t["status"] for t in saved["trials"]] == ["KILLED", None]


def test_resume_with_reuse_skips_what_already_ran(reprun: Reprun, project: Path) -> None:
    first = reprun("sweep", str(project), "-P", "x=0.1,0.2,0.3", "--env-manager", "local",
                   env={"FAIL_AT": "0.3"})
    assert first.code == 1
    again = reprun("sweep", str(project), "-P", "x=0.1,0.2,0.3,0.4", "--env-manager", "local",
                   "--reuse", "--metric", "loss:min")
    assert again.code == 0, again.stderr
    saved = sweep_record(reprun, sweep_id_of(again.stderr))
    reused = [reprun.record(t["run_id"])["reused_from"] for t in saved["trials"]]
    first_trials = sweep_record(reprun, sweep_id_of(first.stderr))["trials"]
    assert reused[:2] == [t["run_id"] for t in first_trials[:2]]
    assert reused[2:] == [None, None]
    assert [t["value"] for t in saved["trials"][:2]] == [pytest.approx(2.04),
                                                        pytest.approx(2.01)]


def test_optuna_search_finds_the_minimum(reprun: Reprun, project: Path) -> None:
    pytest.importorskip("optuna")
    result = reprun("sweep", str(project), "-P", "x=uniform(-2,2)", "-P", "n=1..3",
                    "--optimize", "metrics.loss:min", "--trials", "12", "--seed", "1",
                    "--parallel", "2", "--env-manager", "local", timeout=300)
    assert result.code == 0, result.stderr
    sweep_id = sweep_id_of(result.stderr)
    saved = sweep_record(reprun, sweep_id)
    assert len(saved["trials"]) == 12 and saved["spec"]["mode"] == "optimize"
    assert (reprun.home / "sweeps" / sweep_id / "optuna.journal").is_file()
    for trial in saved["trials"]:
        assert -2 <= float(trial["params"]["x"]) <= 2 and trial["params"]["n"] in "123"
        assert trial["value"] == pytest.approx((float(trial["params"]["x"]) - 0.3) ** 2
                                               + int(trial["params"]["n"]))
    best = min(t["value"] for t in saved["trials"])
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = JournalFileBackend(str(reprun.home / "sweeps" / sweep_id / "optuna.journal"))
    study = optuna.load_study(study_name=sweep_id, storage=JournalStorage(journal))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 12 and study.best_value == pytest.approx(best)  # every result told
    assert study.best_params["n"] == int(min(saved["trials"], key=lambda t: t["value"])[
        "params"]["n"])
    shown = reprun("sweep", "show", sweep_id, "--json").json()
    assert shown["trials"][0]["value"] == best


def test_optimize_without_the_metric_fails_the_trial(reprun: Reprun,
                                                    make_project: MakeProject) -> None:
    pytest.importorskip("optuna")
    project = make_project("""
        entry_points:
          main:
            parameters: {x: {type: float, default: 0}}
            command: "echo x={x}"
    """)
    result = reprun("sweep", str(project), "-P", "x=uniform(0,1)", "--optimize", "rmse:min",
                    "--trials", "2", "--env-manager", "local")
    assert result.code == 0, result.stderr  # the runs finished; the search learnt nothing
    saved = sweep_record(reprun, sweep_id_of(result.stderr))
    assert {t["reason"] for t in saved["trials"]} == {"the run reported no value of 'rmse'"}


def test_optimize_needs_the_extra_in_a_core_install(tmp_path: Path) -> None:
    """The one-line error when optuna is missing (a Python that cannot import it)."""
    code = ("import sys; sys.modules['optuna'] = None; "
            "from runner.extras import require; require('optuna', 'sweeps with --optimize')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert "sweeps with --optimize need the optuna extra: pip install 'reprun[optuna]'" in \
        done.stderr


def test_a_dead_sweep_is_shown_killed_and_resumes(reprun: Reprun, tmp_path: Path,
                                                  make_project: MakeProject) -> None:
    project, pids, hold = held_project(make_project, tmp_path)
    proc = reprun.popen("sweep", str(project), "-P", "k=1..3", "--env-manager", "local")
    wait_for(lambda: pids.exists() and pids.read_text().strip() != "")
    sweep_id = next((reprun.home / "sweeps").iterdir()).name
    busy = reprun("sweep", "resume", sweep_id)
    assert busy.code == 2 and f"sweep {sweep_id} is running" in busy.error_lines[0]
    proc.kill()  # kill -9: no chance to record anything
    proc.wait(30)
    for pid in (int(p) for p in pids.read_text().split()):
        os.killpg(os.getpgid(pid), signal.SIGKILL)  # the orphaned trial (see test_run_local)
    shown = reprun("sweep", "show", sweep_id)
    assert f"sweep {sweep_id} KILLED" in shown.stdout and "ended without finishing" in \
        shown.stdout
    hold.unlink()
    resumed = reprun("sweep", "resume", sweep_id)
    assert resumed.code == 0, resumed.stderr
    assert "resuming 3 trials of 3" in resumed.stderr
    assert sweep_record(reprun, sweep_id)["status"] == "FINISHED"


def test_show_lists_every_metric_and_ranks_by_any(reprun: Reprun, make_project: MakeProject
                                                  ) -> None:
    two = TRAIN + '    print(f"score: {10 - x}")\n'
    project = make_project(MLPROJECT, files={"train.py": two})
    result = reprun("sweep", str(project), "-P", "x=0.1,0.3,0.9", "-P", "n=0",
                    "--env-manager", "local")
    assert result.code == 0, result.stderr
    shown = reprun("sweep", "show")
    assert shown.code == 0, shown.stderr
    header = shown.stdout.splitlines()[1].split()
    assert header == ["RANK", "TRIAL", "STATUS", "loss", "score", "x", "n", "RUN_ID"]
    assert "rank the trials with --metric, e.g. --metric metrics.loss:min" in shown.stderr
    by_score = reprun("sweep", "show", "--metric", "metrics.score:max", "--csv")
    rows = [line.split(",") for line in by_score.stdout.splitlines()]
    assert rows[0][:5] == ["rank", "trial", "status", "score", "loss"]
    assert [row[3] for row in rows[1:]] == ["9.9", "9.7", "9.1"]
    by_loss = reprun("sweep", "show", "--metric", "loss:min", "--json").json()
    assert [t["params"]["x"] for t in by_loss["trials"]] == ["0.3", "0.1", "0.9"]
    assert by_loss["spec"]["metric"] == "loss"
    record = sweep_record(reprun, by_loss["sweep_id"])
    assert record["spec"]["metric"] is None  # shown ranked, not changed
    bad = reprun("sweep", "show", "--metric", "score")
    assert bad.code == 2
    assert bad.stderr.strip() == ("reprun: error: --metric score: say which way is better; "
                                  "write --metric metrics.score:min (or :max)")


def test_the_metric_the_entry_point_ranks_is_the_default(reprun: Reprun,
                                                         make_project: MakeProject) -> None:
    declared = MLPROJECT.replace("stdout: true", "stdout: true\n          better: {loss: min}")
    project = make_project(declared, files={"train.py": TRAIN})
    result = reprun("sweep", str(project), "-P", "x=0.9,0.3", "-P", "n=0",
                    "--env-manager", "local")
    assert result.code == 0, result.stderr
    assert "best loss=0" in result.stderr
    shown = reprun("sweep", "show", "--json").json()
    assert (shown["spec"]["metric"], shown["spec"]["goal"]) == ("loss", "min")
    assert shown["trials"][0]["params"]["x"] == "0.3"
