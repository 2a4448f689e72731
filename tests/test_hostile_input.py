"""Hostile input, round 3: each class of docs/reliability.md fed to the real CLI (or the web
view), checked for one line, its exit code, no traceback, nothing lost, and an end within a
subprocess timeout (never a timed assertion)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeProject, Reprun, Result, init_repo, pid_alive, wait_for
from test_faults import fill, small_fs  # noqa: F401 (a fixture)
from test_sweep import held_project
from uistore import serving

MLPROJECT = "name: bad\nentry_points:\n  main:\n    command: \"python -c 'print(1)'\"\n"


def one_line(result: Result, *needles: str, code: int = 2) -> str:
    """The result is exit ``code`` with exactly one error line holding every needle."""
    assert result.code == code, (result.code, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(result.error_lines) == 1, result.stderr
    line = result.error_lines[0]
    for needle in needles:
        assert needle in line, line
    return line


# -- 9. the web view: every method but GET and HEAD -------------------------------------------

def test_web_view_answers_405_to_every_other_method(reprun: Reprun) -> None:
    reprun.home.mkdir(parents=True, exist_ok=True)
    with serving(reprun.home) as client:
        for method in ("PROPFIND", "MKCOL", "COPY", "LOCK", "SEARCH", "BREW", "post", "X-Y_1"):
            code, headers, body = client.request("/api/runs", method=method)
            assert code == 405, (method, code, body)
            assert headers["Allow"] == "GET, HEAD"
            assert json.loads(body)["error"] == (f"{method} is not allowed: the web view is "
                                                 "read-only (GET, HEAD)")
        code, headers, body = client.request("/", method="A" * 300)
        assert code == 405 and b"this method is not allowed" in body
        assert client.request("/api/runs")[0] == 200


# -- 3. query expressions are bounded ---------------------------------------------------------

DEEP = "(" * 500 + "status = FINISHED" + ")" * 500
NOTS = "not " * 800 + "status = FINISHED"
WIDE = " or ".join(["metrics.loss > 1"] * 1001)
MANY = ",".join(f"metrics.m{i}" for i in range(70))
QUERIES = [
    (("--where", DEEP), "nest deeper than the limit of 20"),
    (("--where", NOTS), "nest deeper than the limit of 20"),
    (("--where", WIDE), "more than the limit of 100 comparisons"),
    (("--sort", MANY), "--sort names 70 fields, more than the limit of 16"),
]


def test_query_expressions_are_bounded(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project(MLPROJECT)
    assert reprun("run", str(project), "--env-manager", "local", timeout=60).code == 0
    with serving(reprun.home) as client:
        for args, needle in QUERIES:
            commands = [("runs", "list"), ("runs", "list", "--json")]
            if args[0] == "--where":
                commands += [("runs", "compare"), ("runs", "delete", "-y")]
            else:
                commands.append(("runs", "compare", "--where", "status = FINISHED"))
            for command in commands:
                one_line(reprun(*command, *args, timeout=60), needle)
            name = {"--where": "where", "--sort": "sort"}[args[0]]
            query = "?" + urllib.parse.urlencode({name: args[1]})
            message = client.error("/api/runs" + query, 400)
            assert needle in message and "Traceback" not in message
            assert "internal error" not in client.error("/api/runs.csv" + query, 400)
    assert len(reprun("runs", "list", "--json").json()) == 1  # nothing deleted


def test_many_columns_are_bounded(reprun: Reprun) -> None:
    columns = ",".join(f"params.p{i}" for i in range(5000))
    one_line(reprun("runs", "list", "-c", columns),
             "--columns names 5000 fields, more than the limit of 200")
    assert reprun("runs", "list", "-c", MANY, "--sort", MANY.split(",", 16)[0]).code == 0


# -- 7. records that lie about themselves -----------------------------------------------------

LIAR = "f" * 32  # a folder name that looks like a run id


@pytest.mark.parametrize("claimed", ["../../x", "same-as-other"])
def test_record_whose_run_id_is_not_its_folder(reprun: Reprun, make_project: MakeProject,
                                               claimed: str) -> None:
    project = make_project(MLPROJECT)
    assert reprun("run", str(project), "--env-manager", "local", timeout=60).code == 0
    (real,) = [r["run_id"] for r in reprun("runs", "list", "--json").json()]
    runs = reprun.home / "runs"
    shutil.copytree(runs / real, runs / LIAR)
    data = json.loads((runs / LIAR / "run.json").read_text())
    data["run_id"] = real if claimed == "same-as-other" else claimed
    (runs / LIAR / "run.json").write_text(json.dumps(data))
    needle = f"runs/{LIAR} says its run_id is"
    for index_first in (False, True):
        if index_first:
            reindexed = reprun("runs", "reindex")
            assert reindexed.code == 0 and needle in reindexed.stderr
            assert "indexed 1 run(s)" in reindexed.stderr
        listed = reprun("runs", "list", "--json")
        assert [r["run_id"] for r in listed.json()] == [real]
        assert "Traceback" not in listed.stderr  # left out (with a warning when it is read)
        for command in (("runs", "show", LIAR), ("runs", "delete", "-y", LIAR),
                        ("runs", "compare", LIAR, real), ("export", LIAR)):
            one_line(reprun(*command), needle)
        dry = reprun("runs", "delete", "--where", "status = FINISHED", "--dry-run")
        assert LIAR not in dry.stdout and claimed not in dry.stdout
        assert "1 run(s) would be deleted" in dry.stderr
    assert (runs / LIAR / "run.json").is_file() and (runs / real / "run.json").is_file()
    with serving(reprun.home) as client:
        assert needle in client.error(f"/api/runs/{LIAR}", 404)
        assert [r["run_id"] for r in client.json("/api/runs")] == [real]


# -- 6. paths that loop -----------------------------------------------------------------------

@pytest.mark.parametrize("link", ["loop", "a/b"])
def test_data_entry_that_is_a_symlink_loop(reprun: Reprun, make_project: MakeProject,
                                           link: str) -> None:
    project = make_project(MLPROJECT + f"data: [{link}]\n")
    (project / "a").symlink_to("a/b") if link == "a/b" else (project / "loop").symlink_to("loop")
    result = reprun("run", str(project), "--env-manager", "local", timeout=60)
    one_line(result, f"data: '{link}' is a symbolic link that loops", str(project))
    runs = reprun.home / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def test_a_loop_inside_a_data_folder_is_not_entered(reprun: Reprun,
                                                     make_project: MakeProject) -> None:
    project = make_project(MLPROJECT + "data: [data]\n", files={"data/x.csv": "1,2\n"})
    (project / "data" / "up").symlink_to("..")
    (project / "data" / "self").symlink_to("self")
    result = reprun("run", str(project), "--env-manager", "local", timeout=60)
    assert result.code == 0, result.stderr
    (data,) = reprun.last_record()["inputs"]
    assert data["files"] == 1


# -- 8. a full disk at a run's start ----------------------------------------------------------

@pytest.mark.parametrize("full", ["fresh store", "cache"])
def test_a_full_disk_at_the_start_names_the_place(reprun: Reprun, make_project: MakeProject,
                                                   small_fs: Any, full: str) -> None:  # noqa: F811
    project = make_project(MLPROJECT)
    init_repo(project)
    disk = small_fs("1m")
    fill(disk)
    if full == "cache":
        home, env, needle = reprun.home, {"REPRUN_CACHE_DIR": str(disk / "cache")}, "the cache "
        uri = project.as_uri()
    else:
        home, env, needle, uri = disk / "home", {}, f"the run store {disk / 'home'} is full", \
            str(project)
    store = Reprun(home, reprun.cwd)
    result = store("run", uri, "--env-manager", "local", env=env, timeout=60)
    one_line(result, needle, "(No space left on device)", "free some space", code=1)
    for run in (home / "runs").iterdir() if (home / "runs").is_dir() else ():
        assert (run / "run.json").is_file()  # no run without its record


# -- 2. metric patterns are bounded -----------------------------------------------------------

BACKTRACKING = """
name: slow
entry_points:
  main:
    command: "python -c \\"print('loss: 0.5'); [print('a' * 60 + '!') for _ in range(3)]\\""
    metrics:
      stdout: {{slow: "{pattern}", loss: "loss: (\\\\S+)"}}
"""


@pytest.mark.parametrize("pattern", ["^(a|aa)+$", "^(\\\\w|\\\\w\\\\w)+$", "(a|aa)+(?P<value>b)"])
def test_a_backtracking_metric_pattern_is_stopped(reprun: Reprun, make_project: MakeProject,
                                                  pattern: str) -> None:
    project = make_project(BACKTRACKING.format(pattern=pattern))
    result = reprun("run", str(project), "--env-manager", "local", timeout=180)
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr
    slow = [line for line in result.stderr.splitlines() if "the pattern of 'slow'" in line]
    assert len(slow) == 1 and "was stopped" in slow[0], result.stderr
    record = reprun.last_record()
    assert record["status"] == "FINISHED"
    assert record["metrics"]["loss"]["last"] == 0.5  # the other pattern still read its line


# -- 5. a tracking server that trickles -------------------------------------------------------

@pytest.fixture
def trickling_server() -> Iterator[str]:
    """A server that accepts, reads the request, then answers one byte a second."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"X" * 600:
                if stop.wait(1.0):
                    return
                conn.send(bytes([byte]))

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def test_a_trickling_tracking_server_costs_at_most_the_timeout(
        reprun: Reprun, make_project: MakeProject, trickling_server: str) -> None:
    project = make_project(MLPROJECT)
    env = {"MLFLOW_TRACKING_URI": trickling_server, "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
    result = reprun("run", str(project), "--env-manager", "local", env=env, timeout=90)
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "did not answer POST /api/2.0/mlflow/runs/create within 2 s" in result.stderr
    assert reprun.last_record()["status"] == "FINISHED"
    synced = reprun("runs", "sync", env=env, timeout=90)
    assert "Traceback" not in synced.stderr and "did not answer" in synced.stderr


# -- 1. links out of a run's output and metrics folders ---------------------------------------

LEAK = """set -e
out="$REPRUN_OUTPUT_DIR"
echo plain > "$out/plain.txt"
ln -s {secret}/secret.json "$out/metrics.json"
ln -s {secret}/secret.json "$out/leak.json"
ln -s {secret} "$out/sub"
mkfifo "$out/metrics.yaml"
rm -f "$REPRUN_METRICS"
ln -s {secret}/stolen.jsonl "$REPRUN_METRICS"
echo "ok: 1"
"""


def leaking_project(make_project: MakeProject, tmp_path: Path, header: str = "") -> Path:
    secret = tmp_path / "host-secret"
    secret.mkdir()
    (secret / "secret.json").write_text('{"secret": 42}')
    (secret / "m.json").write_text('{"secret_two": 7}')
    (secret / "stolen.jsonl").write_text('{"name": "stolen", "value": 1}\n')
    mlproject = (f"name: leak\n{header}entry_points:\n  main:\n    command: \"sh leak.sh\"\n"
                 "    metrics:\n      stdout: true\n      files: [sub/m.json]\n")
    return make_project(mlproject, files={"leak.sh": LEAK.format(secret=secret)})


def assert_nothing_followed(result: Result, record: dict[str, Any]) -> None:
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert record["status"] == "FINISHED"
    assert set(record["metrics"]) == {"ok"}, record["metrics"]
    assert [o["path"] for o in record["outputs"]] == ["plain.txt"]
    links = record["backend"]["facts"]["outputs_links_not_followed"]
    assert {"leak.json", "metrics.json", "sub"} <= set(links), links
    for name in ("metrics.json: a symbolic link (not followed)",
                 "sub/m.json: a symbolic link (not followed)",
                 "metrics.yaml: not a regular file",
                 "REPRUN_METRICS: a symbolic link (not followed)"):
        assert name in result.stderr, result.stderr


def test_links_out_of_the_output_and_metrics_folders_are_not_followed(
        reprun: Reprun, make_project: MakeProject, tmp_path: Path) -> None:
    project = leaking_project(make_project, tmp_path)
    result = reprun("run", str(project), "--env-manager", "local", timeout=90)
    assert_nothing_followed(result, reprun.last_record())


@pytest.mark.docker
def test_links_left_by_a_container_are_not_followed(
        reprun: Reprun, make_project: MakeProject, tmp_path: Path, base_image: str) -> None:
    project = leaking_project(make_project, tmp_path,
                              f"docker_env:\n  image: {base_image}\n  network: none\n")
    result = reprun("run", str(project), "-b", "docker", timeout=300)
    assert_nothing_followed(result, reprun.last_record())


def test_links_in_kubernetes_outputs_are_not_unpacked(tmp_path: Path) -> None:
    from backends.kubernetes.outputs import split_log, unpack, wrapped_command

    run_id = "0123456789abcdef0123456789abcdef"
    (tmp_path / "host").mkdir()
    command = ('echo x > "$REPRUN_OUTPUT_DIR/plain.txt"; ln -s /etc/hostname '
               '"$REPRUN_OUTPUT_DIR/metrics.json"; ln -s / "$REPRUN_OUTPUT_DIR/root"; '
               'ln -s ../../host "$REPRUN_OUTPUT_DIR/up"')
    env = {"PATH": "/usr/bin:/bin", "REPRUN_OUTPUT_DIR": str(tmp_path / "pod" / "out")}
    done = subprocess.run(wrapped_command(command, run_id, 1 << 20), check=False, env=env,
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=60)
    assert done.returncode == 0, done.stdout
    local = tmp_path / "local"
    problem = unpack(split_log(done.stdout, run_id)[1], local, 1 << 20)
    assert problem is not None and problem.startswith("outputs: links and special files are "
                                                      "not unpacked (never followed): ")
    assert "metrics.json" in problem and "root" in problem and "up" in problem
    assert sorted(p.name for p in local.rglob("*")) == ["plain.txt"]
    assert not any(p.is_symlink() for p in local.rglob("*"))


# -- 4. sweeps are bounded and exclusive ------------------------------------------------------

SWEPT = "name: swept\nentry_points:\n  main:\n    parameters: {a: float}\n    command: 'echo {a}'\n"


@pytest.mark.parametrize("space", ["a=uniform(0,1)", "a=1,2,3"])
def test_a_huge_random_sweep_is_refused_at_once(reprun: Reprun, make_project: MakeProject,
                                                space: str) -> None:
    project = make_project(SWEPT)
    for extra in (["--dry-run"], []):
        result = reprun("sweep", str(project), "-P", space, "--random", "1000000000",
                        "--env-manager", "local", *extra, timeout=60)
        one_line(result, "--random 1000000000: more than 100000 trials")
    assert not (reprun.home / "sweeps").exists() or not any((reprun.home / "sweeps").iterdir())


def _guard_of(pid: int) -> int:
    """The child-guard process (runner.process.ChildGuard) that reprun process ``pid`` started."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid and b"-I\0-S\0-c" in (entry / "cmdline").read_bytes():
                return int(entry.name)
    raise AssertionError(f"reprun process {pid} has no child guard")


def test_a_killed_sweeps_trials_end_with_it(reprun: Reprun, make_project: MakeProject,
                                             tmp_path: Path) -> None:
    project, pids, hold = held_project(make_project, tmp_path)
    proc = reprun.popen("sweep", str(project), "-P", "k=1..3", "--env-manager", "local")
    try:
        wait_for(lambda: pids.exists() and pids.read_text().strip() != "")
    finally:
        proc.kill()  # kill -9: the sweep itself can stop nothing; its guard does
        proc.wait(30)
    trial = int(pids.read_text().split()[0])
    wait_for(lambda: not pid_alive(trial), timeout=30)
    hold.unlink()


def test_a_killed_sweep_is_resumed_once_and_its_trials_stopped(
        reprun: Reprun, make_project: MakeProject, tmp_path: Path) -> None:
    project, pids, hold = held_project(make_project, tmp_path)
    proc = reprun.popen("sweep", str(project), "-P", "k=1..3", "--env-manager", "local")
    try:
        wait_for(lambda: pids.exists() and pids.read_text().strip() != "")
    finally:
        # kill -9 of the sweep and of its guard (both gone at once, as an OOM killer may do):
        # nothing stops the trials then, until the next command finds them.
        os.kill(_guard_of(proc.pid), signal.SIGKILL)
        proc.kill()
        proc.wait(30)
    sweep_id = next((reprun.home / "sweeps").iterdir()).name
    orphan = int(pids.read_text().split()[0])
    assert pid_alive(orphan)
    shown = reprun("sweep", "show", sweep_id)
    assert shown.code == 0 and "Traceback" not in shown.stderr
    assert f"sweep {sweep_id}: stopped" in shown.stderr and "left running" in shown.stderr
    wait_for(lambda: not pid_alive(orphan), timeout=30)
    pids.unlink()
    first = reprun.popen("sweep", "resume", sweep_id)
    try:
        wait_for(lambda: pids.exists() and pids.read_text().strip() != "")
        second = reprun("sweep", "resume", sweep_id, timeout=60)
        one_line(second, f"sweep {sweep_id} is being resumed by another reprun process")
    finally:
        hold.unlink()
        for pid in (int(p) for p in pids.read_text().split()):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)  # the held trial's sleep: the trial goes on
        _out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    saved = json.loads((reprun.home / "sweeps" / sweep_id / "sweep.json").read_text())
    assert saved["status"] == "FINISHED" and saved["resumed"] == 1
    assert [t["status"] for t in saved["trials"]] == ["FINISHED"] * 3
