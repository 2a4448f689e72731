"""Python environments: locks with hashes, the content-addressed cache, concurrency and failures.

Every test resolves against wheels it writes itself (``UV_FIND_LINKS`` + ``UV_NO_INDEX``), so
everything runs for real without the internet.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MakeProject, Reprun
from pywheels import make_broken_sdist, make_wheel

MLPROJECT = """
name: pyproj
python_env: python_env.yaml
entry_points:
  main:
    command: "python show.py"
"""
SHOW = """
import sys, alpha, beta
print("alpha", alpha.VERSION, "beta", beta.VERSION)
print("prefix", sys.prefix)
"""


def offline_env(wheels: Path, tmp: Path) -> dict[str, str]:
    """uv (and pip) find packages only in ``wheels``: the index is an empty folder."""
    empty = tmp / "empty-index"
    empty.mkdir(exist_ok=True)
    return {"UV_INDEX_URL": empty.as_uri(), "UV_FIND_LINKS": str(wheels),
            "UV_CACHE_DIR": str(tmp / "uv-cache"), "PIP_NO_INDEX": "1"}


class PyProject:
    def __init__(self, reprun: Reprun, directory: Path, wheels: Path, tmp: Path) -> None:
        self.reprun = reprun
        self.dir = directory
        self.wheels = wheels
        self.offline = offline_env(wheels, tmp)

    def run(self, *args: str,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        result = self.reprun("run", str(self.dir), *args, env={**self.offline, **(env or {})})
        return subprocess.CompletedProcess(args, result.code, result.stdout, result.stderr)

    def record(self) -> dict[str, object]:
        return self.reprun.last_record()

    @property
    def cache(self) -> Path:
        return self.reprun.home / "cache" / "python"


@pytest.fixture
def pyproj(reprun: Reprun, make_project: MakeProject, tmp_path: Path) -> PyProject:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "alpha", "1.0")
    make_wheel(wheels, "alpha", "2.0")
    make_wheel(wheels, "beta", "1.0", ["alpha<2"])
    directory = make_project(MLPROJECT, files={
        "python_env.yaml": "dependencies:\n  - -r requirements.txt\n",
        "requirements.txt": "beta\n",
        "show.py": SHOW,
    })
    return PyProject(reprun, directory, wheels, tmp_path)


def _env(record: dict[str, object]) -> dict[str, object]:
    env = record["environment"]
    assert isinstance(env, dict)
    return env


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_lock_pins_every_distribution_with_the_artifact_hash(pyproj: PyProject) -> None:
    result = pyproj.run()
    assert result.returncode == 0, result.stderr
    assert "alpha 1.0 beta 1.0" in result.stdout
    record = pyproj.record()
    env = _env(record)
    assert env["manager"] == "uv"
    assert env["python_version"] == platform.python_version()
    run_dir = pyproj.reprun.home / "runs" / str(record["run_id"])
    lock = (run_dir / str(env["lock_file"])).read_text()
    assert env["lock_sha256"] == hashlib.sha256(lock.encode()).hexdigest()
    for name in ("alpha-1.0", "beta-1.0"):
        wheel = pyproj.wheels / f"{name}-py3-none-any.whl"
        assert f"{name.replace('-', '==')} \\\n    --hash=sha256:{_sha256(wheel)}" in lock
    assert "alpha==2.0" not in lock
    assert f"# from file://{pyproj.wheels}" in lock
    assert f"# python: {platform.python_version()}\n" in lock
    assert str(pyproj.reprun.home) not in lock and str(pyproj.dir) not in lock
    packages = {p["name"]: p["version"] for p in env["packages"]}  # type: ignore[attr-defined]
    assert packages == {"alpha": "1.0", "beta": "1.0"}
    prefix = result.stdout.split("prefix ", 1)[1].strip()
    assert Path(prefix).resolve() == (pyproj.cache / "envs" / str(env["cache_key"])).resolve()


def test_second_run_reuses_lock_and_env_without_resolving(pyproj: PyProject) -> None:
    first = pyproj.run()
    assert first.returncode == 0, first.stderr
    key = _env(pyproj.record())["cache_key"]
    for wheel in pyproj.wheels.iterdir():  # resolution and installation are now impossible
        wheel.unlink()
    second = pyproj.run()
    assert second.returncode == 0, second.stderr
    assert "alpha 1.0 beta 1.0" in second.stdout
    assert "resolving" not in second.stderr and "building" not in second.stderr
    assert _env(pyproj.record())["cache_key"] == key


def test_refresh_resolves_again_and_builds_a_new_env(pyproj: PyProject) -> None:
    assert pyproj.run().returncode == 0
    old = _env(pyproj.record())
    make_wheel(pyproj.wheels, "alpha", "1.5")
    same = pyproj.run()
    assert "alpha 1.0" in same.stdout  # the cached lock still holds
    refreshed = pyproj.run("--refresh")
    assert refreshed.returncode == 0, refreshed.stderr
    assert "alpha 1.5 beta 1.0" in refreshed.stdout
    new = _env(pyproj.record())
    assert new["cache_key"] != old["cache_key"]
    old_env = pyproj.cache / "envs" / str(old["cache_key"])
    assert (old_env.resolve() / "lib").is_dir()  # never mutated in place


def test_changing_a_requirements_file_changes_the_lock(pyproj: PyProject) -> None:
    assert pyproj.run().returncode == 0
    old = _env(pyproj.record())
    (pyproj.dir / "requirements.txt").write_text("beta\nalpha<1.5\n")
    changed = pyproj.run()
    assert changed.returncode == 0, changed.stderr
    assert "resolving" in changed.stderr
    new = _env(pyproj.record())
    assert new["lock_sha256"] != old["lock_sha256"]
    assert new["cache_key"] != old["cache_key"]


def test_six_concurrent_cold_runs_build_one_environment(pyproj: PyProject) -> None:
    env = pyproj.offline
    procs = [pyproj.reprun.popen("run", str(pyproj.dir), env=env) for _ in range(6)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "alpha 1.0 beta 1.0" in out
    stderr = "".join(err for _out, err in outputs)
    assert stderr.count("building the uv environment") == 2  # start and end lines of one build
    assert stderr.count("resolving with uv") == 2
    builds = list((pyproj.cache / "builds").iterdir())
    assert len(builds) == 1
    keys = {_env(pyproj.reprun.record(r["run_id"]))["cache_key"]
            for r in pyproj.reprun("runs", "list", "--json").json()}
    assert len(keys) == 1


def test_a_build_killed_half_way_is_not_reused(pyproj: PyProject) -> None:
    # virtualenv (seeding pip) takes seconds: long enough to be killed in the middle for sure.
    argv = pyproj.reprun.argv("run", str(pyproj.dir), "--env-manager", "virtualenv")
    proc = subprocess.Popen(argv, env=pyproj.reprun.env(pyproj.offline), cwd=pyproj.reprun.cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    builds = pyproj.cache / "builds"
    deadline = time.monotonic() + 120
    while not (builds.is_dir() and any(builds.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not any((pyproj.cache / "envs").glob("*")) if (pyproj.cache / "envs").exists() else True
    half = next(builds.iterdir())
    again = pyproj.run("--env-manager", "virtualenv")
    assert again.returncode == 0, again.stderr
    assert "alpha 1.0 beta 1.0" in again.stdout
    assert "building the virtualenv environment" in again.stderr
    assert not half.exists()  # the leftover was cleaned up, not used
    assert _env(pyproj.record())["manager"] == "virtualenv"


@pytest.mark.parametrize("damage", ["marker", "package", "python"])
def test_a_corrupt_cache_entry_is_rebuilt(pyproj: PyProject, damage: str) -> None:
    assert pyproj.run().returncode == 0
    key = str(_env(pyproj.record())["cache_key"])
    entry = (pyproj.cache / "envs" / key).resolve()
    if damage == "marker":
        (entry / "reprun-env.json").write_text("{not json")
    elif damage == "package":
        for dist_info in entry.glob("lib/python*/site-packages/beta-1.0.dist-info"):
            for f in dist_info.iterdir():
                f.unlink()
            dist_info.rmdir()
    else:
        (entry / "bin" / "python").unlink()
    again = pyproj.run()
    assert again.returncode == 0, again.stderr
    assert "building the uv environment" in again.stderr
    assert "alpha 1.0 beta 1.0" in again.stdout
    assert _env(pyproj.record())["cache_key"] == key


def _one_error(pyproj: PyProject, result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("reprun: error:")]
    assert len(lines) == 1, result.stderr
    assert lines == [ln for ln in result.stderr.splitlines() if "error" in ln.lower()]
    return lines[0]


def _log_of(line: str) -> Path:
    log = Path(line.split("full log: ", 1)[1].strip())
    assert log.is_file()
    return log


@pytest.mark.parametrize(("requirements", "expected"), [
    ("beta\nalpha>=2\n", "resolution conflict: Because"),
    ("gamma\n", "package 'gamma' not found"),
])
def test_resolution_failures_are_one_line_with_the_log(
    pyproj: PyProject, requirements: str, expected: str
) -> None:
    (pyproj.dir / "requirements.txt").write_text(requirements)
    line = _one_error(pyproj, pyproj.run())
    assert expected in line
    assert "alpha<2" in _log_of(line).read_text() if "conflict" in expected else True


def test_unreachable_index_is_one_line_with_the_url(pyproj: PyProject) -> None:
    env = {"UV_FIND_LINKS": "", "UV_HTTP_RETRIES": "0",
           "UV_INDEX_URL": "http://user:secret@127.0.0.1:9/simple"}
    line = _one_error(pyproj, pyproj.run(env=env))
    assert "the package index is unreachable (http://127.0.0.1:9/simple" in line
    assert "secret" not in line
    assert "secret" not in _log_of(line).read_text()


def test_sdist_build_failure_is_one_line(pyproj: PyProject) -> None:
    make_broken_sdist(pyproj.wheels, "broken", "1.0")
    (pyproj.dir / "requirements.txt").write_text("broken\n")
    line = _one_error(pyproj, pyproj.run())
    assert "building 'broken==1.0' from source failed" in line
    assert "backend exploded" in line
    _log_of(line)


@pytest.mark.parametrize("manager", ["uv", "virtualenv"])
def test_missing_interpreter_names_the_version_and_the_fix(pyproj: PyProject, manager: str) -> None:
    (pyproj.dir / "python_env.yaml").write_text('python: "3.99"\ndependencies: [beta]\n')
    line = _one_error(pyproj, pyproj.run("--env-manager", manager))
    assert "Python 3.99" in line and "not found" in line
    assert "uv python install 3.99" in line


def test_interpreter_is_found_by_version(pyproj: PyProject) -> None:
    version = ".".join(platform.python_version_tuple()[:2])
    (pyproj.dir / "python_env.yaml").write_text(f'python: "{version}"\ndependencies: [beta]\n')
    result = pyproj.run()
    assert result.returncode == 0, result.stderr
    env = _env(pyproj.record())
    assert str(env["python_version"]).startswith(version + ".")


def test_uv_lock_project_is_installed_frozen(reprun: Reprun, make_project: MakeProject,
                                            tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "alpha", "1.0")
    directory = make_project(files={
        "pyproject.toml": '[project]\nname = "locked"\nversion = "0.1"\n'
                          'requires-python = ">=3.10"\ndependencies = ["alpha"]\n',
        "show.py": "import alpha; print('alpha', alpha.VERSION)\n",
    })
    offline = offline_env(wheels, tmp_path)
    from runner.envs.python.lock import uv_bin

    subprocess.run([uv_bin(), "lock", "--quiet"], cwd=directory, check=True,
                   env={**os.environ, **offline})
    result = reprun("run", str(directory), "-e", "show.py", env=offline)
    assert result.code == 0, result.stderr
    assert "alpha 1.0" in result.stdout
    assert "uv sync --frozen" in result.stderr
    env = _env(reprun.last_record())
    assert env["lock_file"] == "uv.lock"
    assert env["lock_sha256"] == _sha256(directory / "uv.lock")


def test_env_list_path_and_prune(pyproj: PyProject) -> None:
    assert pyproj.run().returncode == 0
    record = pyproj.record()
    key = str(_env(record)["cache_key"])
    listed = pyproj.reprun("env", "list", "--json").json()
    assert [e["key"] for e in listed] == [key]
    assert listed[0]["manager"] == "uv" and listed[0]["projects"] == [str(pyproj.dir)]
    assert listed[0]["size"] > 0
    table = pyproj.reprun("env", "list").stdout
    assert key[:12] in table and str(pyproj.dir) in table
    path = pyproj.reprun("env", "path", str(record["run_id"])[:8])
    assert path.code == 0, path.stderr
    assert Path(path.stdout.strip()) == (pyproj.cache / "envs" / key).resolve()
    kept = pyproj.reprun("env", "prune", "--older-than", "1d")
    assert kept.code == 0 and key[:12] not in kept.stdout
    dry = pyproj.reprun("env", "prune", "--older-than", "0s", "--dry-run")
    assert f"would remove {key[:12]}" in dry.stdout
    assert pyproj.reprun("env", "list", "--json").json()[0]["key"] == key
    gone = pyproj.reprun("env", "prune", "--older-than", "0s")
    assert f"removed {key[:12]}" in gone.stdout
    assert pyproj.reprun("env", "list", "--json").json() == []
    missing = pyproj.reprun("env", "path", str(record["run_id"]))
    assert "no longer cached" in missing.error_lines[0]
    bad = pyproj.reprun("env", "prune", "--older-than", "soon")
    assert bad.code == 2 and "not a duration" in bad.error_lines[0]


def test_env_refresh_resolves_again(pyproj: PyProject) -> None:
    assert pyproj.run().returncode == 0
    make_wheel(pyproj.wheels, "alpha", "1.5")
    result = pyproj.reprun("env", "refresh", str(pyproj.dir), env=pyproj.offline)
    assert result.code == 0, result.stderr
    key, path = result.stdout.split()
    assert list(Path(path).glob("lib/*/site-packages/alpha-1.5.dist-info"))
    after = pyproj.run()
    assert "alpha 1.5" in after.stdout
    assert _env(pyproj.record())["cache_key"] == key


def test_quiet_silences_progress(pyproj: PyProject) -> None:
    result = pyproj.run("--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_project_without_env_file_gets_an_empty_uv_env(reprun: Reprun,
                                                       make_project: MakeProject) -> None:
    directory = make_project(files={"where.py": "import sys; print(sys.prefix)\n"})
    result = reprun("run", str(directory), "-e", "where.py", "--quiet")
    assert result.code == 0, result.stderr
    env = _env(reprun.last_record())
    assert env["kind"] == "none" and env["manager"] == "uv" and env["packages"] == []
    assert "cache" in result.stdout
    local = reprun("run", str(directory), "-e", "where.py", "--env-manager", "local", "--quiet")
    assert local.code == 0 and "cache" not in local.stdout


def test_dry_run_imports_no_environment_tooling(reprun: Reprun, pyproj: PyProject) -> None:
    python, *rest = reprun.argv("run", str(pyproj.dir), "--dry-run")
    result = subprocess.run([python, "-X", "importtime", *rest], env=reprun.env(),
                            capture_output=True, text=True, check=True)
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()}
    for heavy in ("rich", "virtualenv", "uv", "runner.envs.python.uv"):
        assert heavy not in imported
    assert "python_env" in result.stdout


def test_example_project_runs_offline_from_its_wheels(reprun: Reprun, tmp_path: Path) -> None:
    from conftest import EXAMPLES

    env = {"UV_CACHE_DIR": str(tmp_path / "uv-cache")}
    result = reprun("run", str(EXAMPLES / "python-env"), "-P", "name=Ada", env=env)
    assert result.code == 0, result.stderr
    assert "Hello, Ada! (greeting 1.0" in result.stdout
    record = reprun.last_record()
    assert _env(record)["manager"] == "uv"
    assert {"name": "greeting", "version": "1.0"} in _env(record)["packages"]  # type: ignore[operator]


@pytest.fixture
def http_wheels(pyproj: PyProject) -> Iterator[str]:
    """The test's wheels served over HTTP (a find-links page), as a package index would be."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(pyproj.wheels))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_install_goes_online_when_uv_cache_lacks_the_locked_artifacts(
        pyproj: PyProject, http_wheels: str, tmp_path: Path) -> None:
    env = {"UV_FIND_LINKS": http_wheels, "UV_CACHE_DIR": str(tmp_path / "uv-cache-http")}
    first = pyproj.run(env=env)
    assert first.returncode == 0, first.stderr
    # Same lock, but no environment and an empty uv cache: --offline cannot install it.
    shutil.rmtree(pyproj.cache / "envs")
    shutil.rmtree(tmp_path / "uv-cache-http")
    second = pyproj.run(env=env)
    assert second.returncode == 0, second.stderr
    assert "alpha 1.0 beta 1.0" in second.stdout
    assert not list((pyproj.cache / "logs").glob("*-resolve-*-*.log"))[1:], "resolved twice"
    build_logs = sorted((pyproj.cache / "logs").glob("*-build-*.log"), key=os.path.getmtime)
    # The first build installed offline from what the resolution had just cached; the second
    # tried offline, failed, and installed online.
    assert install_attempts(build_logs[0]) == [(True, 0)]
    assert [(offline, code == 0) for offline, code in install_attempts(build_logs[-1])] == [
        (True, False), (False, True)]


def install_attempts(log: Path) -> list[tuple[bool, int]]:
    """(offline?, exit code) of each ``uv pip install`` in a build log."""
    found = re.findall(r"^\$ (.* pip install .*)$\n(?:.*\n)*?\[exit (\d+)\]", log.read_text(),
                       flags=re.M)
    return [("--offline" in argv, int(code)) for argv, code in found]


def test_a_first_run_resolves_while_the_project_is_validated(pyproj: PyProject) -> None:
    result = pyproj.run()
    assert result.returncode == 0, result.stderr
    assert "alpha 1.0 beta 1.0" in result.stdout
    inputs = list((pyproj.cache / "logs").glob("*-resolve-*.in"))
    assert len(inputs) == 1  # resolved once: the early resolution was the one used
    run_dir = pyproj.reprun.home / "runs" / str(pyproj.record()["run_id"])
    # The resolution's input was written before the run existed, i.e. while planning.
    assert inputs[0].stat().st_mtime_ns <= run_dir.stat().st_mtime_ns


@pytest.fixture
def silent_index() -> Iterator[str]:
    """A package index that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/simple"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def test_an_invalid_project_stops_its_early_resolution(pyproj: PyProject,
                                                      silent_index: str) -> None:
    (pyproj.dir / "MLproject").write_text(MLPROJECT.replace(
        'command: "python show.py"',
        'parameters:\n      n: {type: int, default: ten}\n    command: "python show.py {n}"'))
    env = {"UV_FIND_LINKS": "", "UV_INDEX_URL": silent_index, "UV_HTTP_TIMEOUT": "300"}
    result = pyproj.run(env=env)
    assert result.returncode == 2
    assert "default 'ten' is not a whole number" in result.stderr
    assert list((pyproj.cache / "logs").glob("*-resolve-*.in")), "no early resolution started"
    home = str(pyproj.reprun.home).encode()
    left = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, home)]
    assert not left, "the early resolution outlived reprun"


def _cmdline_has(proc: Path, text: bytes) -> bool:
    try:
        return text in (proc / "cmdline").read_bytes()
    except OSError:
        return False


def test_prune_keeps_an_environment_a_running_reprun_uses(pyproj: PyProject) -> None:
    (pyproj.dir / "MLproject").write_text(MLPROJECT.replace(
        'command: "python show.py"',
        'command: "python show.py && python -c \'import time; time.sleep(120)\'"'))
    proc = subprocess.Popen(pyproj.reprun.argv("run", str(pyproj.dir), "-q"),
                            env=pyproj.reprun.env(pyproj.offline), cwd=pyproj.reprun.cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        assert "alpha 1.0 beta 1.0" in proc.stdout.readline()  # it runs in the environment
        key = pyproj.reprun("env", "list", "--json").json()[0]["key"]
        for args in (("--dry-run",), ()):
            kept = pyproj.reprun("env", "prune", "--older-than", "0s", *args)
            assert kept.code == 0
            assert f"kept {key[:12]}: a running reprun is using or building it" in kept.stdout
        assert (pyproj.cache / "envs" / key / "bin" / "python").exists()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=60)
    gone = pyproj.reprun("env", "prune", "--older-than", "0s")
    assert f"removed {key[:12]}" in gone.stdout
