"""Comparing runs: `runs list` columns, sort, --where, --json/--csv; `runs compare`; the index
that holds parameters and metrics, and its upgrade from an older index."""

from __future__ import annotations

import csv
import io
import sqlite3
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

import pytest
from conftest import MakeProject, Reprun

from runner.record.host import host_info
from runner.record.index import INDEX_VERSION
from runner.record.store import RunStore
from runner.record.types import (
    BackendInfo,
    EnvironmentInfo,
    MetricSummary,
    ProjectInfo,
    RunRecord,
    SourceInfo,
    Status,
)
from runner.tracking.compare import guess_better

START = datetime(2026, 3, 1, tzinfo=timezone.utc)


def add_run(store: RunStore, minute: int, params: Mapping[str, str],
            metrics: Mapping[str, float], status: Status = Status.FINISHED,
            better: Mapping[str, str] | None = None) -> str:
    """A finished run written through the store, as a real run is."""
    run_id = f"{minute:02d}" + uuid.uuid4().hex[2:]
    store.create_run_dir(run_id)
    began = START + timedelta(minutes=minute)
    store.save(RunRecord(
        run_id=run_id, status=status, exit_code=0 if status is Status.FINISHED else 1,
        entry_point="main", parameters=dict(params), command="python train.py",
        project=ProjectInfo(uri="wine", path="/wine", name="wine"), source=SourceInfo(),
        environment=EnvironmentInfo(kind="none", manager="local"),
        backend=BackendInfo(name="local"), host=host_info(), output_dir="/out",
        started_at=began, ended_at=began + timedelta(seconds=2), duration_s=2.0,
        metrics={k: MetricSummary(last=v, min=v, max=v, count=1,
                                  better=(better or {}).get(k))  # type: ignore[arg-type]
                 for k, v in metrics.items()},
    ))
    return run_id


@pytest.fixture
def runs(reprun: Reprun) -> dict[str, str]:
    """Five runs: alpha 0.1 .. 0.5 (a text 'kind'), rmse rising with alpha, one failed run
    without metrics, one run without r2."""
    store = RunStore(reprun.home)
    ids = {
        "a1": add_run(store, 1, {"alpha": "0.1", "kind": "fast"},
                      {"rmse": 0.62, "r2": 0.94}),
        "a2": add_run(store, 2, {"alpha": "0.2", "kind": "slow"},
                      {"rmse": 0.73, "r2": 0.91}),
        "a10": add_run(store, 3, {"alpha": "10", "kind": "fast"}, {"rmse": 1.5, "r2": 0.2}),
        "a3": add_run(store, 4, {"alpha": "0.3", "kind": "fast"}, {"rmse": 0.85}),
        "bad": add_run(store, 5, {"alpha": "0.4", "kind": "slow"}, {}, Status.FAILED),
    }
    store.close()
    return ids


def listed(reprun: Reprun, *args: str) -> list[str]:
    result = reprun("runs", "list", "--json", *args)
    assert result.code == 0, result.stderr
    return [row["run_id"] for row in result.json()]


def test_sort_by_a_metric_and_by_a_parameter(reprun: Reprun, runs: dict[str, str]) -> None:
    names = {v: k for k, v in runs.items()}
    by_rmse = listed(reprun, "--sort", "metrics.rmse")
    assert [names[i] for i in by_rmse] == ["a1", "a2", "a3", "a10", "bad"]  # no value: last
    by_r2 = listed(reprun, "--sort=-metrics.r2")
    assert [names[i] for i in by_r2] == ["a1", "a2", "a10", "bad", "a3"][:3] + \
        [names[i] for i in by_r2][3:]
    assert {names[i] for i in by_r2[3:]} == {"a3", "bad"}  # without r2: last, newest first
    assert [names[i] for i in by_r2[3:]] == ["bad", "a3"]
    by_alpha = listed(reprun, "--sort", "-params.alpha")  # as numbers: 10 > 0.4
    assert [names[i] for i in by_alpha] == ["a10", "bad", "a3", "a2", "a1"]
    assert [names[i] for i in listed(reprun, "--sort", "params.kind,-metrics.rmse")] == [
        "a10", "a3", "a1", "a2", "bad"]
    assert len(listed(reprun, "--sort", "metrics.rmse", "-n", "2")) == 2


@pytest.mark.parametrize(("where", "expected"), [
    ("metrics.rmse < 0.8", {"a1", "a2"}),
    ("metrics.rmse < 0.8 and params.alpha >= 0.2 and status = FINISHED", {"a2"}),
    ("params.alpha > 1", {"a10"}),  # a number compares as a number, not as text
    ("params.kind = fast or metrics.r2 >= 0.9", {"a1", "a2", "a10", "a3"}),
    ("not (params.kind = 'fast') and status != finished", {"bad"}),
    ("(metrics.rmse < 0.7 or metrics.rmse > 1) and params.kind = \"fast\"", {"a1", "a10"}),
    ("metrics.r2 != 0.2", {"a1", "a2"}),  # a run without the metric matches no comparison
    ("status = FAILED", {"bad"}),
    ("started >= 2026-03-01T00:04", {"a3", "bad"}),
    ("entry_point = main and project = wine and backend = local and exit_code = 0",
     {"a1", "a2", "a10", "a3"}),
    ("params.alpha == 0.10", {"a1"}),
])
def test_where_selects_runs(reprun: Reprun, runs: dict[str, str], where: str,
                            expected: set[str]) -> None:
    names = {v: k for k, v in runs.items()}
    assert {names[i] for i in listed(reprun, "--where", where)} == expected


@pytest.mark.parametrize(("where", "message"), [
    ("", "--where is empty; e.g. --where \"metrics.rmse < 0.8\""),
    ("metrics.rmse <", "--where 'metrics.rmse <': expected a value to compare 'metrics.rmse' "
                       "with at the end"),
    ("metrics.rmse 0.8", "--where 'metrics.rmse 0.8': expected an operator (= != < <= > >=) "
                         "after 'metrics.rmse' at '0.8' (column 14)"),
    ("rmse < 0.8", "--where 'rmse < 0.8': unknown field 'rmse' (use params.NAME, metrics.NAME, "
                   "status, entry_point, project, backend, started, ...) at 'rmse' (column 1)"),
    ("metrics.rmse < low", "--where 'metrics.rmse < low': 'metrics.rmse' is a number; compare "
                           "it with a number, not low at 'low' (column 16)"),
    ("metrics.rmse < 0.8 and", "--where 'metrics.rmse < 0.8 and': expected a field such as "
                               "metrics.rmse or status at the end"),
    ("(metrics.rmse < 0.8", "--where '(metrics.rmse < 0.8': expected ')' at the end"),
    ("metrics.rmse < 0.8)", "--where 'metrics.rmse < 0.8)': expected 'and', 'or' or the end "
                            "at ')' (column 19)"),
    ("params.kind = 'fast", "--where \"params.kind = 'fast\": unclosed quote at ''' "
                            "(column 15); end the text with '"),
    ("metrics.rmse ~ 1", "--where 'metrics.rmse ~ 1': unexpected character at '~' (column 14); "
                         "use and, or, not, parentheses and = != < <= > >="),
    ("metrics.rmse < 1; drop table runs", "--where 'metrics.rmse < 1; drop table runs': "
                                          "unexpected character at ';' (column 17)"),
    ("__import__('os') = 1", "--where \"__import__('os') = 1\": unknown field '__import__' "),
    ("metrics.rmse < 1 or or", "--where 'metrics.rmse < 1 or or': expected a field such as "
                               "metrics.rmse or status at 'or' (column 21)"),
    ("metrics.rsme < 0.9", "--where 'metrics.rsme < 0.9': no run has the metric 'rsme'; "
                           "nearest known: metrics.rmse, metrics.r2"),
    ("exit_code = zero", "--where 'exit_code = zero': 'exit_code' is a number; compare it with "
                         "a number, not zero at 'zero' (column 13)"),
])
def test_a_bad_where_is_one_line_and_exit_2(reprun: Reprun, runs: dict[str, str], where: str,
                                            message: str) -> None:
    result = reprun("runs", "list", "--where", where)
    assert result.code == 2
    assert len(result.error_lines) == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.error_lines[0].startswith(f"reprun: error: {message}"), result.error_lines


@pytest.mark.parametrize(("args", "message"), [
    (["--sort", "rmse"], "--sort: unknown field 'rmse'; use params.NAME, metrics.NAME or one of"),
    (["--sort", "-"], "--sort: empty field in '-'"),
    (["-c", "metrics.rmse,,status"], "--columns: empty field name"),
    (["-c", "params."], "--columns: unknown field 'params.'"),
])
def test_bad_columns_and_sort_fields(reprun: Reprun, runs: dict[str, str], args: list[str],
                                     message: str) -> None:
    result = reprun("runs", "list", *args)
    assert result.code == 2 and len(result.error_lines) == 1
    assert result.error_lines[0].startswith(f"reprun: error: {message}"), result.error_lines


def test_columns_as_a_table_json_and_csv(reprun: Reprun, runs: dict[str, str]) -> None:
    table = reprun("runs", "list", "-c", "params.alpha,metrics.rmse,status",
                   "--sort", "metrics.rmse").stdout.splitlines()
    assert table[0].split() == ["RUN", "ID", "params.alpha", "metrics.rmse", "STATUS"]
    assert table[1].split() == [runs["a1"][:12], "0.1", "0.62", "FINISHED"]
    assert table[-1].split() == [runs["bad"][:12], "0.4", "-", "FAILED"]

    rows = reprun("runs", "list", "--json", "-c", "metrics.rmse,params.kind",
                  "--where", "params.alpha = 0.2").json()
    assert rows == [{"run_id": runs["a2"], "metrics.rmse": 0.73, "params.kind": "slow"}]
    full = reprun("runs", "list", "--json", "--where", "params.alpha = 0.2").json()[0]
    assert full["params"] == {"alpha": "0.2", "kind": "slow"}
    assert full["metrics"] == {"rmse": 0.73, "r2": 0.91} and full["status"] == "FINISHED"

    text = reprun("runs", "list", "--csv", "-c", "params.alpha,metrics.r2",
                  "--sort", "params.alpha").stdout
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == ["run_id", "params.alpha", "metrics.r2"]
    assert parsed[1] == [runs["a1"], "0.1", "0.94"] and parsed[4] == [runs["bad"], "0.4", ""]
    default_csv = list(csv.reader(io.StringIO(reprun("runs", "list", "--csv").stdout)))
    assert default_csv[0][:3] == ["run_id", "status", "started"] and len(default_csv) == 6
    both = reprun("runs", "list", "--csv", "--json")
    assert both.code == 2


def test_an_index_from_an_older_reprun_is_rebuilt_with_params_and_metrics(
        reprun: Reprun, runs: dict[str, str]) -> None:
    index = reprun.home / "index.sqlite"
    for suffix in ("", "-wal", "-shm"):
        (reprun.home / f"index.sqlite{suffix}").unlink(missing_ok=True)
    old = sqlite3.connect(index)  # the index as the previous version wrote it
    old.executescript("""
        CREATE TABLE runs (run_id TEXT PRIMARY KEY, status TEXT NOT NULL,
            started_at TEXT NOT NULL, duration_s REAL, project TEXT, entry_point TEXT,
            exit_code INTEGER);
        CREATE INDEX runs_started ON runs (started_at);
    """)
    old.execute("INSERT INTO runs VALUES (?, 'FINISHED', '2026-03-01T00:01:00+00:00', 2.0, "
                "'wine', 'main', 0)", (runs["a1"],))
    old.commit()
    old.close()
    names = {v: k for k, v in runs.items()}
    assert [names[i] for i in listed(reprun, "--where", "metrics.rmse < 0.8",
                                     "--sort", "metrics.rmse")] == ["a1", "a2"]
    db = sqlite3.connect(index)
    assert db.execute("PRAGMA user_version").fetchone()[0] == INDEX_VERSION
    assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 5
    assert db.execute("SELECT count(*) FROM metrics").fetchone()[0] == 7
    db.close()
    assert len(listed(reprun)) == 5  # and it stays usable


def test_compare_runs_side_by_side(reprun: Reprun, runs: dict[str, str]) -> None:
    result = reprun("runs", "compare", runs["a1"][:8], runs["a2"], runs["a3"])
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [runs["a1"][:12], runs["a2"][:12], runs["a3"][:12]]
    rows = {line.split()[1] if line.startswith("~") else line.split()[0]: line
            for line in lines[3:-1]}
    assert list(rows) == ["params.alpha", "params.kind", "metrics.rmse", "metrics.r2"]
    assert rows["metrics.rmse"].split() == ["~", "metrics.rmse", "(min)", "0.62", "*", "0.73",
                                            "0.85"]
    assert rows["metrics.r2"].split() == ["~", "metrics.r2", "(max)", "0.94", "*", "0.91", "-"]
    assert lines[-1].startswith("~ differs between runs; * best value")

    data = reprun("runs", "compare", "--json", "--where", "params.kind = fast",
                  "--sort", "metrics.rmse").json()
    assert [r["run_id"] for r in data["runs"]] == [runs["a1"], runs["a3"], runs["a10"]]
    rmse = next(r for r in data["rows"] if r["field"] == "metrics.rmse")
    assert rmse == {"field": "metrics.rmse", "values": [0.62, 0.85, 1.5], "same": False,
                    "better": "min", "better_from": "name", "best": [0]}
    kind = next(r for r in data["rows"] if r["field"] == "params.kind")
    assert kind["same"] is True and data["rows"][-1] == kind  # the same ones last

    flagged = reprun("runs", "compare", "--json", runs["a1"], runs["a2"],
                     "--better", "metrics.rmse:max").json()
    rmse = next(r for r in flagged["rows"] if r["field"] == "metrics.rmse")
    assert rmse["better"] == "max" and rmse["better_from"] == "flag" and rmse["best"] == [1]


def test_compare_uses_the_direction_the_mlproject_declares(reprun: Reprun) -> None:
    store = RunStore(reprun.home)
    first = add_run(store, 1, {}, {"speed": 3.0}, better={"speed": "max"})
    second = add_run(store, 2, {}, {"speed": 5.0}, better={"speed": "max"})
    store.close()
    data = reprun("runs", "compare", "--json", first, second).json()
    assert data["rows"] == [{"field": "metrics.speed", "values": [3.0, 5.0], "same": False,
                             "better": "max", "better_from": "mlproject", "best": [1]}]


@pytest.mark.parametrize(("args", "message"), [
    (["--better", "metrics.rmse:lowest", "x"], "--better 'metrics.rmse:lowest' is not "
                                               "METRIC:min or METRIC:max"),
    ([], "no runs to compare"),
    (["--where", "metrics.rmse > 100"], "no run matches --where 'metrics.rmse > 100'"),
    (["zzzz"], "no run matches 'zzzz'"),
    (["--where", "rmse > 1"], "--where 'rmse > 1': unknown field 'rmse'"),
])
def test_compare_errors(reprun: Reprun, runs: dict[str, str], args: list[str],
                        message: str) -> None:
    result = reprun("runs", "compare", *args)
    assert result.code == 2 and len(result.error_lines) == 1
    assert result.error_lines[0].startswith(f"reprun: error: {message}"), result.error_lines


@pytest.mark.parametrize(("name", "better"), [
    ("loss", "min"), ("val_loss", "min"), ("eval.rmse", "min"), ("test/mae", "min"),
    ("Error-Rate", "min"), ("RMSE", "min"), ("accuracy", "max"), ("val_acc", "max"),
    ("r2", "max"), ("roc_auc", "max"), ("f1_macro", "max"), ("R2", "max"),
    ("tokens", None), ("epoch", None), ("lr", None),
])
def test_which_value_is_best_by_name(name: str, better: str | None) -> None:
    assert guess_better(name) == better


def test_diff_shows_metrics(reprun: Reprun, runs: dict[str, str]) -> None:
    data = reprun("diff", runs["a1"], runs["a3"], "--json").json()
    assert data["metrics"] == {"added": {}, "removed": {"r2": 0.94},
                               "changed": {"rmse": [0.62, 0.85]}, "same": 0}
    text = reprun("diff", runs["a1"], runs["a3"]).stdout.splitlines()
    start = next(i for i, line in enumerate(text) if line.startswith("metrics"))
    assert text[start + 1].split() == ["rmse", "0.62", "0.85", "*"]
    assert text[start + 2].split() == ["r2", "0.94", "-", "*"]


def test_a_real_run_is_found_by_its_metrics(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("""
        entry_points:
          main:
            parameters: {alpha: {type: float, default: 0.5}}
            command: "python -c 'print(\\"loss:\\", {alpha} * 2)'"
            metrics: {stdout: true}
        """)
    for alpha in ("0.1", "0.4"):
        assert reprun("run", str(project), "-P", f"alpha={alpha}", "--env-manager", "local",
                      "-q").code == 0
    rows = reprun("runs", "list", "--json", "-c", "params.alpha,metrics.loss",
                  "--where", "metrics.loss < 0.5").json()
    assert [(r["params.alpha"], r["metrics.loss"]) for r in rows] == [("0.1", 0.2)]
