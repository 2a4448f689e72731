"""reprun and a real MLflow tracking server: the run reprun makes is the run the project joins.

The server starts once per test session (about 30 s; see tests/mlflowserver.py), and every test
that needs it runs on the same pytest-xdist worker (``xdist_group``). Faults are made with a
gateway in front of it: stopped (a server that died mid-run), slowed down, or asking a token.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeProject, Reprun, git, init_repo
from mlflowserver import Gateway, Server, free_port, running_server

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mlflow-server")]

MLFLOW_VERSION = "3.17.2"  # the version .ci/run installs; the project's mlflow-skinny matches

SKINNY_PROJECT = """\
    name: tracked
    python_env: python_env.yaml
    entry_points:
      main:
        parameters:
          alpha: {type: float, default: 0.5}
          label: {type: string, default: "a b"}
        command: "python train.py {alpha} {label}"
"""
TRAIN = """\
    import os, sys
    import mlflow
    print("child:", {k: v for k, v in sorted(os.environ.items()) if k.startswith("MLFLOW_")})
    with mlflow.start_run():
        mlflow.log_param("from_project", "yes")
        for step, value in enumerate([0.9, 0.5, 0.25]):
            mlflow.log_metric("rmse", value, step=step)
        with open("model.txt", "w") as f:
            f.write("model " + sys.argv[1])
        mlflow.log_artifact("model.txt")
"""
# No MLflow in the project: reprun alone makes, fills and ends the run.
PLAIN_PROJECT = """\
    name: plain
    entry_points:
      main:
        parameters:
          alpha: {type: float, default: 0.5}
        command: "python step.py {alpha}"
"""
STEP = """\
    import json, os, pathlib, sys, time
    wait = os.environ.get("WAIT_FOR")
    if wait:
        pathlib.Path(wait + ".started").write_text(os.environ.get("MLFLOW_RUN_ID", ""))
        while not pathlib.Path(wait).exists():
            time.sleep(0.05)
    out = pathlib.Path(os.environ.get("REPRUN_OUTPUT_DIR", "."))
    (out / "metrics.json").write_text(json.dumps({"accuracy": 0.75, "alpha": float(sys.argv[1])}))
    (out / "model.bin").write_bytes(b"weights")
    sys.exit(int(os.environ.get("EXIT_CODE", "0")))
"""


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("mlflow-server")) as running:
        yield running


def _mlflow_env(server_url: str, **extra: str) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": server_url, **extra}


def _plain(make_project: MakeProject, name: str = "plain") -> Path:
    return make_project(PLAIN_PROJECT, files={"step.py": STEP}, name=name)


def _run(reprun: Reprun, project: Path, *args: str, env: dict[str, str] | None = None,
         timeout: float = 600) -> tuple[Any, dict[str, Any]]:
    result = reprun("run", str(project), "--env-manager", "local", *args, env=env,
                    timeout=timeout)
    return result, reprun.last_record()


def _command_started(proc: subprocess.Popen[str], gate: Path) -> Path:
    """Wait until STEP's command has started (it writes GATE.started, then waits for GATE)."""
    started = Path(f"{gate}.started")
    deadline = time.monotonic() + 120
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), proc.communicate()[1]
    return started


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warning: mlflow" in line]


def test_the_project_logs_into_the_run_reprun_made(
    server: Server, reprun: Reprun, make_project: MakeProject,
) -> None:
    project = make_project(SKINNY_PROJECT, files={
        "python_env.yaml": f"dependencies:\n  - mlflow-skinny=={MLFLOW_VERSION}\n",
        "train.py": TRAIN,
    }, name="skinny")
    result = reprun("run", str(project), "-P", "alpha=0.3", "--tracking-uri", server.url,
                    "--experiment-name", "skinny", timeout=900)
    assert result.code == 0, result.stderr
    record = reprun.last_record()
    mlflow = record["mlflow"]
    run_id, experiment_id = mlflow["run_id"], mlflow["experiment_id"]
    assert mlflow["run_url"] == f"{server.url}/#/experiments/{experiment_id}/runs/{run_id}"
    assert mlflow["tracking_uri"] == server.url
    experiment = server.api("GET", "experiments/get-by-name", experiment_name="skinny")
    assert experiment["experiment"]["experiment_id"] == experiment_id
    # The child joined the run reprun made: one run in the experiment, with both sides' data.
    assert [r["info"]["run_id"] for r in server.experiment_runs(experiment_id)] == [run_id]
    assert (f"'MLFLOW_EXPERIMENT_ID': '{experiment_id}', 'MLFLOW_RUN_ID': '{run_id}', "
            f"'MLFLOW_TRACKING_URI': '{server.url}'") in result.stdout
    assert server.params(run_id) == {"alpha": "0.3", "label": "'a b'", "from_project": "yes"}
    history = server.api("GET", "metrics/get-history", run_id=run_id, metric_key="rmse")
    assert [m["value"] for m in history["metrics"]] == [0.9, 0.5, 0.25]
    files = server.artifacts(run_id)
    assert "model.txt" in files
    assert {"reprun/run.json", "reprun/output.log", "reprun/python.lock.txt"} <= set(files)
    uploaded = json.loads(server.artifact(run_id, "reprun/run.json"))
    assert uploaded["run_id"] == record["run_id"] and uploaded["mlflow"]["run_id"] == run_id
    tags = server.tags(run_id)
    assert tags["reprun.run_id"] == record["run_id"]
    assert tags["reprun.lock_sha256"] == record["environment"]["lock_sha256"]
    assert tags["mlflow.project.env"] == "uv" and tags["mlflow.source.type"] == "PROJECT"
    assert server.run(run_id)["info"]["status"] == "FINISHED"
    # What the project logged is in reprun's record too.
    assert record["metrics"]["rmse"] == {"last": 0.25, "step": 2, "min": 0.25, "max": 0.9,
                                         "count": 3, "better": None}
    history_file = Path(reprun.home) / "runs" / record["run_id"] / record["metrics_file"]
    lines = [json.loads(line) for line in history_file.read_text().splitlines()]
    assert [(x["value"], x["step"], x["source"]) for x in lines] == [
        (0.9, 0, "mlflow"), (0.5, 1, "mlflow"), (0.25, 2, "mlflow")]
    shown = reprun("runs", "show", record["run_id"][:8]).stdout
    assert f"mlflow:      {mlflow['run_url']}" in shown


def test_the_tags_are_those_mlflow_run_sets(
    server: Server, reprun: Reprun, make_project: MakeProject, tmp_path: Path,
) -> None:
    project = make_project(PLAIN_PROJECT.replace("python step.py", "python -c 'import mlflow' "
                                                 "&& python step.py"),
                           files={"step.py": STEP}, name="compared")
    init_repo(project)
    git(project, "remote", "add", "origin", "https://user:s3cret@example.com/org/compared.git")
    path = f"{server.mlflow.parent}{os.pathsep}{os.environ['PATH']}"  # the project imports mlflow
    env = {"MLFLOW_TRACKING_URI": server.url, "PATH": path}
    mlflow_env = {k: v for k, v in os.environ.items() if not k.startswith("REPRUN_")}
    done = subprocess.run(
        [str(server.mlflow), "run", str(project), "-P", "alpha=0.25", "--env-manager", "local",
         "--experiment-name", "compared"],
        env={**mlflow_env, **env}, cwd=tmp_path, capture_output=True, text=True, timeout=600,
        check=False)
    assert done.returncode == 0, done.stderr
    result, record = _run(reprun, project, "-P", "alpha=0.25", "--experiment-name", "compared",
                          env=env)
    assert result.code == 0, result.stderr
    experiment = server.api("GET", "experiments/get-by-name", experiment_name="compared")
    runs = server.experiment_runs(experiment["experiment"]["experiment_id"])
    by_reprun = [r for r in runs if r["info"]["run_id"] == record["mlflow"]["run_id"]]
    by_mlflow = [r for r in runs if r["info"]["run_id"] != record["mlflow"]["run_id"]]
    assert len(by_reprun) == len(by_mlflow) == 1

    def tags(run: dict[str, Any]) -> dict[str, str]:
        return {t["key"]: t["value"] for t in run["data"]["tags"]
                if not t["key"].startswith("reprun.")}

    ours, theirs = tags(by_reprun[0]), tags(by_mlflow[0])
    assert set(ours) == set(theirs)
    for key in ("mlflow.user", "mlflow.source.name", "mlflow.source.type",
                "mlflow.project.entryPoint", "mlflow.source.git.commit",
                "mlflow.source.git.repoURL", "mlflow.project.backend"):
        assert ours[key] == theirs[key], key
    assert "s3cret" not in ours["mlflow.source.git.repoURL"]
    params = [{p["key"]: p["value"] for p in r["data"]["params"]} for r in (by_reprun[0],
                                                                          by_mlflow[0])]
    assert params[0] == params[1] == {"alpha": "0.25"}
    assert by_reprun[0]["info"]["status"] == by_mlflow[0]["info"]["status"] == "FINISHED"
    assert by_reprun[0]["info"]["user_id"] == by_mlflow[0]["info"]["user_id"]


def test_reprun_ends_the_run_failed_or_killed_and_sends_its_own_metrics_and_outputs(
    server: Server, reprun: Reprun, make_project: MakeProject, tmp_path: Path,
) -> None:
    project = _plain(make_project)
    result, record = _run(reprun, project, "--run-name", "failing", "--log-outputs",
                          env=_mlflow_env(server.url, EXIT_CODE="3"))
    assert result.code == 3
    run_id = record["mlflow"]["run_id"]
    run = server.run(run_id)
    assert run["info"]["status"] == "FAILED" and run["info"]["run_name"] == "failing"
    assert server.metrics(run_id) == {"accuracy": 0.75, "alpha": 0.5}
    assert {"outputs/model.bin", "outputs/metrics.json"} <= set(server.artifacts(run_id))
    assert server.artifact(run_id, "outputs/model.bin") == b"weights"
    # The metrics reprun sent are not read back a second time.
    assert record["metrics"]["accuracy"]["count"] == 1

    gate = tmp_path / "go"
    proc = reprun.popen("run", str(project), "--env-manager", "local", "--grace-period", "5",
                        env=_mlflow_env(server.url, WAIT_FOR=str(gate)))
    started = _command_started(proc, gate)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    killed = reprun.last_record()
    assert killed["status"] == "KILLED", err
    assert started.read_text() == killed["mlflow"]["run_id"]
    assert server.run(killed["mlflow"]["run_id"])["info"]["status"] == "KILLED"


def test_a_server_down_at_the_start_gets_the_run_later_from_runs_sync(
    server: Server, reprun: Reprun, make_project: MakeProject,
) -> None:
    project = _plain(make_project)
    down = f"http://127.0.0.1:{free_port()}"
    result, record = _run(reprun, project, "--experiment-name", "later",
                          env=_mlflow_env(down))
    assert result.code == 0, result.stderr
    assert record["status"] == "FINISHED" and record["metrics"]["accuracy"]["last"] == 0.75
    assert record["mlflow"] == {"tracking_uri": down, "experiment_id": None, "run_id": None,
                                "run_url": None}
    warnings = _warnings(result.stderr)
    assert len(warnings) == 1 and "cannot reach the tracking server" in warnings[0]
    assert "Traceback" not in result.stderr
    run_dir = reprun.home / "runs" / record["run_id"]
    assert (run_dir / "mlflow-pending.json").is_file()
    assert "calls pending" in reprun("runs", "show", record["run_id"]).stdout

    failed = reprun("runs", "sync")
    assert failed.code == 1 and "not synced: cannot reach" in failed.stderr
    synced = reprun("runs", "sync", "--tracking-uri", server.url)
    assert synced.code == 0, synced.stderr
    assert not (run_dir / "mlflow-pending.json").exists()
    after = reprun.record(record["run_id"])
    run_id = after["mlflow"]["run_id"]
    assert after["mlflow"]["run_url"].startswith(server.url)
    run = server.run(run_id)
    assert run["info"]["status"] == "FINISHED"
    assert server.tags(run_id)["reprun.run_id"] == record["run_id"]
    assert server.params(run_id) == {"alpha": "0.5"}
    assert server.metrics(run_id) == {"accuracy": 0.75, "alpha": 0.5}
    assert "reprun/run.json" in server.artifacts(run_id)
    experiment = server.api("GET", "experiments/get-by-name", experiment_name="later")
    assert experiment["experiment"]["experiment_id"] == after["mlflow"]["experiment_id"]
    assert "nothing pending" in reprun("runs", "sync", record["run_id"]).stderr


def test_a_server_that_dies_mid_run_and_a_slow_one(
    server: Server, reprun: Reprun, make_project: MakeProject, tmp_path: Path,
) -> None:
    project = _plain(make_project)
    gateway = Gateway(server.url).start()
    gate = tmp_path / "go"
    proc = reprun.popen("run", str(project), "--env-manager", "local",
                        env=_mlflow_env(gateway.url, WAIT_FOR=str(gate)))
    _command_started(proc, gate)
    gateway.stop()  # the server goes away while the command runs
    gate.write_text("")
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    record = reprun.last_record()
    run_id = record["mlflow"]["run_id"]
    assert record["status"] == "FINISHED" and run_id
    assert len(_warnings(err)) == 1 and "reprun runs sync" in _warnings(err)[0]
    assert server.run(run_id)["info"]["status"] == "RUNNING"

    revived = Gateway(server.url)
    revived.port, revived.url = gateway.port, gateway.url
    revived.start()
    try:
        synced = reprun("runs", "sync")
    finally:
        revived.stop()
    assert synced.code == 0, synced.stderr
    assert server.run(run_id)["info"]["status"] == "FINISHED"
    assert "reprun/output.log" in server.artifacts(run_id)

    slow = Gateway(server.url)
    slow.delay = 3.0
    slow.start()
    try:
        began = time.monotonic()
        result, record = _run(reprun, project, env=_mlflow_env(
            slow.url, MLFLOW_HTTP_REQUEST_TIMEOUT="1"))
        took = time.monotonic() - began
    finally:
        slow.stop()
    assert result.code == 0 and record["status"] == "FINISHED", result.stderr
    assert len(_warnings(result.stderr)) == 1 and "did not answer" in result.stderr
    assert "within 1 s" in result.stderr  # MLFLOW_HTTP_REQUEST_TIMEOUT: the call's whole time
    assert took < 60  # one timeout, not one per call (a generous bound, not a benchmark)


def test_a_wrong_token_is_refused_and_never_shown(
    server: Server, reprun: Reprun, make_project: MakeProject,
) -> None:
    project = _plain(make_project)
    gateway = Gateway(server.url, token="right-token").start()
    try:
        result, record = _run(reprun, project, env=_mlflow_env(
            gateway.url, MLFLOW_TRACKING_TOKEN="wrong-token-123"))
        assert result.code == 0, result.stderr
        warning = _warnings(result.stderr)
        assert len(warning) == 1 and "HTTP 401" in warning[0]
        assert "MLFLOW_TRACKING_TOKEN" in warning[0]
        run_dir = reprun.home / "runs" / record["run_id"]
        for file in run_dir.rglob("*"):
            if file.is_file():
                assert b"wrong-token-123" not in file.read_bytes(), file
        assert "wrong-token-123" not in result.stderr + result.stdout
        synced = reprun("runs", "sync", env={"MLFLOW_TRACKING_TOKEN": "right-token"})
    finally:
        gateway.stop()
    assert synced.code == 0, synced.stderr
    run_id = reprun.record(record["run_id"])["mlflow"]["run_id"]
    assert server.run(run_id)["info"]["status"] == "FINISHED"


def test_batches_over_the_server_limits_are_split_and_long_values_cut(
    server: Server, reprun: Reprun, make_project: MakeProject,
) -> None:
    script = """\
        import json, os
        with open(os.environ["REPRUN_METRICS"], "a") as out:
            for step in range(1500):
                out.write(json.dumps({"loss": 1.0 / (step + 1), "step": step}) + "\\n")
    """
    project = make_project("name: many\nentry_points:\n  main:\n    command: python many.py\n",
                           files={"many.py": script}, name="many")
    params = [f"-Pp{i}={i}" for i in range(120)] + ["-Plong=" + "x" * 7000]
    result, record = _run(reprun, project, *params, env=_mlflow_env(server.url))
    assert result.code == 0, result.stderr
    assert not _warnings(result.stderr)
    run_id = record["mlflow"]["run_id"]
    logged = server.params(run_id)
    assert len(logged) == 121 and logged["p119"] == "119"
    assert logged["long"] == "x" * 6000
    history = server.api("GET", "metrics/get-history", run_id=run_id, metric_key="loss")
    assert len(history["metrics"]) == 1500
    assert record["metrics"]["loss"]["count"] == 1500


def test_runs_push_and_reproduce(server: Server, reprun: Reprun,
                                 make_project: MakeProject) -> None:
    project = _plain(make_project)
    result, record = _run(reprun, project, "-P", "alpha=0.125")
    assert result.code == 0 and record.get("mlflow") is None
    pushed = reprun("runs", "push", record["run_id"][:8], "--tracking-uri", server.url,
                    "--experiment-name", "pushed", "--log-outputs")
    assert pushed.code == 0, pushed.stderr
    after = reprun.record(record["run_id"])
    run_id = after["mlflow"]["run_id"]
    assert run_id in pushed.stderr
    run = server.run(run_id)
    assert run["info"]["status"] == "FINISHED"
    assert server.params(run_id) == {"alpha": "0.125"}
    assert server.metrics(run_id) == {"accuracy": 0.75, "alpha": 0.125}
    assert "outputs/model.bin" in server.artifacts(run_id)
    again = reprun("runs", "push", record["run_id"][:8], "--tracking-uri", server.url)
    assert again.code == 2 and "already MLflow run" in again.stderr

    reproduced = reprun("reproduce", record["run_id"][:8])
    assert reproduced.code == 0, reproduced.stderr
    new = reprun.last_record()
    assert new["reproduces"] == record["run_id"]
    assert new["mlflow"]["experiment_id"] == after["mlflow"]["experiment_id"]
    tags = server.tags(new["mlflow"]["run_id"])
    assert tags["reprun.reproduces"] == record["run_id"]
    assert tags["reprun.reproduces.mlflow_run_id"] == run_id


# The project logs through the REST API with the standard library alone (no MLflow in the image).
REST_LOGGER = """\
    import json, os, time, urllib.request
    uri, run = os.environ["MLFLOW_TRACKING_URI"], os.environ["MLFLOW_RUN_ID"]
    body = {"run_id": run, "key": "from_child", "value": 1.5, "step": 0,
            "timestamp": int(time.time() * 1000)}
    headers = {"Content-Type": "application/json"}
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = "Bearer " + os.environ["MLFLOW_TRACKING_TOKEN"]
    request = urllib.request.Request(uri + "/api/2.0/mlflow/runs/log-metric", method="POST",
                                     data=json.dumps(body).encode(), headers=headers)
    urllib.request.urlopen(request, timeout=60).read()
    print("logged to", uri, "experiment", os.environ["MLFLOW_EXPERIMENT_ID"])
"""


def _rest_project(make_project: MakeProject, name: str) -> Path:
    return make_project(f"name: {name}\nentry_points:\n  main:\n    command: python log.py\n",
                        files={"log.py": REST_LOGGER}, name=name)


PRINT_AND_LOG = """\
    import json, os, time, urllib.request
    uri, run = os.environ["MLFLOW_TRACKING_URI"], os.environ["MLFLOW_RUN_ID"]
    def log(key, value, step):
        body = {"run_id": run, "key": key, "value": value, "step": step,
                "timestamp": int(time.time() * 1000)}
        request = urllib.request.Request(
            uri + "/api/2.0/mlflow/runs/log-metric", method="POST",
            data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=60).read()
    for step, loss in enumerate([0.9, 0.5]):
        print(f"loss: {loss} (step {step})")
        log("loss", loss, step)
    log("loss", 0.25, 2)     # logged only
    print("acc: 0.8")        # printed only: reprun sends it
    log("acc", 0.8, 1)       # the same value at another step: not the same point
"""


def test_a_value_both_printed_and_logged_is_counted_once(
    server: Server, reprun: Reprun, make_project: MakeProject,
) -> None:
    project = make_project("name: twice\nentry_points:\n  main:\n    command: python log.py\n"
                           "    metrics: {stdout: true}\n",
                           files={"log.py": PRINT_AND_LOG}, name="twice")
    result, record = _run(reprun, project, env=_mlflow_env(server.url))
    assert result.code == 0, result.stderr
    assert record["metrics"]["loss"] == {"last": 0.25, "step": 2, "min": 0.25, "max": 0.9,
                                         "count": 3, "better": None}
    assert record["metrics"]["acc"]["count"] == 2
    history_file = Path(reprun.home) / "runs" / record["run_id"] / record["metrics_file"]
    lines = [json.loads(line) for line in history_file.read_text().splitlines()]
    seen = [(x["name"], x["value"], x["step"], x["source"]) for x in lines]
    assert seen[:3] == [("loss", 0.9, 0, "stdout"), ("loss", 0.5, 1, "stdout"),
                        ("acc", 0.8, None, "stdout")]
    assert sorted(seen[3:]) == [("acc", 0.8, 1, "mlflow"), ("loss", 0.25, 2, "mlflow")]
    run_id = record["mlflow"]["run_id"]
    logged = server.api("GET", "metrics/get-history", run_id=run_id, metric_key="loss")
    assert sorted((m["step"], m["value"]) for m in logged["metrics"]) == [
        (0, 0.9), (1, 0.5), (2, 0.25)]
    acc = server.api("GET", "metrics/get-history", run_id=run_id, metric_key="acc")
    assert sorted((m["step"], m["value"]) for m in acc["metrics"]) == [(0, 0.8), (1, 0.8)]


@pytest.mark.docker
def test_a_docker_run_reaches_a_server_on_localhost(
    server: Server, reprun: Reprun, make_project: MakeProject, base_image: str, image_repo: str,
) -> None:
    project = _rest_project(make_project, image_repo)
    local_url = server.url.replace("127.0.0.1", "localhost")
    result = reprun("run", str(project), "--backend", "docker", "--docker-base-image", base_image,
                    "--tracking-uri", local_url, env={"MLFLOW_TRACKING_TOKEN": "tok-in-docker"},
                    timeout=900)
    assert result.code == 0, result.stderr
    record = reprun.last_record()
    assert f"logged to {local_url}" in result.stdout
    docker = record["backend"]["docker"]
    assert docker["network"] == "host"  # the engine's default network cannot reach loopback
    assert {"MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID",
            "MLFLOW_TRACKING_TOKEN"} <= set(docker["env_names"])
    run_id = record["mlflow"]["run_id"]
    assert server.metrics(run_id) == {"from_child": 1.5}
    assert record["metrics"]["from_child"]["last"] == 1.5
    tags = server.tags(run_id)
    assert tags["mlflow.project.env"] == "docker" and tags["reprun.backend"] == "docker"
    assert tags["mlflow.docker.image.uri"] == docker["image"]
    assert tags["mlflow.docker.image.id"] == docker["image_id"]
    text = "\n".join(p.read_text(errors="replace") for p in
                     (reprun.home / "runs" / record["run_id"]).rglob("*") if p.is_file())
    assert "tok-in-docker" not in text


def test_a_kubernetes_pod_joins_the_run_through_kube_mlflow_tracking_uri(
    server: Server, reprun: Reprun, make_project: MakeProject, fake_kube: Any,
) -> None:
    project = _rest_project(make_project, "kube")
    gateway = Gateway(server.url, token="pod-token").start()  # what the cluster reaches
    digest = "sha256:" + "0f" * 32
    config = json.dumps({"image": f"127.0.0.1:9/reprun/app@{digest}", "poll_seconds": 0.3,
                         "working_dir": str(project)})
    try:
        result = reprun("run", str(project), "--backend", "kubernetes", "--backend-config",
                        config, "--experiment-name", "kube", env={
                            "KUBECONFIG": str(fake_kube.kubeconfig_path),
                            "MLFLOW_TRACKING_URI": server.url,
                            "KUBE_MLFLOW_TRACKING_URI": gateway.url,
                            "MLFLOW_TRACKING_TOKEN": "pod-token"}, timeout=300)
    finally:
        gateway.stop()
    assert result.code == 0, result.stdout + result.stderr
    record = reprun.last_record()
    assert f"logged to {gateway.url}" in result.stdout
    assert any("runs/log-metric" in r for r in gateway.requests)
    run_id = record["mlflow"]["run_id"]
    assert server.metrics(run_id) == {"from_child": 1.5}
    assert server.tags(run_id)["mlflow.project.backend"] == "kubernetes"
    assert server.run(run_id)["info"]["status"] == "FINISHED"
    saved = (reprun.home / "runs" / record["run_id"] / "job.yaml").read_text()
    assert "pod-token" not in saved and "MLFLOW_TRACKING_TOKEN" in saved
    assert f"value: {run_id}" in saved



def test_a_detached_kubernetes_run_is_ended_by_runs_sync(
    server: Server, reprun: Reprun, make_project: MakeProject, fake_kube: Any,
) -> None:
    project = _rest_project(make_project, "detached")
    digest = "sha256:" + "0f" * 32
    config = json.dumps({"image": f"127.0.0.1:9/reprun/app@{digest}", "poll_seconds": 0.3,
                         "working_dir": str(project)})
    env = {"KUBECONFIG": str(fake_kube.kubeconfig_path), "MLFLOW_TRACKING_URI": server.url}
    result = reprun("run", str(project), "--backend", "kubernetes", "--backend-config", config,
                    "--detach", env=env, timeout=300)
    assert result.code == 0, result.stderr
    assert "'reprun runs sync' ends its MLflow run" in result.stderr
    record = reprun.last_record()
    run_id = record["mlflow"]["run_id"]
    assert server.run(run_id)["info"]["status"] == "RUNNING"
    deadline = time.monotonic() + 120
    while True:
        synced = reprun("runs", "sync", env=env)
        if synced.code == 0 or time.monotonic() > deadline:
            break
        assert "is still RUNNING" in synced.stderr, synced.stderr
        time.sleep(1)
    assert synced.code == 0, synced.stderr
    assert server.run(run_id)["info"]["status"] == "FINISHED"
    assert server.metrics(run_id) == {"from_child": 1.5}
    assert reprun.record(record["run_id"])["metrics"]["from_child"]["last"] == 1.5
    assert "reprun/run.json" in server.artifacts(run_id)


def test_input_fingerprints_are_tags_and_datasets(
    server: Server, reprun: Reprun, make_project: MakeProject, tmp_path: Path,
) -> None:
    data = tmp_path / "train.csv"
    data.write_text("a,b\n1,2\n")
    project = make_project("name: fed\nentry_points:\n  main:\n    parameters:\n"
                           "      data: {type: path}\n    command: cat {data}\n", name="fed")
    result, record = _run(reprun, project, "-P", f"data={data}", env=_mlflow_env(server.url))
    assert result.code == 0, result.stderr
    digest = record["inputs"][0]["digest"]
    run = server.run(record["mlflow"]["run_id"])
    assert server.tags(record["mlflow"]["run_id"])["reprun.input.data"] == digest
    dataset = run["inputs"]["dataset_inputs"][0]["dataset"]
    assert dataset["name"] == "data" and dataset["digest"] == digest.split(":")[-1][:32]
    assert json.loads(dataset["source"])["digest"] == digest


def test_a_sweep_is_one_parent_run_with_the_trials_as_children(
        reprun: Reprun, make_project: MakeProject, server: Server) -> None:
    project = make_project(PLAIN_PROJECT, files={"step.py": STEP})
    result = reprun("sweep", str(project), "-P", "alpha=0.1,0.2,0.3", "--parallel", "2",
                    "--env-manager", "local", "--experiment-name", "sweeps",
                    "--metric", "metrics.alpha:max", "--tracking-uri", server.url,
                    env={"EXIT_CODE": "0"})
    assert result.code == 0, result.stderr
    sweep_id = next(line.split()[2].rstrip(":") for line in result.stderr.splitlines()
                    if line.startswith("reprun: sweep s"))
    saved = json.loads((reprun.home / "sweeps" / sweep_id / "sweep.json").read_text())
    parent_id = saved["mlflow_run_id"]
    parent = server.run(parent_id)
    assert parent["info"]["status"] == "FINISHED"
    tags = server.tags(parent_id)
    assert tags["mlflow.runName"] == f"sweep-{sweep_id}" and tags["reprun.sweep_id"] == sweep_id
    assert server.params(parent_id)["sweep.alpha"] == "0.1,0.2,0.3"
    assert server.params(parent_id)["sweep.metric"] == "alpha:max"
    assert server.metrics(parent_id) == {"best_alpha": 0.3}
    experiment_id = parent["info"]["experiment_id"]
    children = [r for r in server.experiment_runs(experiment_id)
                if r["info"]["run_id"] != parent_id]
    assert len(children) == 3
    trial_runs = {reprun.record(t["run_id"])["mlflow"]["run_id"]: t for t in saved["trials"]}
    for child in children:
        child_id = child["info"]["run_id"]
        child_tags = server.tags(child_id)
        assert child_tags["mlflow.parentRunId"] == parent_id
        assert child_tags["reprun.sweep_id"] == sweep_id
        trial = trial_runs[child_id]
        assert child_tags["reprun.trial"] == str(trial["index"])
        assert child["info"]["run_name"] == f"{sweep_id}-trial-{trial['index']}"
        assert server.params(child_id)["alpha"] == trial["params"]["alpha"]
        assert child["info"]["status"] == "FINISHED"


def test_an_interrupted_sweep_ends_its_parent_killed(
        reprun: Reprun, tmp_path: Path, make_project: MakeProject, server: Server) -> None:
    project = make_project(PLAIN_PROJECT, files={"step.py": STEP})
    gate = tmp_path / "gate"
    proc = reprun.popen("sweep", str(project), "-P", "alpha=0.1,0.2", "--env-manager", "local",
                        "--tracking-uri", server.url, "--experiment-name", "interrupted",
                        env={"WAIT_FOR": str(gate)})
    _command_started(proc, gate)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    sweep_dir = next((reprun.home / "sweeps").iterdir())
    saved = json.loads((sweep_dir / "sweep.json").read_text())
    assert server.run(saved["mlflow_run_id"])["info"]["status"] == "KILLED"
    child = reprun.record(saved["trials"][0]["run_id"])["mlflow"]["run_id"]
    assert server.run(child)["info"]["status"] == "KILLED"
    gate.write_text("go")
    resumed = reprun("sweep", "resume", sweep_dir.name, env={"WAIT_FOR": str(gate)})
    assert resumed.code == 0, resumed.stderr
    assert server.run(saved["mlflow_run_id"])["info"]["status"] == "FINISHED"
    runs = server.experiment_runs(server.run(saved["mlflow_run_id"])["info"]["experiment_id"])
    parents = {server.tags(r["info"]["run_id"]).get("mlflow.parentRunId") for r in runs}
    assert parents == {saved["mlflow_run_id"], None}  # one parent, every trial under it


def test_a_slurm_job_reports_to_the_run_and_is_tagged_slurm(
    server: Server, reprun: Reprun, make_project: MakeProject, tmp_path: Path,
) -> None:
    from test_slurm import require_cluster

    require_cluster()
    project = _rest_project(make_project, "slurm")
    config = json.dumps({"workdir": str(tmp_path / "shared")})
    result = reprun("run", str(project), "--backend", "slurm", "--env-manager", "local",
                    "--backend-config", config, "--experiment-name", "slurm",
                    env={"MLFLOW_TRACKING_URI": server.url}, timeout=300)
    assert result.code == 0, result.stdout + result.stderr
    run_id = reprun.last_record()["mlflow"]["run_id"]
    assert server.metrics(run_id) == {"from_child": 1.5}
    assert server.tags(run_id)["mlflow.project.backend"] == "slurm"
    assert server.run(run_id)["info"]["status"] == "FINISHED"


def test_a_pipeline_is_one_parent_run_with_the_steps_as_children(
        reprun: Reprun, make_project: MakeProject, server: Server) -> None:
    project = make_project(PLAIN_PROJECT + """\
    pipelines:
      two:
        parameters: {alpha: {type: float, default: 0.2}}
        steps:
          first: {entry_point: main, parameters: {alpha: "{alpha}"}}
          second: {entry_point: main, needs: [first], parameters: {alpha: 0.9}}
""", files={"step.py": STEP})
    init_repo(project)
    result = reprun("run", str(project), "-e", "two", "--env-manager", "local",
                    "--experiment-name", "pipelines", "--tracking-uri", server.url,
                    env={"EXIT_CODE": "0"})
    assert result.code == 0, result.stderr
    (top,) = reprun("runs", "list", "--where", "kind = pipeline", "--json").json()
    pipeline = reprun.record(top["run_id"])
    parent_id = pipeline["mlflow"]["run_id"]
    parent = server.run(parent_id)
    assert parent["info"]["status"] == "FINISHED"
    assert server.tags(parent_id)["reprun.kind"] == "pipeline"
    assert server.params(parent_id) == {"alpha": "0.2"}
    assert server.metrics(parent_id)["second.alpha"] == 0.9
    children = {reprun.record(s["run_id"])["mlflow"]["run_id"]: s["name"]
                for s in pipeline["pipeline"]["steps"]}
    for child_id, name in children.items():
        assert server.tags(child_id)["mlflow.parentRunId"] == parent_id
        assert server.run(child_id)["info"]["run_name"] == f"{name}-{top['run_id'][:8]}"
        assert server.run(child_id)["info"]["experiment_id"] == parent["info"]["experiment_id"]
