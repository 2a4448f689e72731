"""Validated project files are cached by their bytes; a cached run imports no pydantic or YAML."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import MakeProject, Reprun

from runner.errors import SpecError
from runner.record.types import RunRecord
from runner.spec import models as spec_models
from runner.spec import types as spec_types
from runner.spec.project import load_project

PAIRS = ["ParameterSpec", "MetricsSpec", "EntryPoint", "DockerEnv", "MLProject", "PythonEnvFile",
         "PipSection", "CondaEnvFile", "Pipeline", "PipelineStep"]
MLPROJECT = """\
name: cached
python_env: python_env.yaml
entry_points:
  main:
    parameters:
      alpha: {type: float, default: 0.00001}
      kind: {type: choice, choices: [a, b], default: a}
    command: "python -c 'print(1)' {alpha} {kind}"
"""


@pytest.mark.parametrize("name", PAIRS)
def test_runtime_types_have_the_fields_of_the_models(name: str) -> None:
    model = getattr(spec_models, name)
    runtime = getattr(spec_types, name)
    assert {f.name for f in dataclasses.fields(runtime)} == set(model.model_fields)


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.json"))


def test_loading_twice_gives_the_same_project_from_the_cache(make_project: MakeProject,
                                                            tmp_path: Path) -> None:
    project = make_project(MLPROJECT, files={"python_env.yaml": "dependencies: [six]\n"})
    cache = tmp_path / "cache"
    first = load_project(project, cache_dir=cache)
    assert len(entries(cache)) == 2  # the MLproject and python_env.yaml
    assert load_project(project, cache_dir=cache) == first == load_project(project)
    assert first.spec.entry_points["main"].parameters["alpha"].default == "1e-05"
    assert first.env.python_env == spec_types.PythonEnvFile(dependencies=["six"])

    # Proof that the second load reads the cache: an entry edited by hand is what comes back.
    for entry in entries(cache):
        data = json.loads(entry.read_text())
        if data["dump"].get("name") == "cached":
            entry.write_text(json.dumps({**data, "dump": {**data["dump"], "name": "edited"}}))
    assert load_project(project, cache_dir=cache).name == "edited"


def test_a_changed_file_is_validated_again(make_project: MakeProject, tmp_path: Path) -> None:
    project = make_project(MLPROJECT, files={"python_env.yaml": "dependencies: []\n"})
    cache = tmp_path / "cache"
    load_project(project, cache_dir=cache)
    (project / "MLproject").write_text(MLPROJECT.replace("default: 0.00001", "default: abc"))
    with pytest.raises(SpecError) as caught:
        load_project(project, cache_dir=cache)
    assert "entry_points.main.parameters.alpha: default 'abc' is not a number" in str(caught.value)


@pytest.mark.parametrize("garbage", ["{not json", '{"dump": 3, "warnings": []}',
                                     '{"dump": {"entry_points": 5}, "warnings": []}'])
def test_a_damaged_entry_is_validated_again_and_rewritten(make_project: MakeProject,
                                                          tmp_path: Path, garbage: str) -> None:
    project = make_project(MLPROJECT, files={"python_env.yaml": "dependencies: []\n"})
    cache = tmp_path / "cache"
    expected = load_project(project, cache_dir=cache)
    for entry in entries(cache):
        entry.write_text(garbage)
    assert load_project(project, cache_dir=cache) == expected
    for entry in entries(cache):
        assert isinstance(json.loads(entry.read_text())["dump"], dict)


def test_cached_warnings_are_given_again_and_strict_refuses_them(make_project: MakeProject,
                                                                 tmp_path: Path) -> None:
    project = make_project("nmae: x\nentry_points:\n  main:\n    command: 'true'\n")
    cache = tmp_path / "cache"
    first = [w.render() for w in load_project(project, cache_dir=cache).warnings]
    assert len(first) == 1 and "did you mean 'name'?" in first[0]
    assert [w.render() for w in load_project(project, cache_dir=cache).warnings] == first
    with pytest.raises(SpecError, match="--strict makes this an error"):
        load_project(project, strict=True, cache_dir=cache)


@pytest.mark.parametrize("with_mlproject", [True, False])
def test_a_cached_run_imports_nothing_heavy(reprun: Reprun, make_project: MakeProject,
                                             with_mlproject: bool) -> None:
    files = {"python_env.yaml": "dependencies: []\n", "main.py": "print('ran')\n"}
    project = make_project(MLPROJECT if with_mlproject else None, files=files)
    entry = [] if with_mlproject else ["-e", "main.py"]
    first = reprun("run", str(project), *entry, *(["-P", "kind=b"] if with_mlproject else []), "-q")
    assert first.code == 0, first.stderr
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "runner", "run", str(project), *entry, "-q"],
        env=reprun.env(), cwd=reprun.cwd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    modules = {line.rsplit("|", 1)[1].strip()
               for line in proc.stderr.splitlines() if line.startswith("import time:")}
    imported = {name.split(".")[0] for name in modules}
    assert "runner" in imported
    # nothing heavy: no validation, no backend library, no hashing of inputs (none declared),
    # no HTTP (no tracking server), no terminal toolkit
    heavy = {"pydantic", "pydantic_core", "yaml", "docker", "kubernetes", "rattler", "rich",
             "blake3", "requests", "urllib3", "optuna", "click_default_group", "mlflow"}
    assert not imported & heavy, imported & heavy
    assert not modules & {"urllib.request", "http.client", "ssl", "asyncio", "email.parser",
                          "runner.tracking.digest", "runner.envs.pyfacts"}, modules
    record = reprun.last_record()
    if with_mlproject:
        assert record["parameters"] == {"alpha": "1e-05", "kind": "a"}
    RunRecord.model_validate(record)  # what the fast path wrote is a valid record


def test_env_prune_removes_validated_files_not_used_for_long(reprun: Reprun,
                                                             make_project: MakeProject) -> None:
    project = make_project(MLPROJECT, files={"python_env.yaml": "dependencies: []\n"})
    assert reprun("run", str(project), "-q").code == 0
    cache = reprun.home / "cache" / "spec"
    assert len(entries(cache)) == 2
    old = time.time() - 40 * 86400
    for entry in entries(cache):
        os.utime(entry, (old, old))
    assert reprun("run", str(project), "-q").code == 0  # a cache hit marks them used now
    assert "validated" not in reprun("env", "prune", "--older-than", "30d").stdout
    for entry in entries(cache):
        os.utime(entry, (old, old))
    dry = reprun("env", "prune", "--older-than", "30d", "--dry-run")
    assert "would remove 2 validated project file(s) not used for 30d" in dry.stdout
    assert len(entries(cache)) == 2
    gone = reprun("env", "prune", "--older-than", "30d")
    assert "removed 2 validated project file(s) not used for 30d" in gone.stdout
    assert entries(cache) == []
