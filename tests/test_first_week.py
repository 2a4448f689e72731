"""Issue 26: what a new user trips over in the first week; one test (or a few) per item."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MakeProject, Reprun

PROJECT = """
name: demo
entry_points:
  main:
    parameters:
      alpha: {type: float, default: 0.5}
      l1_ratio: {type: float, default: 0.1}
    command: "echo alpha={alpha} l1={l1_ratio}"
"""


def one_error(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("reprun: error:")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return errors[0]


def no_runs(reprun: Reprun) -> None:
    listed = reprun("runs", "list", "--json")
    assert listed.code == 0, listed.stderr
    assert listed.json() == []


@pytest.fixture
def demo(make_project: MakeProject) -> Path:
    return make_project(PROJECT)


# 1. undeclared parameter names

def test_distance_counts_a_transposition_as_one_edit() -> None:
    from runner.spec.names import distance, nearest

    assert distance("alpah", "alpha") == 1
    assert distance("alpha", "alpha") == 0
    assert distance("l1ratio", "l1_ratio") == 1
    assert distance("beta", "alpha") > 2
    assert nearest("alpah", ["l1_ratio", "alpha"]) == ["alpha"]
    assert nearest("zzz", ["l1_ratio", "alpha"]) == []


def test_a_misspelled_parameter_is_refused(reprun: Reprun, demo: Path) -> None:
    result = reprun("run", str(demo), "-P", "alpah=0.3")
    assert result.code == 2, result.stderr
    assert "did you mean 'alpha'?" in one_error(result.stderr)
    no_runs(reprun)


def test_strict_refuses_every_undeclared_name(reprun: Reprun, demo: Path) -> None:
    result = reprun("run", str(demo), "--strict", "-P", "verbose=1")
    assert result.code == 2, result.stderr
    assert "'verbose'" in one_error(result.stderr)
    no_runs(reprun)


def test_other_undeclared_names_pass_on_with_one_notice(reprun: Reprun, demo: Path) -> None:
    result = reprun("run", str(demo), "-P", "verbose=1")
    assert result.code == 0, result.stderr
    assert "alpha=0.5 l1=0.1 --verbose 1" in result.stdout
    notices = [line for line in result.stderr.splitlines() if "verbose" in line]
    assert len(notices) == 1, result.stderr
    assert "not declared" in notices[0]


@pytest.mark.parametrize("name", ["alpah", "verbose"])
def test_a_sweep_refuses_undeclared_names(reprun: Reprun, demo: Path, name: str) -> None:
    result = reprun("sweep", str(demo), "-P", f"{name}=0.1,0.3")
    assert result.code == 2, result.stderr
    assert f"'{name}'" in one_error(result.stderr)
    no_runs(reprun)
