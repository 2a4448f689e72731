"""Generated schemas stay in step with the models; the CLI starts fast and validates projects."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import EXAMPLES, ROOT, MakeProject, Reprun

from runner.schemas import SCHEMAS, render
from runner.spec.project import load_project

HEAVY = ("docker", "kubernetes", "rattler", "git", "pydantic", "yaml")


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_committed_schemas_match_the_models(kind: str) -> None:
    _model, filename = SCHEMAS[kind]
    committed = (ROOT / "schemas" / filename).read_text()
    assert committed == render(kind), (
        f"schemas/{filename} is stale: run 'python -m runner.schemas schemas/'"
    )


def test_schema_command_prints_the_mlproject_schema(reprun: Reprun) -> None:
    result = reprun("schema")
    assert result.code == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "MLproject"
    assert {"entry_points", "python_env", "conda_env", "docker_env"} <= set(schema["properties"])


def imported_modules(*args: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "runner", *args],
                          capture_output=True, text=True, check=False)
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def test_help_imports_nothing_heavy() -> None:
    modules = imported_modules("--help")
    assert not modules & set(HEAVY), modules & set(HEAVY)


def test_dry_run_imports_no_backend_library() -> None:
    modules = imported_modules("run", str(EXAMPLES / "hello"), "--dry-run")
    assert "runner" in modules
    assert not modules & {"docker", "kubernetes", "rattler", "git"}


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()))
def test_example_projects_are_valid(example: str) -> None:
    project = load_project(EXAMPLES / example, strict=True)
    assert project.spec_file is not None or example == "no-mlproject"


def test_validate_prints_every_problem(reprun: Reprun, make_project: MakeProject) -> None:
    project = make_project("""
        entry_points:
          main:
            paramters: {a: float}
            command: "echo {b}"
    """)
    result = reprun("validate", str(project))
    assert result.code == 2
    lines = result.stdout.splitlines()
    assert any(line.startswith("error:") and "{b}" in line for line in lines)
    ok = reprun("validate", str(EXAMPLES / "hello"))
    assert ok.code == 0 and ok.stdout.startswith("ok: hello")
    warned = make_project("nmae: x\nentry_points:\n  main:\n    command: 'true'\n", name="w")
    result = reprun("validate", str(warned))
    assert result.code == 0 and "did you mean 'name'?" in result.stdout
    assert reprun("validate", "--strict", str(warned)).code == 2


def test_runs_list_reads_the_index_without_the_record_models(reprun: Reprun,
                                                              make_project: MakeProject) -> None:
    project = make_project("entry_points:\n  main:\n    command: 'true'\n")
    assert reprun("run", str(project), "-q").code == 0
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "runner", "runs", "list"],
                          env=reprun.env(), capture_output=True, text=True, check=True)
    assert "proj / main" in proc.stdout
    assert "pydantic" not in proc.stderr
