"""conda.yaml installed from PyPI with --env-manager uv or virtualenv (runner.envs.conda.pypi).

The unit tests take conda match specs apart and check each mapping entry; the CLI tests run
conda projects against a local index of tiny wheels (tests/pywheels.py), offline; one slow test
runs the real example against PyPI.
"""

from __future__ import annotations

import json
import platform
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import EXAMPLES, MakeProject, Reprun, init_repo
from pywheels import make_wheel

from runner.envs.conda.matchspec import parse_match_spec, pypi_specifier
from runner.envs.conda.pypi import (
    CONDA_ONLY,
    CONDA_ONLY_PREFIXES,
    CONDA_ONLY_SUFFIXES,
    PROVIDED,
    PYPI_NAMES,
    convert,
    summary,
    with_conversion,
)
from runner.errors import NotSupportedError, SpecError
from runner.spec.types import CondaEnvFile, Conversion, PythonEnvFile

WINE = {
    "name": "tutorial",
    "channels": ["defaults"],
    "dependencies": ["numpy>=1.14.3", "pandas>=1.0.0", "scikit-learn>0.19.1", "pip",
                     {"pip": ["mlflow"]}],
}
WINE_LINE = "conda.yaml -> PyPI: numpy>=1.14.3, pandas>=1.0.0, scikit-learn>0.19.1, mlflow"


def conversion_of(deps: list[Any], allow_drift: bool = False,
                  manager: str = "uv") -> tuple[PythonEnvFile, Conversion]:
    env_file = CondaEnvFile.from_dump({"dependencies": deps})
    return convert(env_file, Path("/p/conda.yaml"), Path("/p"), manager, allow_drift)


def requirement(spec: str) -> str | None:
    _, conversion = conversion_of([spec])
    (entry,) = conversion.entries
    return entry.pypi


def note(spec: str) -> str | None:
    _, conversion = conversion_of([spec], allow_drift=True)
    (entry,) = conversion.entries
    return entry.note


# --- the file of MLflow's example -----------------------------------------------------------------


def test_mlflow_wine_conda_file_becomes_pypi_requirements() -> None:
    python_env, conversion = convert(CondaEnvFile.from_dump(WINE), Path("/p/conda.yaml"),
                                     Path("/p"), "uv", allow_drift=False)
    assert python_env.python is None
    assert python_env.build_dependencies == []
    assert python_env.dependencies == ["numpy>=1.14.3", "pandas>=1.0.0", "scikit-learn>0.19.1",
                                       "mlflow"]
    assert [(e.conda, e.pypi, e.note) for e in conversion.entries] == [
        ("numpy>=1.14.3", "numpy>=1.14.3", None),
        ("pandas>=1.0.0", "pandas>=1.0.0", None),
        ("scikit-learn>0.19.1", "scikit-learn>0.19.1", None),
        ("pip", None, "left to the environment"),
    ]
    assert summary(conversion) == [WINE_LINE, "  pip: left to the environment"]


# --- names ----------------------------------------------------------------------------------------

RENAMED = [
    ("pytorch>=2.1", "torch>=2.1"),
    ("pytorch-cpu=2.1", "torch==2.1.*"),
    ("pytorch-gpu", "torch"),
    ("py-xgboost=1.7.6", "xgboost==1.7.6.*"),
    ("py-xgboost-cpu", "xgboost"),
    ("py-xgboost-gpu>=2", "xgboost>=2"),
    ("pytables>=3.8", "tables>=3.8"),
    ("py-opencv=4.8", "opencv-python==4.8.*"),
    ("opencv", "opencv-python"),
    ("matplotlib-base>=3.7", "matplotlib>=3.7"),
    ("numpy-base=1.26", "numpy==1.26.*"),
    ("python-graphviz", "graphviz"),
    ("msgpack-python>=1", "msgpack>=1"),
    ("tensorflow-gpu=2.4", "tensorflow==2.4.*"),
    ("pyqt=5.15", "PyQt5==5.15.*"),
    ("python-kaleido", "kaleido"),
    ("dask-core>=2023.1", "dask>=2023.1"),
    ("ray-core=2.9", "ray==2.9.*"),
    ("ray-default", "ray[default]"),
    ("pyg=2.4", "torch-geometric==2.4.*"),
    ("faiss", "faiss-cpu"),
]


@pytest.mark.parametrize(("spec", "expected"), RENAMED)
def test_conda_name_becomes_its_pypi_name(spec: str, expected: str) -> None:
    name = parse_match_spec(spec).name
    assert requirement(spec) == expected
    assert note(spec) == f"PyPI name of {name}"


def test_every_pypi_name_has_its_test() -> None:
    assert {parse_match_spec(spec).name for spec, _ in RENAMED} == set(PYPI_NAMES)


@pytest.mark.parametrize("spec", ["numpy", "scikit-learn", "typing_extensions", "tzdata",
                                  "setuptools", "wheel", "mlflow"])
def test_other_names_are_taken_to_be_on_pypi_as_they_are(spec: str) -> None:
    assert requirement(spec) == spec
    assert note(spec) is None


@pytest.mark.parametrize("name", sorted(PROVIDED))
def test_what_the_environment_provides_is_left_out(name: str) -> None:
    python_env, conversion = conversion_of([f"{name}=1.0", "numpy"])
    assert python_env.dependencies == ["numpy"]
    first = conversion.entries[0]
    assert (first.pypi, first.note) == (None, PROVIDED[name])


@pytest.mark.parametrize("name", sorted(CONDA_ONLY))
def test_conda_only_package_is_refused_or_dropped_with_allow_drift(name: str) -> None:
    with pytest.raises(NotSupportedError) as refused:
        conversion_of(["numpy", f"{name}>=1"])
    assert f"'{name}>=1'" in refused.value.message
    assert f"{name}: {CONDA_ONLY[name]}" in refused.value.message
    python_env, conversion = conversion_of(["numpy", f"{name}>=1"], allow_drift=True)
    assert python_env.dependencies == ["numpy"]
    assert conversion.entries[1].pypi is None
    assert conversion.entries[1].note == (f"not on PyPI ({CONDA_ONLY[name]}): dropped with "
                                          "--allow-drift")


@pytest.mark.parametrize(("name", "why"), [
    ("r-ggplot2", CONDA_ONLY_PREFIXES["r-"]),
    ("__cuda", CONDA_ONLY_PREFIXES["__"]),
    ("gcc_linux-64", CONDA_ONLY_SUFFIXES["_linux-64"]),
    ("sysroot_linux-aarch64", CONDA_ONLY_SUFFIXES["_linux-aarch64"]),
    ("clang_osx-arm64", CONDA_ONLY_SUFFIXES["_osx-arm64"]),
    ("vs2019_win-64", CONDA_ONLY_SUFFIXES["_win-64"]),
])
def test_conda_only_families(name: str, why: str) -> None:
    assert note(name) == f"not on PyPI ({why}): dropped with --allow-drift"


@pytest.mark.parametrize("name", ["cudatoolkit", "mkl", "gcc", "gxx", "libgdal", "hdf5",
                                  "r-base", "ffmpeg", "conda"])
def test_the_usual_conda_only_packages_are_known(name: str) -> None:
    with pytest.raises(NotSupportedError):
        conversion_of([name])


@pytest.mark.parametrize("name", ["pip", "openssl", "python_abi", "libgcc-ng", "_libgcc_mutex",
                                  "ld_impl_linux-64", "ca-certificates", "libstdcxx-ng"])
def test_what_a_conda_env_export_lists_for_python_itself_is_left_out(name: str) -> None:
    assert requirement(name) is None


# --- version specs --------------------------------------------------------------------------------

VERSIONS = [
    ("numpy", "numpy"),
    ("numpy>=1.14.3", "numpy>=1.14.3"),
    ("numpy >=1.14.3", "numpy>=1.14.3"),
    ("numpy>1.0", "numpy>1.0"),
    ("numpy<2", "numpy<2"),
    ("numpy<=1.26", "numpy<=1.26"),
    ("numpy >=1.0,<2", "numpy>=1.0,<2"),
    ("numpy>=1.0, <2", "numpy>=1.0,<2"),
    ("numpy >= 1.0 , < 2", "numpy>=1.0,<2"),
    ("numpy 1.2.*", "numpy==1.2.*"),
    ("numpy 1.2*", "numpy==1.2.*"),
    ("numpy=1.2", "numpy==1.2.*"),
    ("numpy=1.2.*", "numpy==1.2.*"),
    ("numpy =1.2", "numpy==1.2.*"),
    ("numpy==1.2", "numpy==1.2"),
    ("numpy 1.2", "numpy==1.2"),
    ("numpy 1.2.3", "numpy==1.2.3"),
    ("numpy!=1.3", "numpy!=1.3"),
    ("numpy!=1.3.*", "numpy!=1.3.*"),
    ("numpy ~=1.2", "numpy~=1.2"),
    ("numpy>=1.8.*", "numpy>=1.8"),
    ("numpy 1.2,!=1.2.1", "numpy==1.2,!=1.2.1"),
    ("numpy >=1.0,=1.2", "numpy>=1.0,==1.2.*"),
    ("numpy (>=1.0,<2)", "numpy>=1.0,<2"),
    ("numpy *", "numpy"),
    ("numpy>=2.0.0rc1", "numpy>=2.0.0rc1"),
    ("NumPy>=1", "numpy>=1"),
    ("numpy >=1 # for arrays", "numpy>=1"),
    # build strings
    ("numpy 1.2 py38_0", "numpy==1.2"),
    ("numpy=1.2.3=py38h1234_0", "numpy==1.2.3"),
    ("numpy==1.2=py38_0", "numpy==1.2"),
    ("numpy >=1.0,<2.0 py34_0", "numpy>=1.0,<2.0"),
    ("numpy * py38_0", "numpy"),
    ("numpy=1.2=*", "numpy==1.2"),
    # channels
    ("conda-forge::numpy", "numpy"),
    ("conda-forge::numpy>=1.2", "numpy>=1.2"),
    ("conda-forge/linux-64::numpy=1.2", "numpy==1.2.*"),
    ("https://conda.anaconda.org/conda-forge::numpy=1.2", "numpy==1.2.*"),
    # brackets
    ("numpy[version='>=1.2']", "numpy>=1.2"),
    ('numpy[version=">=1.2,<2", build=py38*]', "numpy>=1.2,<2"),
    ("numpy[build_number=3]", "numpy"),
    ("conda-forge::numpy[version='1.2.*']", "numpy==1.2.*"),
    ("numpy >=1[version='<2']", "numpy<2"),
]


@pytest.mark.parametrize(("spec", "expected"), VERSIONS)
def test_version_spec_form(spec: str, expected: str) -> None:
    assert requirement(spec) == expected


@pytest.mark.parametrize(("spec", "expected"), [
    ("numpy", None),
    ("numpy 1.2 py38_0", "build string 'py38_0' ignored"),
    ("numpy=1.2.3=py38h1234_0", "build string 'py38h1234_0' ignored"),
    ("conda-forge::numpy", "channel 'conda-forge' ignored"),
    ("numpy[build_number=3, md5=abc]", "build_number, md5 ignored"),
    ("conda-forge::pytorch 2.1 py3.11_cuda12_0",
     "PyPI name of pytorch; build string 'py3.11_cuda12_0' ignored; channel 'conda-forge' "
     "ignored"),
    ("https://user:secret@conda.example.com/t/tk-123/main::numpy",
     "channel 'https://conda.example.com/t/<TOKEN>/main' ignored"),
])
def test_what_pypi_cannot_use_is_said(spec: str, expected: str | None) -> None:
    assert note(spec) == expected


def test_channel_credentials_never_reach_the_conversion() -> None:
    _, conversion = conversion_of(["https://user:secret@conda.example.com/t/tk-123/main::numpy"])
    assert "secret" not in repr(conversion) and "tk-123" not in repr(conversion)
    assert conversion.entries[0].conda == "https://conda.example.com/t/<TOKEN>/main::numpy"


@pytest.mark.parametrize(("spec", "why"), [
    ("numpy >=1.0|<0.5", "conda's '|' (either/or) has no PyPI form"),
    ("numpy=1.11.1|1.11.3", "conda's '|' (either/or) has no PyPI form"),
    ("libfoo 1.0_3", "version '1.0_3' is not a PyPI (PEP 440) version"),
    ("numpy ~=1", "'~=1': '~=' needs a version with at least two parts"),
    ("numpy 1.2a*", "'1.2a*': only release numbers can be a PyPI prefix (like 1.2.*)"),
    ("numpy 1.2 py38_0 extra", "more than a version and a build string"),
    ("num*", "a name pattern names no one package"),
    ("numpy >=", "'>=' is not a version spec"),
])
def test_spec_without_a_pypi_form_is_refused(spec: str, why: str) -> None:
    with pytest.raises(SpecError) as refused:
        conversion_of([spec])
    assert refused.value.message == (
        f"/p/conda.yaml: dependencies: cannot be installed from PyPI: '{spec}': {why}; write "
        "them as PyPI would, or use --env-manager conda instead of uv")


def test_spec_form_of_a_left_out_package_is_not_translated() -> None:
    # openssl's conda version has no PEP 440 form, but nothing is installed for it
    python_env, _ = conversion_of(["openssl 1.1.1w h7f8727e_0", "numpy"])
    assert python_env.dependencies == ["numpy"]


@pytest.mark.parametrize(("spec", "python"), [
    ("python=3.11", "3.11"),
    ("python==3.11.4", "3.11.4"),
    ("python 3.11.*", "3.11"),
    ("python 3.11", "3.11"),
    ("python=3.11.4=h955ad1f_0_cpython", "3.11.4"),
    ("conda-forge::python=3.10", "3.10"),
    ("python[version='3.12.*']", "3.12"),
    ("python", None),
])
def test_python_sets_the_interpreter(spec: str, python: str | None) -> None:
    python_env, conversion = conversion_of([spec, "numpy"])
    assert python_env.python == python and conversion.python == python
    assert python_env.dependencies == ["numpy"]
    assert conversion.entries[0].pypi is None
    assert conversion.entries[0].note == (f"sets the interpreter {python}" if python else
                                          "no version pinned: the interpreter running reprun")


@pytest.mark.parametrize("spec", ["python>=3.8", "python 3.8|3.9", "python<3.12",
                                  "python >=3.10,<3.12"])
def test_python_range_is_refused(spec: str) -> None:
    with pytest.raises(SpecError) as refused:
        conversion_of([spec])
    assert refused.value.message == (
        f"/p/conda.yaml: dependencies: '{spec}': a python converted for uv or virtualenv must "
        "be pinned with = or == (python=3.11); pin it, or use --env-manager conda")


def test_pypi_specifier_of_any_version_is_empty() -> None:
    assert pypi_specifier(None) == pypi_specifier("*") == pypi_specifier("") == ""


def test_refusal_names_every_conda_only_package_with_its_reason() -> None:
    with pytest.raises(NotSupportedError) as refused:
        conversion_of(["python=3.11", "numpy", "mkl", "cudatoolkit=11.8", "blas=*=mkl", "pip"],
                      manager="virtualenv")
    assert refused.value.render() == (
        "--env-manager virtualenv cannot install the conda package(s) 'mkl', "
        "'cudatoolkit=11.8', 'blas=*=mkl' of /p/conda.yaml: not on PyPI (mkl, blas: PyPI's "
        "numpy and scipy wheels bundle their own BLAS (OpenBLAS); cudatoolkit: PyPI's torch, "
        "tensorflow and jax wheels bring their own CUDA libraries (nvidia-* packages)); use "
        "--env-manager conda, or put a PyPI alternative in the pip: list, or add --allow-drift "
        "to run without them (recorded with the run)")


def test_the_conversion_goes_under_the_lock_header() -> None:
    _, conversion = conversion_of(["pytorch>=2", "pip", {"pip": ["mlflow"]}])
    comment = ("# converted from conda: conda.yaml for uv\n"
               "#   pytorch>=2 -> torch>=2 (PyPI name of pytorch)\n"
               "#   pip: left to the environment\n"
               "#   pip: list: mlflow\n")
    header = "# reprun lock: ...\n# request: abc\n"
    body = "torch==2.1.0 \\\n    --hash=sha256:00\n    # via -r in.txt\n"
    assert with_conversion(header + body, conversion) == header + comment + body
    assert with_conversion(header, conversion) == header + comment


# --- through the command line, against a local index ----------------------------------------------


def offline(tmp_path: Path, wheels: Path) -> dict[str, str]:
    """uv and pip find packages only in ``wheels``: the index is an empty folder."""
    empty = tmp_path / "empty-index"
    empty.mkdir(exist_ok=True)
    return {"UV_INDEX_URL": empty.as_uri(), "UV_FIND_LINKS": str(wheels),
            "UV_CACHE_DIR": str(tmp_path / "uv-cache"), "PIP_NO_INDEX": "1"}


SHOW = "import numpy, pandas, scikit_learn, mlflow; print(numpy.VERSION, pandas.VERSION)"


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    for name, version in [("numpy", "1.26.4"), ("numpy", "1.13.0"), ("pandas", "2.2.0"),
                          ("scikit_learn", "1.4.0"), ("mlflow", "2.10.0"), ("torch", "2.1.0"),
                          ("torch", "1.13.0")]:
        make_wheel(folder, name, version)
    return folder


def wine_project(make_project: MakeProject, conda: dict[str, Any] | None = None,
                 command: str = f"python -c '{SHOW}'") -> Path:
    mlproject = f"name: tutorial\nconda_env: conda.yaml\nentry_points:\n  main:\n" \
                f"    command: {json.dumps(command)}\n"
    path: Path = make_project(mlproject, files={"conda.yaml": yaml.safe_dump(conda or WINE)})
    return path


def error_line(result: Any) -> str:
    assert result.code == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.error_lines
    assert len(lines) == 1, result.stderr
    line: str = lines[0]
    return line


def lock_text(reprun: Reprun, record: dict[str, Any]) -> str:
    return (reprun.home / "runs" / record["run_id"] / "python.lock.txt").read_text()


def test_mlflow_wine_project_runs_with_uv_and_records_the_conversion(
        reprun: Reprun, make_project: MakeProject, wheels: Path, tmp_path: Path) -> None:
    project = wine_project(make_project)
    init_repo(project)
    env = offline(tmp_path, wheels)
    result = reprun("run", str(project), "--env-manager", "uv", env=env)
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "1.26.4 2.2.0"
    said = result.stderr.splitlines()
    assert said[:2] == [f"reprun: {WINE_LINE}", "reprun:   pip: left to the environment"]
    record = reprun.last_record()
    environment = record["environment"]
    assert environment["kind"] == "conda_env" and environment["manager"] == "uv"
    assert environment["converted_from"] == "conda"
    assert environment["conversion"] == [
        {"conda": "numpy>=1.14.3", "pypi": "numpy>=1.14.3", "note": None},
        {"conda": "pandas>=1.0.0", "pypi": "pandas>=1.0.0", "note": None},
        {"conda": "scikit-learn>0.19.1", "pypi": "scikit-learn>0.19.1", "note": None},
        {"conda": "pip", "pypi": None, "note": "left to the environment"},
    ]
    assert {p["name"]: p["version"] for p in environment["packages"]} == {
        "numpy": "1.26.4", "pandas": "2.2.0", "scikit_learn": "1.4.0", "mlflow": "2.10.0"}
    lock = lock_text(reprun, record)
    assert ("# converted from conda: conda.yaml for uv\n"
            "#   numpy>=1.14.3 -> numpy>=1.14.3\n"
            "#   pandas>=1.0.0 -> pandas>=1.0.0\n"
            "#   scikit-learn>0.19.1 -> scikit-learn>0.19.1\n"
            "#   pip: left to the environment\n"
            "#   pip: list: mlflow\n") in lock
    assert 0 < lock.index("# converted from conda") < lock.index("==")  # after the header
    assert "numpy==1.26.4 \\\n    --hash=sha256:" in lock
    shown = reprun("runs", "show", record["run_id"]).stdout
    assert ("converted:   from conda: numpy>=1.14.3, pandas>=1.0.0, scikit-learn>0.19.1; "
            "not installed: pip\n") in shown

    again = reprun("reproduce", record["run_id"], env=env)
    assert again.code == 0, again.stderr
    assert again.stdout.strip() == "1.26.4 2.2.0"
    copy = reprun.last_record()
    assert copy["reproduces"] == record["run_id"]
    assert copy["environment"]["lock_sha256"] == environment["lock_sha256"]
    assert copy["environment"]["cache_key"] == environment["cache_key"]
    assert copy["environment"]["converted_from"] == "conda"
    assert copy["environment"]["conversion"] == environment["conversion"]


def test_virtualenv_installs_the_same_conversion_with_pip(
        reprun: Reprun, make_project: MakeProject, wheels: Path, tmp_path: Path) -> None:
    project = wine_project(make_project)
    result = reprun("run", str(project), "--env-manager", "virtualenv",
                    env=offline(tmp_path, wheels))
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "1.26.4 2.2.0"
    environment = reprun.last_record()["environment"]
    assert environment["manager"] == "virtualenv" and environment["converted_from"] == "conda"
    assert "# converted from conda: conda.yaml for virtualenv\n" in lock_text(
        reprun, reprun.last_record())
    assert "pip" in {p["name"] for p in environment["packages"]}  # virtualenv brings its own


def test_renamed_package_and_version_forms_resolve_from_pypi_names(
        reprun: Reprun, make_project: MakeProject, wheels: Path, tmp_path: Path) -> None:
    conda = {"channels": ["pytorch", "conda-forge"],
             "dependencies": ["pytorch::pytorch=2.1=py3.11_cpu_0", "numpy 1.26.*",
                              "conda-forge::python_abi", "pip"]}
    project = wine_project(make_project, conda,
                           command="python -c 'import torch, numpy; print(torch.VERSION, "
                                   "numpy.VERSION)'")
    result = reprun("run", str(project), "--env-manager", "uv", env=offline(tmp_path, wheels))
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "2.1.0 1.26.4"
    assert result.stderr.splitlines()[:4] == [
        "reprun: conda.yaml -> PyPI: torch==2.1, numpy==1.26.*",
        "reprun:   pytorch::pytorch=2.1=py3.11_cpu_0 -> torch==2.1 (PyPI name of pytorch; "
        "build string 'py3.11_cpu_0' ignored; channel 'pytorch' ignored)",
        "reprun:   conda-forge::python_abi: the interpreter's ABI; set by the interpreter",
        "reprun:   pip: left to the environment",
    ]


def test_dry_run_prints_the_conversion(reprun: Reprun, make_project: MakeProject) -> None:
    conda = {"dependencies": ["python=3.11", "pytorch>=2", "numpy", "pip", {"pip": ["mlflow"]}]}
    project = wine_project(make_project, conda)
    result = reprun("run", str(project), "--env-manager", "uv", "--dry-run")
    assert result.code == 0, result.stderr
    assert ("environment: conda_env via uv\n"
            "  from PyPI:  torch>=2, numpy, mlflow (python 3.11)\n"
            "    python=3.11: sets the interpreter 3.11\n"
            "    pytorch>=2 -> torch>=2 (PyPI name of pytorch)\n"
            "    pip: left to the environment\n") in result.stdout
    assert "reprun: conda.yaml -> PyPI: torch>=2, numpy, mlflow (python 3.11)" in result.stderr
    as_json = reprun("run", str(project), "--env-manager", "uv", "--dry-run", "--json").json()
    environment = as_json["environment"]
    assert environment["converted_from"] == "conda" and environment["python"] == "3.11"
    assert environment["requirements"] == ["torch>=2", "numpy", "mlflow"]
    assert environment["conversion"][1] == {"conda": "pytorch>=2", "pypi": "torch>=2",
                                            "note": "PyPI name of pytorch"}
    assert reprun("runs", "list", "--json").json() == []


CONDA_ONLY_FILE = {"channels": ["conda-forge"],
                   "dependencies": ["numpy>=1.14.3", "mkl", "cudatoolkit=11.8", "pip",
                                    {"pip": ["mlflow"]}]}


@pytest.mark.parametrize("manager", ["uv", "virtualenv"])
def test_conda_only_packages_are_refused_in_one_line(
        reprun: Reprun, make_project: MakeProject, manager: str) -> None:
    project = wine_project(make_project, CONDA_ONLY_FILE)
    line = error_line(reprun("run", str(project), "--env-manager", manager, "--dry-run"))
    assert line == (
        f"reprun: error: --env-manager {manager} cannot install the conda package(s) 'mkl', "
        f"'cudatoolkit=11.8' of {project / 'conda.yaml'}: not on PyPI (mkl: PyPI's numpy and "
        "scipy wheels bundle their own BLAS (OpenBLAS); cudatoolkit: PyPI's torch, tensorflow "
        "and jax wheels bring their own CUDA libraries (nvidia-* packages)); use --env-manager "
        "conda, or put a PyPI alternative in the pip: list, or add --allow-drift to run without "
        "them (recorded with the run)")
    assert reprun("runs", "list", "--json").json() == []


def test_allow_drift_drops_conda_only_packages_and_records_it(
        reprun: Reprun, make_project: MakeProject, wheels: Path, tmp_path: Path) -> None:
    project = wine_project(make_project, CONDA_ONLY_FILE,
                           command="python -c 'import numpy; print(numpy.VERSION)'")
    result = reprun("run", str(project), "--env-manager", "uv", "--allow-drift",
                    env=offline(tmp_path, wheels))
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "1.26.4"
    dropped_mkl = ("mkl: not on PyPI (PyPI's numpy and scipy wheels bundle their own BLAS "
                   "(OpenBLAS)): dropped with --allow-drift")
    assert result.stderr.splitlines()[:2] == [
        "reprun: conda.yaml -> PyPI: numpy>=1.14.3, mlflow", f"reprun:   {dropped_mkl}"]
    record = reprun.last_record()
    conversion = record["environment"]["conversion"]
    assert conversion[1] == {"conda": "mkl", "pypi": None,
                             "note": dropped_mkl.removeprefix("mkl: ")}
    assert conversion[2]["conda"] == "cudatoolkit=11.8" and conversion[2]["pypi"] is None
    assert f"#   {dropped_mkl}\n" in lock_text(reprun, record)
    assert "mkl" not in {p["name"] for p in record["environment"]["packages"]}


def test_allow_drift_is_a_run_option_that_changes_nothing_else(
        reprun: Reprun, make_project: MakeProject, wheels: Path, tmp_path: Path) -> None:
    project = wine_project(make_project)
    env = offline(tmp_path, wheels)
    plain = reprun("run", str(project), "--env-manager", "uv", "-q", env=env)
    drifting = reprun("run", str(project), "--env-manager", "uv", "-q", "--allow-drift", env=env)
    assert plain.code == drifting.code == 0
    records = reprun("runs", "list", "--json").json()
    first, second = (reprun.record(r["run_id"])["environment"] for r in records)
    assert first["lock_sha256"] == second["lock_sha256"]
    assert first["conversion"] == second["conversion"]


def test_specs_without_a_pypi_form_are_refused_in_one_line(
        reprun: Reprun, make_project: MakeProject) -> None:
    conda = {"dependencies": ["numpy >=1.0|<0.5", "pandas", "libfoo 1.0_3"]}
    project = wine_project(make_project, conda)
    line = error_line(reprun("run", str(project), "--env-manager", "uv", "--dry-run"))
    assert line == (
        f"reprun: error: {project / 'conda.yaml'}: dependencies: cannot be installed from "
        "PyPI: 'numpy >=1.0|<0.5': conda's '|' (either/or) has no PyPI form; 'libfoo 1.0_3': "
        "version '1.0_3' is not a PyPI (PEP 440) version; write them as PyPI would, or use "
        "--env-manager conda instead of uv")


def test_unknown_conda_package_missing_from_the_index_names_where_it_came_from(
        reprun: Reprun, make_project: MakeProject, wheels: Path, tmp_path: Path) -> None:
    conda = {"dependencies": ["numpy", "libweird>=2"]}
    project = wine_project(make_project, conda)
    result = reprun("run", str(project), "--env-manager", "uv", env=offline(tmp_path, wheels))
    assert result.code == 1
    lines = result.error_lines
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        "reprun: error: package 'libweird' not found in the package index: it comes from the "
        "conda dependency 'libweird>=2' of conda.yaml, which may exist only on conda; use "
        "--env-manager conda, or put its PyPI name in the pip: list; full log: ")
    record = reprun.last_record()
    assert record["status"] == "FAILED"
    assert record["environment"]["converted_from"] == "conda"  # known before resolving


def test_a_conda_version_pypi_lacks_names_where_it_came_from(
        reprun: Reprun, make_project: MakeProject, wheels: Path, tmp_path: Path) -> None:
    project = wine_project(make_project, {"dependencies": ["conda-forge::numpy=1.99"]})
    result = reprun("run", str(project), "--env-manager", "uv", env=offline(tmp_path, wheels))
    assert result.code == 1
    (line,) = result.error_lines
    assert line.startswith("reprun: error: resolution conflict: Because only numpy<=1.26.4 is "
                           "available and you require numpy==1.99.*, ")
    assert ("it comes from the conda dependency 'conda-forge::numpy=1.99' of conda.yaml (conda "
            "and PyPI do not always publish the same versions); loosen the version in "
            "conda.yaml, or use --env-manager conda; full log: ") in line


def test_conversion_changes_the_request_key_but_not_the_pins(
        reprun: Reprun, make_project: MakeProject, wheels: Path, tmp_path: Path) -> None:
    """Two spellings of one request resolve alike; each lock tells its own conversion."""
    env = offline(tmp_path, wheels)
    first = wine_project(make_project, {"dependencies": ["numpy=1.26"]}, command="true")
    second = make_project(files={"MLproject": (first / "MLproject").read_text(),
                                 "conda.yaml": yaml.safe_dump(
                                     {"dependencies": ["conda-forge::numpy 1.26.*"]})},
                          name="second")
    for project in (first, second):
        assert reprun("run", str(project), "--env-manager", "uv", "-q", env=env).code == 0
    records = [reprun.record(r["run_id"]) for r in reprun("runs", "list", "--json").json()]
    locks = [lock_text(reprun, r) for r in records]
    assert "#   numpy=1.26 -> numpy==1.26.*\n" in locks[1]
    assert ("#   conda-forge::numpy 1.26.* -> numpy==1.26.* (channel 'conda-forge' ignored)\n"
            in locks[0])
    pins = [[ln for ln in lock.splitlines() if not ln.strip().startswith("#")] for lock in locks]
    assert pins[0] == pins[1]


def test_env_refresh_converts_too(reprun: Reprun, make_project: MakeProject, wheels: Path,
                                  tmp_path: Path) -> None:
    project = wine_project(make_project, CONDA_ONLY_FILE)
    env = offline(tmp_path, wheels)
    refused = reprun("env", "refresh", str(project), "--env-manager", "uv", env=env)
    assert "cannot install the conda package(s) 'mkl', 'cudatoolkit=11.8'" in error_line(refused)
    done = reprun("env", "refresh", str(project), "--env-manager", "uv", "--allow-drift",
                  env=env)
    assert done.code == 0, done.stderr
    assert "reprun: conda.yaml -> PyPI: numpy>=1.14.3, mlflow" in done.stderr
    environment = Path(done.stdout.split()[1])
    assert (environment / "bin" / "python").exists()


# --- in Docker ------------------------------------------------------------------------------------


@pytest.mark.docker
def test_conda_project_with_uv_runs_in_docker_from_the_same_lock(
        reprun: Reprun, make_project: MakeProject, wheels: Path, tmp_path: Path,
        base_image: str, image_repo: str) -> None:
    conda = {**WINE, "name": image_repo}
    project = make_project(
        f"name: {image_repo}\nconda_env: conda.yaml\nentry_points:\n  main:\n"
        f"    command: {json.dumps(f'python -c {SHOW!r}')}\n",
        files={"conda.yaml": yaml.safe_dump(conda)}, name=image_repo)
    env = offline(tmp_path, wheels)
    local = reprun("run", str(project), "--env-manager", "uv", "-q", env=env)
    assert local.code == 0, local.stderr
    local_record = reprun.last_record()
    in_docker = reprun("run", str(project), "--env-manager", "uv", "--backend", "docker",
                       "--docker-base-image", base_image, env=env, timeout=600)
    assert in_docker.code == 0, in_docker.stderr
    assert "1.26.4 2.2.0" in in_docker.stdout
    record = reprun.last_record()
    assert record["backend"]["name"] == "docker"
    assert record["environment"]["converted_from"] == "conda"
    # The same pins; the lock is resolved for the image's Python, so it is the same lock only
    # when that is the Python of this machine (tests/test_docker_python.py).
    def pins(environment: dict[str, Any]) -> set[tuple[str, str]]:
        return {(p["name"].lower().replace("_", "-"), p["version"])
                for p in environment["packages"]}

    assert pins(record["environment"]) == pins(local_record["environment"])
    same_python = record["environment"]["python_version"] == platform.python_version()
    same_lock = record["environment"]["lock_sha256"] == local_record["environment"]["lock_sha256"]
    assert same_lock == same_python
    dockerfile = (reprun.home / "runs" / record["run_id"] / "Dockerfile").read_text()
    assert "--require-hashes" in dockerfile and "--no-index --find-links" in dockerfile


# --- the example, against PyPI --------------------------------------------------------------------


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


@pytest.mark.slow
def test_example_installs_the_real_packages_from_pypi(reprun: Reprun, tmp_path: Path) -> None:
    """MLflow's wine example as it is (conda.yaml with `defaults`), its numpy, pandas,
    scikit-learn and mlflow from PyPI; about 15 s with a warm uv cache."""
    if not _pypi_reachable():
        pytest.skip("pypi.org cannot be reached from here")
    project = tmp_path / "conda-wine-uv"
    shutil.copytree(EXAMPLES / "conda-wine-uv", project)
    result = reprun("run", str(project), "--env-manager", "uv", "-P", "alpha=0.3", timeout=900)
    assert result.code == 0, result.stderr
    assert f"reprun: {WINE_LINE}" in result.stderr
    assert "Elasticnet model (alpha=0.300000, l1_ratio=0.100000):" in result.stdout
    record = reprun.last_record()
    environment = record["environment"]
    assert environment["converted_from"] == "conda"
    installed = {p["name"].lower().replace("_", "-") for p in environment["packages"]}
    assert {"numpy", "pandas", "scikit-learn", "mlflow"} <= installed
    outputs = {o["path"] for o in record["outputs"]}
    # Its own files, and the model it logs with mlflow.sklearn.log_model, captured with no
    # tracking server (docs/mlflow.md#without-a-server).
    assert {"metrics.json", "model.json", "mlflow/models/model/MLmodel"} <= outputs
    assert not {o for o in outputs
                if not o.startswith("mlflow/models/model/")} - {"metrics.json", "model.json"}
    metrics = json.loads((Path(record["output_dir"]) / "metrics.json").read_text())
    assert 0.5 < metrics["r2"] < 1.0
