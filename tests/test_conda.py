"""Conda environments: solved and installed by rattler from local file:// channels, no conda."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from condapkgs import PY_MM, standard_channel
from conftest import EXAMPLES, MakeProject, Reprun
from pywheels import make_wheel

COMMAND = "hello-tool && echo prefix=$CONDA_PREFIX"


@pytest.fixture
def channel(tmp_path: Path) -> str:
    """A file:// channel with hello-tool 1.0/2.0, greeting-data, a python shim, condalib."""
    return standard_channel(tmp_path / "channel")


def conda_project(make_project: MakeProject, channels: list[str], deps: list[Any],
                  command: str = COMMAND, extra: str = "") -> Path:
    conda = {"name": "ignored", "channels": channels, "dependencies": deps}
    mlproject = f"name: cproj\nconda_env: conda.yaml\nentry_points:\n  main:\n" \
                f"    command: {command!r}\n"
    path: Path = make_project(mlproject, files={"conda.yaml": yaml.safe_dump(conda) + extra})
    return path


def env_of(record: dict[str, Any]) -> dict[str, Any]:
    environment: dict[str, Any] = record["environment"]
    return environment


def lock_of(reprun: Reprun, record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    path = reprun.home / "runs" / record["run_id"] / "conda-lock.yml"
    text = path.read_text()
    data: dict[str, Any] = yaml.safe_load(text)
    return text, data


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_solve_install_run_and_lock(reprun: Reprun, make_project: MakeProject,
                                    channel: str) -> None:
    project = conda_project(make_project, [channel], ["hello-tool >=1", "condalib"],
                            command="hello-tool && condalib-cli && echo prefix=$CONDA_PREFIX")
    result = reprun("run", str(project))
    assert result.code == 0, result.stderr
    assert "hello-tool 2.0 (prefix " in result.stdout  # the newest that fits, placeholder patched
    assert f"condalib 1.0 on python {sys.version.split()[0]}" in result.stdout  # noarch: python
    record = reprun.last_record()
    env = env_of(record)
    assert env["manager"] == "conda" and env["kind"] == "conda_env"
    prefix = env["conda"]["prefix"]
    assert f"prefix {prefix})" in result.stdout and f"prefix={prefix}" in result.stdout
    assert env["conda"]["channels"] == [channel + "/"]
    assert env["conda"]["solver"].startswith("rattler ")
    assert env["conda"]["platform"] and any(
        v.startswith("__unix") for v in env["conda"]["virtual_packages"])
    assert env["python_version"] == sys.version.split()[0]
    names = {p["name"]: p["version"] for p in env["packages"]}
    assert names["hello-tool"] == "2.0" and names["greeting-data"] == "1.0"
    text, lock = lock_of(reprun, record)
    assert env["lock_file"] == "conda-lock.yml"
    assert env["lock_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert lock["version"] == 1 and lock["metadata"]["platforms"] == [env["conda"]["platform"]]
    channel_dir = Path(channel.removeprefix("file://"))
    for package in lock["package"]:
        assert package["manager"] == "conda"
        assert package["url"].startswith(channel + "/")
        archive = channel_dir / package["url"][len(channel) + 1:]
        assert package["hash"]["sha256"] == sha256(archive)
        assert package["hash"]["md5"] == hashlib.md5(archive.read_bytes()).hexdigest()
    assert {p["name"] for p in lock["package"]} == {"hello-tool", "greeting-data", "condalib",
                                                    "python"}


def test_lock_parses_with_conda_lock(reprun: Reprun, make_project: MakeProject,
                                     channel: str, tmp_path: Path) -> None:
    project = conda_project(make_project, [channel], ["hello-tool"])
    assert reprun("run", str(project)).code == 0
    record = reprun.last_record()
    from conda_lock.lockfile import parse_conda_lock_file

    parsed = parse_conda_lock_file(reprun.home / "runs" / record["run_id"] / "conda-lock.yml")
    assert {p.name for p in parsed.package} == {"hello-tool", "greeting-data"}
    assert all(p.hash.sha256 and p.hash.md5 for p in parsed.package)


def test_second_run_reuses_lock_and_prefix(reprun: Reprun, make_project: MakeProject,
                                           channel: str) -> None:
    project = conda_project(make_project, [channel], ["hello-tool"])
    first = reprun("run", str(project))
    assert first.code == 0 and "solving" in first.stderr and "installing" in first.stderr
    key = env_of(reprun.last_record())["cache_key"]
    # The channel's index is gone: a second run must neither solve nor download.
    for repodata in Path(channel.removeprefix("file://")).rglob("repodata.json"):
        repodata.unlink()
    second = reprun("run", str(project), env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert second.code == 0, second.stderr
    assert "solving" not in second.stderr and "installing" not in second.stderr
    assert "import time:" in second.stderr
    assert "rattler" not in second.stderr and "conda_lock" not in second.stderr
    assert env_of(reprun.last_record())["cache_key"] == key


def test_recreate_from_lock_with_empty_cache_without_solving(
        reprun: Reprun, make_project: MakeProject, channel: str, tmp_path: Path) -> None:
    project = conda_project(make_project, [channel], ["hello-tool"])
    assert reprun("run", str(project)).code == 0
    record = reprun.last_record()
    shutil.copy(reprun.home / "runs" / record["run_id"] / "conda-lock.yml", project)
    for repodata in Path(channel.removeprefix("file://")).rglob("repodata.json"):
        repodata.unlink()  # any solve would fail now
    fresh = Reprun(tmp_path / "other-home", reprun.cwd)  # empty package cache, no prefix
    result = fresh("run", str(project))
    assert result.code == 0, result.stderr
    assert "installing from the project's conda-lock.yml" in result.stderr
    assert "solving" not in result.stderr
    assert "hello-tool 2.0" in result.stdout
    assert env_of(fresh.last_record())["lock_sha256"] == env_of(record)["lock_sha256"]
    assert (tmp_path / "other-home" / "cache" / "conda" / "pkgs").is_dir()


def test_pruned_prefix_is_reinstalled_from_the_cached_lock(
        reprun: Reprun, make_project: MakeProject, channel: str) -> None:
    project = conda_project(make_project, [channel], ["hello-tool"])
    assert reprun("run", str(project)).code == 0
    conda_cache = reprun.home / "cache" / "conda"
    for name in ("envs", "builds", "pkgs"):
        shutil.rmtree(conda_cache / name)
    for repodata in Path(channel.removeprefix("file://")).rglob("repodata.json"):
        repodata.unlink()
    result = reprun("run", str(project))
    assert result.code == 0, result.stderr
    assert "solving" not in result.stderr and "installing" in result.stderr


def test_corrupt_prefix_is_rebuilt(reprun: Reprun, make_project: MakeProject,
                                   channel: str) -> None:
    project = conda_project(make_project, [channel], ["hello-tool"])
    assert reprun("run", str(project)).code == 0
    prefix = Path(env_of(reprun.last_record())["conda"]["prefix"])
    for meta in (prefix / "conda-meta").glob("hello-tool-*.json"):
        meta.unlink()
    result = reprun("run", str(project))
    assert result.code == 0, result.stderr
    assert "installing" in result.stderr and "hello-tool 2.0" in result.stdout


def test_concurrent_runs_build_once(reprun: Reprun, make_project: MakeProject,
                                    channel: str) -> None:
    project = conda_project(make_project, [channel], ["hello-tool"])
    procs = [reprun.popen("run", str(project)) for _ in range(3)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    stderr = "".join(err for _out, err in outputs)
    assert stderr.count("solving 1 conda spec(s) with rattler: ") == 1
    assert stderr.count("pip package(s) installed") == 1
    builds = list((reprun.home / "cache" / "conda" / "builds").iterdir())
    assert len(builds) == 1
    keys = {env_of(reprun.record(r["run_id"]))["cache_key"]
            for r in reprun("runs", "list", "--json").json()}
    assert len(keys) == 1


def test_pip_section_is_locked_with_hashes_and_installed(
        reprun: Reprun, make_project: MakeProject, channel: str, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    dep = make_wheel(wheels, "pipdep", "1.0")
    top = make_wheel(wheels, "piptop", "2.0", ["pipdep>=1"])
    command = "python -c 'import piptop, pipdep, sys; print(piptop.VERSION, sys.prefix)'"
    project = conda_project(make_project, [channel], [
        "python", {"pip": ["piptop", "--no-index", f"--find-links {wheels}"]}], command=command)
    result = reprun("run", str(project))
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("2.0")
    record = reprun.last_record()
    prefix = Path(env_of(record)["conda"]["prefix"])
    assert (prefix / "lib" / f"python{PY_MM}" / "site-packages" / "piptop").is_dir()
    _text, lock = lock_of(reprun, record)
    pip = {p["name"]: p for p in lock["package"] if p["manager"] == "pip"}
    assert set(pip) == {"piptop", "pipdep"}
    assert pip["piptop"]["hash"]["sha256"] == sha256(top)
    assert pip["pipdep"]["hash"]["sha256"] == sha256(dep)
    assert pip["pipdep"]["url"].endswith("pipdep-1.0-py3-none-any.whl")
    names = {p["name"] for p in env_of(record)["packages"]}
    assert {"piptop", "pipdep", "python"} <= names


def test_conda_channel_option_overrides_the_file(reprun: Reprun, make_project: MakeProject,
                                                 channel: str, tmp_path: Path) -> None:
    missing = (tmp_path / "nowhere").as_uri()
    project = conda_project(make_project, [missing], ["hello-tool"])
    result = reprun("run", str(project), "--conda-channel", channel)
    assert result.code == 0, result.stderr
    assert env_of(reprun.last_record())["conda"]["channels"] == [channel + "/"]


def test_channel_credentials_are_not_recorded(reprun: Reprun, make_project: MakeProject) -> None:
    project = conda_project(make_project, ["https://user:s3cret@127.0.0.1:9/t/tok123/chan"],
                            ["hello-tool"])
    result = reprun("run", str(project), timeout=300)
    assert result.code == 1
    assert "s3cret" not in result.stderr and "tok123" not in result.stderr
    assert "s3cret" not in (reprun.home / "runs").joinpath(
        reprun.last_record()["run_id"], "run.json").read_text()


# --- one-line errors ------------------------------------------------------------------------


def one_error(reprun: Reprun, project: Path, *args: str) -> str:
    result = reprun("run", str(project), *args, timeout=300)
    assert result.code != 0
    lines = result.error_lines
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_unsatisfiable_spec_gives_the_solver_reason(reprun: Reprun, make_project: MakeProject,
                                                    channel: str) -> None:
    project = conda_project(make_project, [channel], ["needs-missing"])
    line = one_error(reprun, project)
    assert "the conda dependencies cannot be solved" in line
    assert "greeting-data >=5, for which no candidates were found" in line


def test_no_matching_version(reprun: Reprun, make_project: MakeProject, channel: str) -> None:
    project = conda_project(make_project, [channel], ["hello-tool >=9"])
    line = one_error(reprun, project)
    assert "no version of conda package 'hello-tool' matches 'hello-tool >=9'" in line
    assert "available: 1.0, 2.0" in line


def test_unknown_package(reprun: Reprun, make_project: MakeProject, channel: str) -> None:
    project = conda_project(make_project, [channel], ["no-such-package"])
    line = one_error(reprun, project)
    assert f"conda package 'no-such-package' was not found in the channel(s) {channel}/" in line


@pytest.mark.parametrize("where", ["file", "http"])
def test_unreachable_channel(reprun: Reprun, make_project: MakeProject, tmp_path: Path,
                             where: str) -> None:
    url = (tmp_path / "gone").as_uri() if where == "file" else "http://127.0.0.1:9/chan"
    project = conda_project(make_project, [url], ["hello-tool"])
    line = one_error(reprun, project)
    assert f"conda channel {url}/ is unreachable" in line
    assert "--conda-channel" in line
    assert "--env-manager uv" in line  # a conda project from PyPI, which works offline


def test_invalid_match_spec(reprun: Reprun, make_project: MakeProject, channel: str) -> None:
    project = conda_project(make_project, [channel], ["hello-tool >>=1"])
    line = one_error(reprun, project)
    assert "conda.yaml: dependencies: 'hello-tool >>=1' is not a valid conda match spec" in line


@pytest.mark.parametrize(("text", "expected"), [
    ("dependencies: numpy\n", "conda.yaml:1: dependencies: Input should be a valid list"),
    ("dependencies:\n  - pip: requests\n",
     "conda.yaml:2: dependencies[0].pip: must be a list of pip requirements"),
    ("dependencies:\n  - conda: [x]\n",
     "conda.yaml:2: dependencies[0]: a mapping here may only hold 'pip', not conda"),
    ("channels: conda-forge\n", "conda.yaml:1: channels: Input should be a valid list"),
    ("dependencies: [\n", "conda.yaml:2: YAML syntax error"),
    ("- numpy\n", "conda.yaml:1: must be a mapping of keys, not a list"),
])
def test_malformed_conda_yaml(reprun: Reprun, make_project: MakeProject, text: str,
                              expected: str) -> None:
    project = make_project("conda_env: conda.yaml\nentry_points:\n  main:\n    command: x\n",
                           files={"conda.yaml": text})
    line = one_error(reprun, project, "--dry-run")
    assert expected in line


def test_pip_list_without_python(reprun: Reprun, make_project: MakeProject, channel: str) -> None:
    project = conda_project(make_project, [channel], ["hello-tool", {"pip": ["x==1"]}])
    line = one_error(reprun, project)
    assert "conda.yaml: dependencies: a pip: list needs python among the conda dependencies" in line


# --- other managers ---------------------------------------------------------------------------


def test_uv_refuses_conda_only_packages(reprun: Reprun, make_project: MakeProject) -> None:
    """numpy is on PyPI and carries over (tests/test_conda_pypi.py); libgdal is not."""
    project = conda_project(make_project, ["conda-forge"],
                            ["python=3.11", "numpy >=1.26", "pip", "libgdal",
                             {"pip": ["requests"]}])
    line = one_error(reprun, project, "--env-manager", "uv", "--dry-run")
    assert "--env-manager uv cannot install the conda package(s) 'libgdal' of " in line
    assert "use --env-manager conda" in line


def test_uv_builds_the_python_part_of_a_conda_project(
        reprun: Reprun, make_project: MakeProject, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "pipdep", "1.0")
    project = conda_project(
        make_project, ["conda-forge"],
        [f"python={PY_MM}", {"pip": ["pipdep", "--no-index", f"--find-links {wheels}"]}],
        command="python -c 'import pipdep; print(pipdep.VERSION)'")
    result = reprun("run", str(project), "--env-manager", "uv")
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "1.0"
    env = env_of(reprun.last_record())
    assert env["manager"] == "uv" and env["lock_file"] == "python.lock.txt"
    assert env["python_version"].startswith(PY_MM)


def test_python_must_be_pinned_for_uv(reprun: Reprun, make_project: MakeProject) -> None:
    project = conda_project(make_project, [], ["python>=3.8"])
    line = one_error(reprun, project, "--env-manager", "virtualenv", "--dry-run")
    assert "'python>=3.8': a python converted for uv or virtualenv must be pinned" in line


def test_dry_run_and_help_import_neither_rattler_nor_conda_lock(
        make_project: MakeProject) -> None:
    project = conda_project(make_project, ["conda-forge"], ["python=3.11"])
    for args in (["run", str(project), "--dry-run"], ["--help"], ["run", "--help"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "runner", *args],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        assert "conda_env via conda" in proc.stdout or "--help" in args
        imported = {line.rsplit("|", 1)[1].strip().split(".")[0]
                    for line in proc.stderr.splitlines()
                    if line.startswith("import time:") and "|" in line}
        assert "runner" in imported
        assert not imported & {"rattler", "conda_lock"}


def test_conda_example_is_valid() -> None:
    from runner.spec.project import load_project

    project = load_project(EXAMPLES / "conda-env", strict=True)
    assert project.env.kind == "conda_env" and project.env.conda_env is not None


def test_conda_example_runs_from_its_local_channel(reprun: Reprun, tmp_path: Path) -> None:
    script = EXAMPLES / "conda-env" / "make_local_channel.py"
    made = subprocess.run([sys.executable, str(script), str(tmp_path / "channel")],
                          capture_output=True, text=True, check=True)
    url = made.stdout.strip()
    assert url == (tmp_path / "channel").as_uri()
    result = reprun("run", str(EXAMPLES / "conda-env"), "--conda-channel", url, "-P", "name=t")
    assert result.code == 0, result.stderr
    assert f"hello, t, from python {sys.version.split()[0]}" in result.stdout
    prefix = env_of(reprun.last_record())["conda"]["prefix"]
    assert f"conda prefix: {prefix}" in result.stdout


def test_env_commands_know_conda_prefixes(reprun: Reprun, make_project: MakeProject,
                                          channel: str) -> None:
    project = conda_project(make_project, [channel], ["hello-tool"])
    assert reprun("run", str(project)).code == 0
    record = reprun.last_record()
    listed = reprun("env", "list", "--json").json()
    assert [(e["manager"], e["ok"]) for e in listed] == [("conda", True)]
    path = reprun("env", "path", record["run_id"])
    assert path.code == 0, path.stderr
    assert path.stdout.strip() == env_of(record)["conda"]["prefix"]
    refreshed = reprun("env", "refresh", str(project))
    assert refreshed.code == 0, refreshed.stderr
    assert "solving 1 conda spec(s)" in refreshed.stderr
    assert refreshed.stdout.split()[0] == env_of(record)["cache_key"]  # same lock, same prefix
