"""--backend slurm against a real one-node Slurm cluster (``.ci/slurm-setup.sh``).

Skipped where no cluster answers, unless REPRUN_REQUIRE_SLURM=1 (CI), which makes them fail.
The node has 2 CPUs and enforces memory with cgroups; partitions ``debug`` (default), ``other``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

import pytest
from conftest import MakeProject, Reprun, wait_for

PROJECT = """\
name: sl
entry_points:
  main:
    parameters:
      code: {type: int, default: 0}
    command: "python job.py {code}"
  sleep:
    parameters:
      n: {type: int, default: 0}
    command: "echo started; sleep 300"
  hog:
    command: "python -c 'b = bytearray(300 * 2**20); print(len(b))'"
"""
JOB = """\
import json, os, socket, sys
print("line one", flush=True)
print("on", socket.gethostname(), os.environ["SLURM_JOB_ID"], flush=True)
out = os.environ["REPRUN_OUTPUT_DIR"]
with open(os.path.join(out, "result.txt"), "w") as f:
    f.write("ok\\n")
with open(os.environ["REPRUN_METRICS"], "a") as f:
    f.write(json.dumps({"name": "acc", "value": 0.5}) + "\\n")
sys.exit(int(sys.argv[1]))
"""


def _no_slurm(reason: str) -> NoReturn:
    if os.environ.get("REPRUN_REQUIRE_SLURM") == "1":
        pytest.fail(f"REPRUN_REQUIRE_SLURM=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def squeue(*args: str) -> str:
    done = subprocess.run(["squeue", "-h", *args], capture_output=True, text=True, check=False,
                          timeout=30)
    return done.stdout.strip()


@pytest.fixture(scope="session")
def cluster() -> None:
    """A Slurm cluster answering ``sinfo`` (start one with: bash .ci/slurm-setup.sh)."""
    require_cluster()


def require_cluster() -> None:
    """Skip (or fail, with REPRUN_REQUIRE_SLURM=1) unless a Slurm cluster answers."""
    if shutil.which("sbatch") is None:
        _no_slurm("Slurm's commands are not installed (bash .ci/slurm-setup.sh)")
    done = subprocess.run(["sinfo", "-h", "-o", "%P %T"], capture_output=True, text=True,
                          check=False, timeout=30)
    if done.returncode != 0 or "other" not in done.stdout:
        _no_slurm(f"no Slurm cluster answers (bash .ci/slurm-setup.sh): {done.stderr.strip()}")


@pytest.fixture
def project(make_project: MakeProject, cluster: None) -> Path:
    return make_project(PROJECT, {"job.py": JOB})


def config(tmp_path: Path, **keys: Any) -> str:
    return json.dumps({"workdir": str(tmp_path / "shared"), **keys})


def run(reprun: Reprun, project: Path, conf: str, *args: str,
        env: dict[str, str] | None = None) -> tuple[Any, dict[str, Any]]:
    result = reprun("run", str(project), "--backend", "slurm", "--backend-config", conf,
                    "--env-manager", "local", *args, env=env, timeout=180)
    return result, reprun.last_record()


def test_a_run_is_a_job_with_its_log_outputs_metrics_and_accounting(
        reprun: Reprun, project: Path, tmp_path: Path) -> None:
    result, record = run(reprun, project, config(tmp_path))
    assert result.code == 0, result.stderr
    assert "line one" in result.stdout and "slurm: submitted job" in result.stderr
    facts = record["backend"]["facts"]
    assert record["status"] == "FINISHED" and record["backend"]["name"] == "slurm"
    assert f"on {os.uname().nodename.split('.')[0]} {facts['job_id']}" in reprun(
        "runs", "logs", record["run_id"]).stdout
    assert facts["sbatch_argv"][:2] == ["sbatch", "--parsable"]
    assert facts["sbatch_argv"][-1].endswith("/job.sh")
    assert facts["cluster"] == "ci" and facts["partition"] == "debug" and facts["nodes"]
    assert facts["slurm_state"] == "COMPLETED" and facts["elapsed_s"] is not None
    assert facts["start_time"] and facts["end_time"] and facts["submit_time"]
    assert [o["path"] for o in record["outputs"]] == ["result.txt"]
    assert record["metrics"]["acc"]["last"] == 0.5
    assert squeue("-j", facts["job_id"]) == ""
    assert not Path(facts["staged_dir"]).exists()  # all of it is in the store now


def test_the_environment_is_built_once_under_the_workdir(
        reprun: Reprun, project: Path, tmp_path: Path) -> None:
    conf = config(tmp_path)
    first = reprun("run", str(project), "--backend", "slurm", "--backend-config", conf)
    assert first.code == 0, first.stderr
    python = reprun.last_record()["environment"]["python_executable"]
    assert python.startswith(str(tmp_path / "shared" / "cache"))
    second = reprun("run", str(project), "--backend", "slurm", "--backend-config", conf)
    assert second.code == 0 and "building" not in second.stderr


def test_two_cold_runs_at_once_build_one_environment(
        reprun: Reprun, project: Path, tmp_path: Path) -> None:
    conf = config(tmp_path)
    procs = [reprun.popen("run", str(project), "--backend", "slurm", "--backend-config", conf)
             for _ in range(2)]
    for proc in procs:
        proc.communicate(timeout=180)
        assert proc.returncode == 0
    records = [reprun.record(r["run_id"]) for r in reprun("runs", "list", "--json").json()]
    assert len(records) == 2 and all(r["status"] == "FINISHED" for r in records)
    assert len({r["environment"]["python_executable"] for r in records}) == 1
    assert len({r["backend"]["facts"]["job_id"] for r in records}) == 2
    assert len(list((tmp_path / "shared" / "cache" / "python" / "builds").iterdir())) == 1


def test_a_sweep_is_one_job_array_two_at_a_time_and_resumes_what_failed(
        reprun: Reprun, project: Path, tmp_path: Path) -> None:
    result = reprun("sweep", str(project), "-P", "code=0,0,3", "--parallel", "2", "--backend",
                    "slurm", "--env-manager", "local", "--backend-config", config(tmp_path),
                    timeout=180)
    assert result.code == 1, result.stderr  # one trial failed
    assert "2 finished, 1 failed" in result.stderr
    records = [reprun.record(r["run_id"]) for r in reprun("runs", "list", "--json").json()]
    assert sorted(r["exit_code"] for r in records) == [0, 0, 3]
    facts = [r["backend"]["facts"] for r in records]
    assert len({f["array_job_id"] for f in facts}) == 1
    assert sorted(f["job_id"] for f in facts) == [f"{facts[0]['array_job_id']}_{i}"
                                                  for i in range(3)]
    assert all("--array=0-2%2" in f["sbatch_argv"] for f in facts)
    assert all("line one" in reprun("runs", "logs", r["run_id"]).stdout for r in records)
    assert all([o["path"] for o in r["outputs"]] == ["result.txt"] for r in records)
    sweep = re.search(r"sweep (s[0-9a-f]+):", result.stderr)
    assert sweep is not None
    again = reprun("sweep", "resume", sweep.group(1), timeout=180)
    assert again.code == 1 and "1 failed" in again.stderr, again.stderr
    listed = reprun("runs", "list", "--json").json()
    assert len(listed) == 4
    assert reprun.record(listed[0]["run_id"])["parameters"]["code"] == "3"


def test_the_settings_have_the_models_fields() -> None:
    from backends.slurm.config import SlurmConfig
    from backends.slurm.settings import Settings

    assert set(Settings.__dataclass_fields__) - {"given"} == set(SlurmConfig.model_fields)


def test_a_warm_run_imports_neither_pydantic_nor_yaml(reprun: Reprun, project: Path,
                                                      tmp_path: Path) -> None:
    conf = config(tmp_path, partition="debug")
    first, _ = run(reprun, project, conf)
    assert first.code == 0, first.stderr
    argv = ["run", str(project), "--backend", "slurm", "--backend-config", conf,
            "--env-manager", "local"]
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "runner", *argv],
                          cwd=reprun.cwd, env=reprun.env(), capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "backends.slurm.settings" in imported
    assert not {"pydantic", "yaml"} & imported


def test_a_failing_command_gives_its_exit_code(reprun: Reprun, project: Path,
                                               tmp_path: Path) -> None:
    result, record = run(reprun, project, config(tmp_path), "-P", "code=3")
    assert result.code == 3
    assert record["status"] == "FAILED" and record["exit_code"] == 3
    assert "command exited with code 3 (Slurm: FAILED" in record["reason"]
    assert record["backend"]["facts"]["slurm_exit_code"] == "3:0"


def test_a_job_over_its_memory_ends_out_of_memory(reprun: Reprun, project: Path,
                                                  tmp_path: Path) -> None:
    result, record = run(reprun, project, config(tmp_path, mem="20M"), "-e", "hog")
    assert result.code == 1
    assert record["status"] == "FAILED"
    assert record["reason"].startswith("OUT_OF_MEMORY: ") and "(mem: 20M)" in record["reason"]


def test_another_partition(reprun: Reprun, project: Path, tmp_path: Path) -> None:
    result, record = run(reprun, project, config(tmp_path, partition="other"))
    assert result.code == 0, result.stderr
    assert record["backend"]["facts"]["partition"] == "other"
    assert "--partition=other" in record["backend"]["facts"]["sbatch_argv"]


def test_a_job_pending_past_start_timeout_is_cancelled_with_its_reason(
        reprun: Reprun, project: Path, tmp_path: Path) -> None:
    conf = config(tmp_path, cpus_per_task=4, start_timeout_seconds=2, poll_seconds=0.5)
    result, record = run(reprun, project, conf)
    assert result.code == 1
    assert record["status"] == "FAILED"
    assert record["reason"].startswith("PENDING (PartitionConfig: ")
    assert "start_timeout_seconds" in record["reason"]
    assert record["reason"] in result.stderr.splitlines()[-1]
    assert squeue("-j", record["backend"]["facts"]["job_id"]) == ""


def test_ctrl_c_cancels_the_job(reprun: Reprun, project: Path, tmp_path: Path) -> None:
    proc = reprun.popen("run", str(project), "-e", "sleep", "--backend", "slurm",
                        "--env-manager", "local", "--backend-config", config(tmp_path))
    guard = threading.Timer(120, proc.kill)  # a job that never starts fails the test
    guard.start()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # followed live from the job's output file
        assert line == "started\n"
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=90)
    finally:
        guard.cancel()
        if proc.poll() is None:
            proc.kill()
    record = reprun.last_record()
    assert record["status"] == "KILLED" and "scancel" in record["reason"]
    assert squeue("-j", record["backend"]["facts"]["job_id"]) == ""


def test_ctrl_c_cancels_every_task_of_a_sweeps_array(reprun: Reprun, project: Path,
                                                     tmp_path: Path) -> None:
    proc = reprun.popen("sweep", str(project), "-e", "sleep", "-P", "n=1,2,3", "--parallel", "2",
                        "--backend", "slurm", "--env-manager", "local", "--backend-config",
                        config(tmp_path))
    try:
        wait_for(lambda: bool(reprun("sweep", "list", "--json").json()), 60)
        sweep = reprun("sweep", "list", "--json").json()[0]["sweep_id"]
        name = f"reprun-sweep-{sweep[:12]}"
        wait_for(lambda: squeue("-r", "-n", name, "-o", "%T").split().count("RUNNING") == 2, 90)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert squeue("-r", "-n", name) == "", err
    records = [reprun.record(r["run_id"]) for r in reprun("runs", "list", "--json").json()]
    assert len(records) == 3 and {r["status"] for r in records} == {"KILLED"}


def test_detach_then_show_and_cancel(reprun: Reprun, project: Path, tmp_path: Path) -> None:
    conf = config(tmp_path)
    result = reprun("run", str(project), "-e", "sleep", "--backend", "slurm", "--env-manager",
                    "local", "--backend-config", conf, "--detach")
    assert result.code == 0, result.stderr
    run_id = reprun.last_record()["run_id"]
    wait_for(lambda: "started" in reprun("runs", "logs", run_id).stdout, 30)
    assert reprun.record(run_id)["status"] == "RUNNING"
    cancelled = reprun("cancel", run_id)
    assert cancelled.code == 0, cancelled.stderr
    record = reprun.record(run_id)
    assert record["status"] == "KILLED" and "reprun cancel" in record["reason"]
    assert squeue("-j", record["backend"]["facts"]["job_id"]) == ""


def test_a_detached_run_is_completed_by_runs_show(reprun: Reprun, project: Path,
                                                  tmp_path: Path) -> None:
    result = reprun("run", str(project), "--backend", "slurm", "--env-manager", "local",
                    "--backend-config", config(tmp_path), "--detach")
    assert result.code == 0, result.stderr
    run_id = reprun.last_record()["run_id"]
    wait_for(lambda: reprun.record(run_id)["status"] != "RUNNING", 60)
    record = reprun.record(run_id)
    assert record["status"] == "FINISHED", record["reason"]
    assert [o["path"] for o in record["outputs"]] == ["result.txt"]
    assert "line one" in reprun("runs", "logs", run_id).stdout


def test_reproduce_on_another_partition(reprun: Reprun, project: Path, tmp_path: Path) -> None:
    result, original = run(reprun, project, config(tmp_path))
    assert result.code == 0, result.stderr
    again = reprun("reproduce", original["run_id"], "--check", "--backend-config",
                   '{"partition": "other"}', timeout=180)
    assert again.code == 0, again.stderr
    record = reprun.last_record()
    assert record["reproduces"] == original["run_id"] and record["backend"]["name"] == "slurm"
    assert record["backend"]["facts"]["partition"] == "other"
    assert record["backend"]["facts"]["backend_config"]["workdir"] == str(tmp_path / "shared")


@pytest.mark.parametrize(("keys", "message"), [
    ({"partitoin": "debug"}, "--backend-config partitoin: unknown key"),
    ({"cpus_per_task": "many"}, "--backend-config cpus_per_task: Input should be a valid "
                                "integer"),
    ({"extra_args": ["--wrap=echo hi"]}, "--wrap is set by reprun"),
    ({"extra_args": ["--mem=1G;id"]}, "contains a space or a shell character"),
    ({"extra_args": "--exclusive"}, "--backend-config extra_args: Input should be a valid list"),
    ({"extra_args": ["-p", "debug"]}, "is not an sbatch option of the form --option"),
    ({"time": "soon"}, "'soon' is not a Slurm time"),
    ({"partition": "nope"}, "partition: 'nope' is not a partition of this cluster; use one "
                            "of: debug, other"),
])
def test_a_bad_config_is_one_line_and_nothing_is_submitted(
        reprun: Reprun, project: Path, tmp_path: Path, keys: dict[str, Any],
        message: str) -> None:
    result = reprun("run", str(project), "--backend", "slurm", "--env-manager", "local",
                    "--backend-config", config(tmp_path, **keys))
    assert result.code == 2, result.stderr
    assert len(result.error_lines) == 1 and message in result.error_lines[0], result.stderr
    assert reprun("runs", "list", "--json").json() == []
    assert not (tmp_path / "shared" / "runs").exists()  # nothing staged, nothing submitted


def test_sbatch_not_on_path(reprun: Reprun, project: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "bash"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    result = reprun("run", str(project), "--backend", "slurm", "--env-manager", "local",
                    "--backend-config", config(tmp_path),
                    env={"PATH": f"{Path(sys.executable).parent}:{bin_dir}"})
    assert result.code == 2
    assert result.error_lines == ["reprun: error: 'sbatch' is not on PATH: --backend slurm "
                                  "submits jobs with Slurm's commands; run reprun on a machine "
                                  "of the cluster (a login node), or add Slurm's commands to "
                                  "PATH"]
    assert reprun("runs", "list", "--json").json() == []


def test_docker_env_is_refused_in_one_line(reprun: Reprun, make_project: MakeProject,
                                          cluster: None, tmp_path: Path) -> None:
    directory = make_project("name: d\ndocker_env: {image: python:3.11-slim}\n"
                             "entry_points: {main: {command: 'true'}}\n", name="d")
    result = reprun("run", str(directory), "--backend", "slurm")
    assert result.code == 2
    assert len(result.error_lines) == 1 and "Apptainer or Singularity" in result.error_lines[0]


@pytest.mark.slow
def test_a_job_over_its_time_limit_ends_timeout(reprun: Reprun, project: Path,
                                                tmp_path: Path) -> None:
    """Slurm's shortest limit is one minute, checked about every 30 s: this test takes ~90 s."""
    result, record = run(reprun, project, config(tmp_path, time=1), "-e", "sleep")
    assert result.code == 1
    assert record["status"] == "FAILED"
    assert record["reason"] == "TIMEOUT: the job reached its time limit (time: 1)"
    assert "DUE TO TIME LIMIT" in reprun("runs", "logs", record["run_id"]).stdout
