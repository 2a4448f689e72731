"""Metrics a run reports without a library: metrics files, the REPRUN_METRICS stream, printed
lines; every bad input is a warning, never a failed run."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, MakeProject, Reprun

from runner.spec.types import MetricsSpec
from runner.tracking.metrics import MAX_HISTORY, MAX_NAMES, collect

ALL_WAYS = """\
name: allways
entry_points:
  main:
    parameters:
      lr: {type: float, default: 0.1}
    command: "python train.py {lr}"
    metrics:
      stdout: true
      files: [eval/scores.json]
      better: {acc: max}
"""
TRAIN = """\
import json, os, pathlib, sys
stream = os.environ["REPRUN_METRICS"]
out = pathlib.Path(os.environ["REPRUN_OUTPUT_DIR"])
print("lr: 0.1")  # a parameter's name: not a metric
for step, loss in enumerate([0.9, 0.5, 0.7]):
    print(f"loss: {loss} (step {step})")
    with open(stream, "a") as f:
        f.write(json.dumps({"name": "val_loss", "value": loss + 0.1, "step": step}) + "\\n")
print("step: 7")
print("acc: 0.8")
print("Note: not a number")
with open(stream, "a") as f:
    f.write(json.dumps({"tokens": 1000, "step": 3}) + "\\n")
(out / "metrics.yaml").write_text("eval:\\n  f1: 0.75\\n  detail:\\n    auc: 0.9\\n")
(out / "eval").mkdir()
(out / "eval" / "scores.json").write_text(json.dumps({"step": 9, "precision": 0.6}))
"""


def test_every_way_of_reporting_is_recorded_the_same(reprun: Reprun,
                                                     make_project: MakeProject) -> None:
    project = make_project(ALL_WAYS, files={"train.py": TRAIN})
    result = reprun("run", str(project), "--env-manager", "local")
    assert result.code == 0, result.stderr
    assert "warning" not in result.stderr
    record = reprun.last_record()
    metrics = record["metrics"]
    assert metrics["loss"] == {"last": 0.7, "step": 2, "min": 0.5, "max": 0.9, "count": 3,
                               "better": None}
    assert metrics["val_loss"]["count"] == 3 and metrics["val_loss"]["step"] == 2
    assert metrics["val_loss"]["min"] == pytest.approx(0.6)
    assert metrics["acc"] == {"last": 0.8, "step": 7, "min": 0.8, "max": 0.8, "count": 1,
                              "better": "max"}
    assert metrics["tokens"]["last"] == 1000.0 and metrics["tokens"]["step"] == 3
    assert metrics["eval.f1"]["last"] == 0.75 and metrics["eval.detail.auc"]["last"] == 0.9
    assert metrics["precision"] == {"last": 0.6, "step": 9, "min": 0.6, "max": 0.6, "count": 1,
                                    "better": None}
    assert "lr" not in metrics and "Note" not in metrics and "step" not in metrics
    history_path = reprun.home / "runs" / record["run_id"] / record["metrics_file"]
    history = [json.loads(line) for line in history_path.read_text().splitlines()]
    assert {h["source"] for h in history} == {"stdout", "stream", "file:metrics.yaml",
                                              "file:eval/scores.json"}
    assert [h["value"] for h in history if h["name"] == "loss"] == [0.9, 0.5, 0.7]
    assert len(history) == sum(m["count"] for m in metrics.values())
    exported = reprun("export", record["run_id"], "-o", str(reprun.cwd / "run.tar.gz"))
    assert exported.code == 0, exported.stderr
    with tarfile.open(reprun.cwd / "run.tar.gz") as tar:
        member = tar.extractfile("metrics.jsonl")
        assert member is not None and member.read() == history_path.read_bytes()


def test_the_elasticnet_example_reports_rmse_mae_and_r2(reprun: Reprun) -> None:
    result = reprun("run", str(EXAMPLES / "elasticnet-wine"), "-P", "alpha=0.2",
                    "--env-manager", "local")
    assert result.code == 0, result.stderr
    metrics = reprun.last_record()["metrics"]
    assert set(metrics) == {"rmse", "mae", "r2"}
    assert metrics["rmse"]["last"] == pytest.approx(0.730277)
    assert "metrics:     mae=0.57136, r2=0.916938, rmse=0.730277" in reprun(
        "runs", "show", reprun.last_record()["run_id"]).stdout.splitlines()
    shown = reprun("runs", "list", "-c", "params.alpha,metrics.rmse,metrics.r2")
    assert shown.stdout.splitlines()[1].split()[1:] == ["0.2", "0.730277", "0.916938"]


def test_patterns_per_metric_and_a_capture_that_is_not_a_number(
        reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project(r"""
        entry_points:
          main:
            command: "printf 'RMSE: 0.73\nRMSE: n/a\nepoch 3 took 12.5s\nMAE=0.5\n'"
            metrics:
              stdout:
                rmse: "RMSE: (\\S+)"
                seconds: "epoch (?P<step>\\d+) took (?P<value>[\\d.]+)s"
        """)
    result = reprun("run", str(project), "--env-manager", "local")
    assert result.code == 0, result.stderr
    assert ("reprun: warning: metrics: output line 2: the pattern of 'rmse' matched 'n/a', "
            "which is not a number; ignored") in result.stderr.splitlines()
    metrics = reprun.last_record()["metrics"]
    assert metrics["rmse"]["last"] == 0.73 and metrics["rmse"]["count"] == 1
    assert metrics["seconds"]["last"] == 12.5 and metrics["seconds"]["step"] == 3
    assert "MAE" not in metrics  # only the declared patterns are read


def test_printed_lines_are_read_only_when_the_mlproject_asks(
        reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: 'echo \"loss: 0.5\"'\n")
    assert reprun("run", str(project), "--env-manager", "local").code == 0
    record = reprun.last_record()
    assert record["metrics"] == {} and record["metrics_file"] is None
    assert not (reprun.home / "runs" / record["run_id"] / "metrics.jsonl").exists()


def test_a_failed_run_keeps_what_it_reported(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: 'bash report.sh; exit 3'\n",
                           files={"report.sh": """echo '{"name": "loss", "value": 2}' """
                                               """>> "$REPRUN_METRICS"\n"""})
    assert reprun("run", str(project), "--env-manager", "local").code == 3
    record = reprun.last_record()
    assert record["status"] == "FAILED" and record["metrics"]["loss"]["last"] == 2.0


def test_a_broken_metrics_file_is_a_warning(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: 'bash report.sh'\n",
                           files={"report.sh": """printf '{"rmse": 0.5,' """
                                               """> "$REPRUN_OUTPUT_DIR/metrics.json"\n"""})
    result = reprun("run", str(project), "--env-manager", "local")
    assert result.code == 0
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith("reprun: warning: metrics: metrics.json: not valid JSON (")
    assert warnings[0].endswith("); not read")
    assert reprun.last_record()["metrics"] == {}


@pytest.mark.parametrize(("mlproject_metrics", "message"), [
    ('{stdout: {rmse: "RMSE: (\\\\S+"}}',
     "MLproject:6: entry_points.main.metrics.stdout: the pattern of 'rmse' ('RMSE: (\\S+') is "
     "not a valid regular expression: missing ), unterminated subpattern at position 6"),
    ('{stdout: {rmse: "RMSE: \\\\S+"}}',
     "MLproject:6: entry_points.main.metrics.stdout: the pattern of 'rmse' ('RMSE: \\S+') has "
     "0 groups; give exactly one group around the value, or name it (?P<value>...)"),
    ('{stdout: {rmse: "(?P<v>\\\\S+)"}}',
     "MLproject:6: entry_points.main.metrics.stdout: the pattern of 'rmse' ('(?P<v>\\S+)') has "
     "named group(s) v; only 'value' and 'step' are understood"),
    ("{stdout: RMSE}",
     "MLproject:6: entry_points.main.metrics.stdout: must be true, false or a mapping of metric "
     "name to regular expression (got 'RMSE')"),
    ("{files: [../scores.json]}",
     "MLproject:6: entry_points.main.metrics.files: '../scores.json' may not leave "
     "REPRUN_OUTPUT_DIR ('..')"),
    ("{files: [/etc/scores.json]}",
     "MLproject:6: entry_points.main.metrics.files: '/etc/scores.json' must be a path relative "
     "to REPRUN_OUTPUT_DIR"),
    ("{better: {r2: up}}",
     "MLproject:6: entry_points.main.metrics.better.r2: Input should be 'min' or 'max' "
     "(got 'up')"),
])
def test_bad_metrics_declarations_are_errors_naming_file_key_and_value(
        reprun: Reprun, make_project: MakeProject, mlproject_metrics: str, message: str) -> None:
    project = make_project(f"""
        name: bad
        entry_points:
          main:
            command: "true"
            metrics: {mlproject_metrics}
        """)
    result = reprun("run", str(project), "--env-manager", "local")
    assert result.code == 2
    assert result.error_lines == [f"reprun: error: {project}/{message}"], result.stderr
    assert not (reprun.home / "runs").exists() or not any((reprun.home / "runs").iterdir())


def test_an_unknown_metrics_key_is_a_warning(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("""
        entry_points:
          main:
            command: "true"
            metrics: {stdot: true}
        """)
    result = reprun("validate", str(project))
    assert "entry_points.main.metrics.stdot: unknown key 'stdot' is ignored; did you mean " \
           "'stdout'?" in result.stdout + result.stderr


# -- bad input, read directly ---------------------------------------------------------------


def run_collect(tmp_path: Path, spec: MetricsSpec | None = None, *, log: str | bytes = b"",
                stream: str | bytes | None = None,
                files: dict[str, str | bytes] | None = None,
                ) -> tuple[dict[str, object], list[str], Path]:
    run_dir, out = tmp_path / "run", tmp_path / "run" / "outputs"
    (run_dir / "stream").mkdir(parents=True)
    out.mkdir()
    (run_dir / "output.log").write_bytes(log.encode() if isinstance(log, str) else log)
    if stream is not None:
        data = stream.encode() if isinstance(stream, str) else stream
        (run_dir / "stream" / "metrics.jsonl").write_bytes(data)
    for name, text in (files or {}).items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode() if isinstance(text, str) else text)
    notes: list[str] = []
    metrics, _history = collect(run_dir, out, run_dir / "output.log", spec, ["alpha"],
                                notes.append)
    return {k: v.model_dump() for k, v in metrics.items()}, notes, run_dir


@pytest.mark.parametrize(("files", "warning"), [
    ({"metrics.json": "{"}, "metrics.json: not valid JSON (Expecting property name enclosed in "
                            "double quotes: line 1 column 2 (char 1)); not read"),
    ({"metrics.json": "[1, 2]"}, "metrics.json: holds a list, not a mapping of names to values; "
                                 "not read"),
    ({"metrics.json": b"\xff\xfe"}, "metrics.json: not valid JSON ('utf-8' codec can't decode "
                                    "byte 0xff in position 0: invalid start byte); not read"),
    ({"metrics.yaml": "a: [1\n"}, "metrics.yaml: not valid YAML ("),
    ({"metrics.json": '{"rmse": "low"}'}, "metrics.json: 'rmse' is 'low', not a number; ignored"),
    ({"metrics.json": '{"rmse": null}'}, "metrics.json: 'rmse' is null, not a number; ignored"),
    ({"metrics.json": '{"ok": true}'}, "metrics.json: 'ok' is True, not a number; ignored"),
    ({"metrics.json": '{"rmse": NaN}'}, "file:metrics.json: metric 'rmse' is nan, ignored"),
    ({"metrics.json": '{"": 1}'}, "metrics.json: the name '' is not a usable metric name (1 to "
                                  "250 printable characters); ignored"),
    ({"metrics.json": '{"big": 1' + "0" * 400 + "}"},
     "file:metrics.json: metric 'big' is inf, ignored"),
    ({"metrics.json": "[" * 100_000 + "]" * 100_000}, "metrics.json: not valid JSON ("),
    ({"metrics.json": "{}" + " " * (17 * 1024 * 1024)},
     "metrics.json: 17825794 bytes, more than 16777216 for a metrics file; not read"),
])
def test_bad_metrics_files_warn(tmp_path: Path, files: dict[str, str | bytes],
                                warning: str) -> None:
    metrics, notes, _ = run_collect(tmp_path, files=files)
    assert metrics == {}
    assert len(notes) == 1 and notes[0].startswith(f"warning: metrics: {warning}"), notes


def test_a_declared_file_that_is_missing_warns(tmp_path: Path) -> None:
    _metrics, notes, _ = run_collect(tmp_path, MetricsSpec(files=["eval/scores.json"]))
    assert notes == ["warning: metrics: the metrics file eval/scores.json named by the MLproject "
                     "was not written in REPRUN_OUTPUT_DIR"]


@pytest.mark.parametrize(("line", "warning"), [
    ("not json", "REPRUN_METRICS line 1: not a JSON object, ignored"),
    ("[1, 2]", "REPRUN_METRICS line 1: not a JSON object, ignored"),
    ('{"name": "loss", "value": "high"}',
     "REPRUN_METRICS line 1: 'loss' is 'high', not a number; ignored"),
    ('{"name": 3, "value": 1}', "REPRUN_METRICS line 1: the name 3 is not a usable metric name "
                                "(1 to 250 printable characters); ignored"),
    ('{"name": "a\\u001b[31mb", "value": 1}', "REPRUN_METRICS line 1: the name 'a\\x1b[31mb' is "
                                            "not a usable metric name (1 to 250 printable "
                                            "characters); ignored"),
    ('{"name": "' + "x" * 251 + '", "value": 1}',
     "REPRUN_METRICS line 1: the name '" + "x" * 40 + "...' is not a usable metric name (1 to "
     "250 printable characters); ignored"),
    ('{"name": "loss", "value": NaN}', "stream: metric 'loss' is nan, ignored"),
    ('{"name": "loss", "value": Infinity}', "stream: metric 'loss' is inf, ignored"),
])
def test_bad_stream_lines_warn(tmp_path: Path, line: str, warning: str) -> None:
    metrics, notes, _ = run_collect(tmp_path, stream=line + "\n")
    assert metrics == {}
    assert notes == [f"warning: metrics: {warning}"]


def test_a_bad_step_keeps_the_value(tmp_path: Path) -> None:
    metrics, notes, _ = run_collect(tmp_path, stream='{"name": "loss", "value": 1, "step": -2}\n'
                                                     '{"name": "loss", "value": 2, "step": "3"}\n')
    assert notes == ["warning: metrics: REPRUN_METRICS line 1: the step -2 is not a whole number "
                     ">= 0; the value is kept without it"]
    assert metrics["loss"]["count"] == 2 and metrics["loss"]["step"] == 3


def test_warnings_of_one_kind_are_counted_after_three(tmp_path: Path) -> None:
    _metrics, notes, _ = run_collect(tmp_path, stream="x\n" * 10 + '{"name": "a", "value": 1}\n')
    assert notes == [f"warning: metrics: REPRUN_METRICS line {n}: not a JSON object, ignored"
                     for n in (1, 2, 3)] + ["warning: metrics: stream: not JSON: 7 more like this"]


def test_a_million_values_keep_exact_summaries_and_a_bounded_history(tmp_path: Path) -> None:
    lines = "".join(f'{{"name": "loss", "value": {i}, "step": {i}}}\n' for i in range(1_000_000))
    metrics, notes, run_dir = run_collect(tmp_path, stream=lines)
    assert metrics["loss"] == {"last": 999_999.0, "step": 999_999, "min": 0.0,
                               "max": 999_999.0, "count": 1_000_000, "better": None}
    assert notes == [f"warning: metrics: more than {MAX_HISTORY} values: the later ones count in "
                     "the summaries but are not kept in metrics.jsonl"]
    with (run_dir / "metrics.jsonl").open() as handle:
        assert sum(1 for _ in handle) == MAX_HISTORY


def test_too_many_names_are_cut_with_a_warning(tmp_path: Path) -> None:
    log = "".join(f"m{i}: {i}\n" for i in range(MAX_NAMES + 50))
    metrics, notes, _ = run_collect(tmp_path, MetricsSpec(stdout=True), log=log)
    assert len(metrics) == MAX_NAMES
    assert notes == [f"warning: metrics: more than {MAX_NAMES} metric names: 'm{MAX_NAMES}' "
                     "(stdout) and later new names are ignored"]


def test_binary_output_and_endless_lines_are_skipped(tmp_path: Path) -> None:
    log = b"\x00\xff" * 10 + b"\n" + b"x" * (200 * 1024) + b"loss: 3\n" + b"loss: 1\n"
    metrics, notes, _ = run_collect(tmp_path, MetricsSpec(stdout=True), log=log)
    assert notes == [] and metrics["loss"]["count"] == 1 and metrics["loss"]["last"] == 1.0


def test_printed_convention(tmp_path: Path) -> None:
    log = ("alpha: 0.5\n"            # a parameter: ignored
           "  RMSE: 0.73\n"          # indented: read
           "loss: 0.5 (step 4)\n"
           "step: 9\n"
           "acc: 1e-3\n"
           "12:30: 5\n"              # not a name
           "time: 12:30\n"           # not a number
           "loss: nan\n")            # not finite: warned
    metrics, notes, _ = run_collect(tmp_path, MetricsSpec(stdout=True), log=log)
    assert {k: (v["last"], v["step"]) for k, v in metrics.items()} == {
        "RMSE": (0.73, None), "loss": (0.5, 4), "acc": (0.001, 9)}
    assert notes == ["warning: metrics: stdout: metric 'loss' is nan, ignored"]


def test_a_warm_run_that_reports_metrics_imports_no_yaml_or_pydantic(
        reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: 'bash report.sh'\n",
                           files={"report.sh": """echo '{"rmse": 1}' """
                                               """> "$REPRUN_OUTPUT_DIR/metrics.json"\n"""})
    assert reprun("run", str(project), "--env-manager", "local", "-q").code == 0  # fills caches
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "runner", "run", str(project), "-q",
         "--env-manager", "local"],
        env=reprun.env(), cwd=reprun.cwd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0]
                for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "runner" in imported
    assert not imported & {"pydantic", "pydantic_core", "yaml"}, imported
    assert reprun.last_record()["metrics"]["rmse"]["last"] == 1.0


# -- where the command runs elsewhere ------------------------------------------------------------

REPORTER = """\
import json, os
print("REPRUN_METRICS=" + os.environ["REPRUN_METRICS"])
with open(os.environ["REPRUN_METRICS"], "a") as stream:
    for step in range(3):
        stream.write(json.dumps({"name": "loss", "value": 1.0 / (step + 1), "step": step}) + "\\n")
print("acc: 0.9")
"""
REPORTING = """\
name: {name}
entry_points:
  main:
    command: "python report.py"
    metrics: {{stdout: true}}
"""


@pytest.mark.docker
def test_a_docker_run_reports_through_the_mounted_stream(
        reprun: Reprun, make_project: MakeProject, base_image: str, image_repo: str) -> None:
    project = make_project(REPORTING.format(name=image_repo), files={"report.py": REPORTER},
                           name=image_repo)
    result = reprun("run", str(project), "--backend", "docker", "--env-manager", "local",
                    "--docker-base-image", base_image)
    assert result.code == 0, result.stderr
    assert "REPRUN_METRICS=/reprun/stream/metrics.jsonl" in result.stdout
    record = reprun.last_record()
    assert record["metrics"]["loss"]["last"] == pytest.approx(1 / 3)
    assert record["metrics"]["loss"]["count"] == 3 and record["metrics"]["loss"]["step"] == 2
    assert record["metrics"]["acc"]["last"] == 0.9
    docker = record["backend"]["docker"]
    assert "REPRUN_METRICS" in docker["env_names"]
    assert any(v.endswith(":/reprun/stream:rw") for v in docker["volumes"])


def kube_project(make_project: MakeProject) -> tuple[Path, str]:
    # The fake cluster runs the command on this machine: the stream goes nowhere here.
    project = make_project(REPORTING.format(name="kube-metrics"),
                           files={"report.py": REPORTER.replace(
                               'os.environ["REPRUN_METRICS"], "a"', "os.devnull, 'a'")})
    config = json.dumps({"image": "127.0.0.1:9/reprun/app@sha256:" + "0f" * 32,
                         "poll_seconds": 0.3, "working_dir": str(project)})
    return project, config


def test_a_kubernetes_run_reports_printed_metrics_from_its_log(
        reprun: Reprun, make_project: MakeProject, fake_kube: Any) -> None:
    project, config = kube_project(make_project)
    result = reprun("run", str(project), "--backend", "kubernetes", "--backend-config", config,
                    env={"KUBECONFIG": str(fake_kube.kubeconfig_path)})
    assert result.code == 0, result.stderr
    assert "REPRUN_METRICS=/var/tmp/reprun-metrics.jsonl" in result.stdout  # set in the pod
    assert reprun.last_record()["metrics"]["acc"]["last"] == 0.9


def test_a_detached_kubernetes_run_gets_its_metrics_when_it_is_completed(
        reprun: Reprun, make_project: MakeProject, fake_kube: Any) -> None:
    project, config = kube_project(make_project)
    env = {"KUBECONFIG": str(fake_kube.kubeconfig_path)}
    result = reprun("run", str(project), "--backend", "kubernetes", "--backend-config", config,
                    "--detach", env=env)
    assert result.code == 0, result.stderr
    run_id = reprun.last_record()["run_id"]
    deadline = time.monotonic() + 60
    while (shown := reprun("runs", "show", run_id, "--json", env=env).json())["status"] \
            == "RUNNING":
        assert time.monotonic() < deadline, "the detached run did not finish"
        time.sleep(0.3)
    assert shown["status"] == "FINISHED"
    assert shown["metrics"]["acc"]["last"] == 0.9 and shown["metrics_file"] == "metrics.jsonl"


def test_metrics_that_cannot_be_written_leave_the_record_finished(
        reprun: Reprun, make_project: MakeProject) -> None:
    # The run puts a directory where the history file goes: writing it fails (as a full disk
    # would); the run is still recorded as it ended, with a warning.
    script = ('mkdir "$(dirname "$REPRUN_METRICS")/../metrics.jsonl"\n'
              """echo '{"rmse": 1}' > "$REPRUN_OUTPUT_DIR/metrics.json"\n""")
    project = make_project("entry_points:\n  main:\n    command: 'bash block.sh'\n",
                           files={"block.sh": script})
    result = reprun("run", str(project), "--env-manager", "local")
    assert result.code == 0, result.stderr
    assert any(line.startswith("reprun: warning: metrics: not recorded: [Errno 21] Is a "
                               "directory") for line in result.stderr.splitlines()), result.stderr
    record = reprun.last_record()
    assert record["status"] == "FINISHED" and record["metrics"] == {}


def test_a_run_completed_later_with_a_damaged_mlproject_copy_warns(
        reprun: Reprun, make_project: MakeProject) -> None:
    from runner.record.store import RunStore
    from runner.tracking.metrics import completed_later

    project = make_project("entry_points:\n  main:\n    command: 'echo \"loss: 2\"'\n"
                           "    metrics: {stdout: true}\n")
    assert reprun("run", str(project), "--env-manager", "local", "-q").code == 0
    store = RunStore(reprun.home)
    record = store.get(reprun.last_record()["run_id"])
    run_dir = store.run_dir(record.run_id)
    again = completed_later(record, run_dir, print)
    assert again.metrics["loss"].last == 2.0  # read with the kept MLproject's declaration
    (run_dir / "spec" / "MLproject").write_text("entry_points: [\n")
    notes: list[str] = []
    damaged = completed_later(record, run_dir, notes.append)
    assert len(notes) == 1 and notes[0].startswith(
        "warning: metrics: the MLproject kept with the run is not valid: "), notes
    assert damaged.metrics == {}  # without the declaration, printed lines are not read
