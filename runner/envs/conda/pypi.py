"""A conda.yaml installed from PyPI (``--env-manager uv`` or ``virtualenv``): the one mapping table.

Each conda dependency becomes a PyPI requirement: the same name, or the PyPI name in
:data:`PYPI_NAMES`; its version spec translated to PEP 440 (`runner.envs.conda.matchspec`); build
strings, channels and other match-spec keys ignored, and said so. ``python`` picks the interpreter.
What a virtual environment gets from its interpreter or the system (:data:`PROVIDED`: pip, the
libraries of conda's own python) is left out, and said so. What exists only on conda
(:data:`CONDA_ONLY`, :data:`CONDA_ONLY_PREFIXES`, :data:`CONDA_ONLY_SUFFIXES`: compilers, CUDA,
BLAS, system libraries, R) is refused in one line, or dropped and recorded with
``--allow-drift``. Any other name is assumed to be on PyPI under the same name: the resolver then
says which package it cannot find (:func:`explain_not_found` adds where it came from), which works
the same against PyPI, a mirror or a local index.

MLflow converts only python, pip, setuptools and wheel and drops every other conda package with a
warning.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from runner.envs.conda.matchspec import (
    MatchSpec,
    Untranslatable,
    parse_match_spec,
    pypi_specifier,
)
from runner.envs.conda.request import redact_channel
from runner.errors import EnvBuildError, NotSupportedError, Problem, SpecError
from runner.frozen import frozen
from runner.spec.project import EnvRequest
from runner.spec.types import CondaEnvFile, Conversion, ConvertedDependency, PythonEnvFile

# Conda packages whose PyPI distribution has another name.
PYPI_NAMES: dict[str, str] = {
    "pytorch": "torch",
    "pytorch-cpu": "torch",
    "pytorch-gpu": "torch",
    "py-xgboost": "xgboost",
    "py-xgboost-cpu": "xgboost",
    "py-xgboost-gpu": "xgboost",
    "pytables": "tables",
    "py-opencv": "opencv-python",
    "opencv": "opencv-python",
    "matplotlib-base": "matplotlib",
    "numpy-base": "numpy",
    "python-graphviz": "graphviz",
    "msgpack-python": "msgpack",
    "tensorflow-gpu": "tensorflow",  # PyPI's tensorflow has had GPU support since 2.1
    "pyqt": "PyQt5",  # conda-forge's pyqt is Qt 5
    "python-kaleido": "kaleido",
    "dask-core": "dask",
    "ray-core": "ray",
    "ray-default": "ray[default]",
    "pyg": "torch-geometric",
    "faiss": "faiss-cpu",
}

# Conda packages a virtual environment already has from its interpreter, the system or pip's
# own wheels: nothing is installed for them.
_PIP = "left to the environment"
_PYTHON_LIB = "a library of conda's python; the interpreter brings its own"
_RUNTIME = "C/C++/Fortran runtime; PyPI wheels bundle theirs or use the system's"
_SELECTOR = "conda variant selector; no meaning on PyPI"
PROVIDED: dict[str, str] = {
    "pip": _PIP,
    "python_abi": "the interpreter's ABI; set by the interpreter",
    **dict.fromkeys((
        "bzip2", "ca-certificates", "expat", "ld_impl_linux-64", "ld_impl_linux-aarch64",
        "libexpat", "libffi", "liblzma", "libmpdec", "libnsl", "libsqlite", "libuuid",
        "libxcrypt", "libzlib", "ncurses", "openssl", "readline", "sqlite", "tk", "xz", "zlib",
    ), _PYTHON_LIB),
    **dict.fromkeys((
        "libgcc", "libgcc-ng", "libgomp", "libstdcxx", "libstdcxx-ng", "libgfortran",
        "libgfortran-ng", "libgfortran5", "libcxx", "llvm-openmp", "ucrt", "vc", "vc14_runtime",
        "vs2015_runtime",
    ), _RUNTIME),
    **dict.fromkeys(("_libgcc_mutex", "_openmp_mutex", "nomkl"), _SELECTOR),
}

# Conda packages with no PyPI counterpart: refused, or dropped with --allow-drift. The text says
# what to use on PyPI instead, when there is something.
_CUDA = "PyPI's torch, tensorflow and jax wheels bring their own CUDA libraries (nvidia-* packages)"
_BLAS = "PyPI's numpy and scipy wheels bundle their own BLAS (OpenBLAS)"
_COMPILER = "a compiler; PyPI wheels are prebuilt (sdists build with the system's compilers)"
_SYSTEM = "a system library or tool; install it with the system's packages"
CONDA_ONLY: dict[str, str] = {
    **dict.fromkeys((
        "cudatoolkit", "cudatoolkit-dev", "cudnn", "cuda-version", "cuda-nvcc", "cuda-cudart",
        "nccl", "pytorch-cuda", "pytorch-mutex", "magma", "magma-cuda",
    ), _CUDA),
    **dict.fromkeys((
        "mkl", "mkl-include", "blas", "libblas", "libcblas", "liblapack", "liblapacke",
        "openblas", "libopenblas",
    ), _BLAS),
    **dict.fromkeys((
        "gcc", "gxx", "gfortran", "clang", "clangxx", "compilers", "c-compiler", "cxx-compiler",
        "fortran-compiler", "binutils", "make", "autoconf", "automake", "libtool", "pkg-config",
    ), _COMPILER),
    **dict.fromkeys((
        "libgdal", "hdf5", "libnetcdf", "proj", "geos", "gdal-data", "libprotobuf", "libxgboost",
        "libarrow", "arrow-cpp", "boost", "boost-cpp", "eigen", "cairo", "pango", "graphviz",
        "ffmpeg", "libjpeg-turbo", "jpeg", "libpng", "libtiff", "freetype", "fontconfig",
        "libcurl", "curl", "git", "git-lfs", "nodejs", "openjdk", "r-base", "poppler",
        "tesseract", "imagemagick", "krb5", "icu", "libiconv", "gettext", "glib", "libxml2",
        "libxslt", "zeromq", "postgresql", "libopencv", "qt", "qt-main",
    ), _SYSTEM),
    **dict.fromkeys(("conda", "conda-build", "mamba", "anaconda"),
                    "conda's own tools; nothing to install from PyPI"),
}
CONDA_ONLY_PREFIXES: dict[str, str] = {
    "r-": "an R package",
    "__": "a conda virtual package (describes the machine)",
}
CONDA_ONLY_SUFFIXES: dict[str, str] = {
    suffix: "a compiler or its sysroot for one platform"
    for suffix in ("_linux-64", "_linux-aarch64", "_linux-ppc64le", "_osx-64", "_osx-arm64",
                   "_win-64")
}

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\]'\",]+?(?=::|[\s\]'\",]|$)")


@frozen
class _Sorted:
    """The conda dependencies of one file, sorted by what happens to them."""

    python: str | None
    entries: tuple[ConvertedDependency, ...]
    conda_only: tuple[tuple[str, str, str], ...]  # (spec as written, name, why)
    problems: tuple[str, ...]


def conda_only_reason(name: str) -> str | None:
    """Why ``name`` has no PyPI counterpart, or None when it is expected on PyPI."""
    if name in CONDA_ONLY:
        return CONDA_ONLY[name]
    for prefix, why in CONDA_ONLY_PREFIXES.items():
        if name.startswith(prefix):
            return why
    for suffix, why in CONDA_ONLY_SUFFIXES.items():
        if name.endswith(suffix) and name not in PROVIDED:
            return why
    return None


def convert(env_file: CondaEnvFile, source: Path | None, project_dir: Path, manager: str,
            allow_drift: bool) -> tuple[PythonEnvFile, Conversion]:
    """``env_file`` as a python_env for ``manager``, and how each dependency carried over.

    Raises SpecError for a spec with no PyPI form (all of them in one line), and
    NotSupportedError for packages only conda has, unless ``allow_drift`` (then they are
    dropped, and the conversion says so).
    """
    shown = _shown(source, project_dir)
    done = _sort(env_file.conda_specs, source)
    if done.problems:
        raise SpecError([Problem(source, "dependencies",
                                 f"cannot be installed from PyPI: {'; '.join(done.problems)}",
                                 hint=f"write them as PyPI would, or use --env-manager conda "
                                      f"instead of {manager}")])
    if done.conda_only and not allow_drift:
        raise refusal(source, manager, done.conda_only)
    conversion = Conversion(shown, manager, done.python, done.entries, tuple(env_file.pip))
    return PythonEnvFile(python=done.python, dependencies=list(conversion.requirements)), conversion


def refusal(source: Path | None, manager: str,
            conda_only: tuple[tuple[str, str, str], ...]) -> NotSupportedError:
    """One line naming every conda-only package, why each has no PyPI counterpart, and what to
    do."""
    listed = ", ".join(f"'{spec}'" for spec, _name, _why in conda_only)
    reasons: dict[str, list[str]] = {}
    for _spec, name, why in conda_only:
        reasons.setdefault(why, []).append(name)
    advice = "; ".join(f"{', '.join(names)}: {why}" for why, names in reasons.items())
    return NotSupportedError(
        f"--env-manager {manager} cannot install the conda package(s) {listed} of "
        f"{_display(source)}: not on PyPI ({advice})",
        hint="use --env-manager conda, or put a PyPI alternative in the pip: list, or add "
             "--allow-drift to run without them (recorded with the run)",
    )


def redacted(text: str) -> str:
    """A conda spec without credentials in its channel URL (user:password, ``/t/<token>/``)."""
    return _URL.sub(lambda m: redact_channel(m.group(0)), text)


def _sort(specs: list[str], source: Path | None) -> _Sorted:
    python: str | None = None
    entries: list[ConvertedDependency] = []
    conda_only: list[tuple[str, str, str]] = []
    problems: list[str] = []
    for written in specs:
        text = redacted(written)
        try:
            spec = parse_match_spec(text)
            if spec.name == "python":
                python = _python(spec, source)
                entries.append(ConvertedDependency(
                    text, None, f"sets the interpreter {python}" if python else
                    "no version pinned: the interpreter running reprun"))
            elif spec.name in PROVIDED:
                entries.append(ConvertedDependency(text, None, PROVIDED[spec.name]))
            elif (why := conda_only_reason(spec.name)) is not None:
                conda_only.append((text, spec.name, why))
                entries.append(ConvertedDependency(
                    text, None, f"not on PyPI ({why}): dropped with --allow-drift"))
            else:
                entries.append(_requirement(spec))
        except Untranslatable as exc:
            problems.append(f"'{text}': {exc}")
    return _Sorted(python, tuple(entries), tuple(conda_only), tuple(problems))


def _requirement(spec: MatchSpec) -> ConvertedDependency:
    pypi_name = PYPI_NAMES.get(spec.name, spec.name)
    requirement = pypi_name + pypi_specifier(spec.version)
    notes = []
    if pypi_name != spec.name:
        notes.append(f"PyPI name of {spec.name}")
    if spec.build:
        notes.append(f"build string '{spec.build}' ignored")
    if spec.channel:
        notes.append(f"channel '{spec.channel}' ignored")
    if spec.other_keys:
        notes.append(f"{', '.join(spec.other_keys)} ignored")
    return ConvertedDependency(spec.text, requirement, "; ".join(notes) or None)


def _python(spec: MatchSpec, source: Path | None) -> str | None:
    """The interpreter a python spec pins (``3.11``, ``3.11.4``); None: any."""
    try:
        specifier = pypi_specifier(spec.version)
    except Untranslatable:
        specifier = "|"
    if not specifier:
        return None
    if re.fullmatch(r"==\d+(\.\d+)*(\.\*)?", specifier):
        return specifier[2:].removesuffix(".*")
    raise SpecError([Problem(source, "dependencies",
                             f"'{spec.text}': a python converted for uv or virtualenv must be "
                             "pinned with = or == (python=3.11)",
                             hint="pin it, or use --env-manager conda")])


def _display(source: Path | None) -> str:
    """The file as errors show files: relative to the working directory when inside it."""
    if source is None:
        return "conda.yaml"
    try:
        return str(source.relative_to(Path.cwd()))
    except ValueError:
        return str(source)


def _shown(source: Path | None, project_dir: Path) -> str:
    if source is None:
        return "conda.yaml"
    try:
        return source.resolve().relative_to(project_dir.resolve()).as_posix()
    except ValueError:
        return source.name


def converted_request(env: EnvRequest, project_dir: Path, manager: str,
                      allow_drift: bool) -> EnvRequest:
    """A conda_env request read as a python_env request, with its conversion."""
    assert env.conda_env is not None
    python_env, conversion = convert(env.conda_env, env.file, project_dir, manager, allow_drift)
    return replace(env, python_env=python_env, conversion=conversion)


# --- telling what was done ----------------------------------------------------------------------


def summary(conversion: Conversion) -> list[str]:
    """``conda.yaml -> PyPI: numpy>=1.14.3, mlflow``, then one line per entry that changed."""
    requirements = ", ".join(conversion.requirements) or "nothing"
    python = f" (python {conversion.python})" if conversion.python else ""
    lines = [f"{conversion.file} -> PyPI: {requirements}{python}"]
    lines += [f"  {line}" for line in details(conversion)]
    return lines


def details(conversion: Conversion) -> list[str]:
    """One line for each dependency that did not carry over as it is written."""
    return [entry_line(e) for e in conversion.entries if e.note is not None]


def entry_line(entry: ConvertedDependency) -> str:
    """``pytorch>=2 -> torch>=2 (PyPI name of pytorch)``, ``pip: left to the environment``."""
    if entry.pypi is None:
        return f"{entry.conda}: {entry.note}"
    return f"{entry.conda} -> {entry.pypi}" + (f" ({entry.note})" if entry.note else "")


def lock_comment(conversion: Conversion) -> str:
    """The lines a lock made from a converted conda.yaml carries under its header."""
    lines = [f"converted from conda: {conversion.file} for {conversion.manager}"]
    lines += [f"  {entry_line(e)}" for e in conversion.entries]
    lines += [f"  pip: list: {line}" for line in conversion.pip]
    return "".join(f"# {line}\n" for line in lines)


def with_conversion(lock: str, conversion: Conversion) -> str:
    """``lock`` with the conversion's comment lines after its header (its first comment lines)."""
    lines = lock.splitlines(keepends=True)
    header = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    return "".join([*lines[:header], lock_comment(conversion), *lines[header:]])


def key_material(conversion: Conversion) -> dict[str, object]:
    """What of a conversion the request key covers (the lock's comments come from it)."""
    return {"file": conversion.file,
            "entries": [[e.conda, e.pypi, e.note] for e in conversion.entries]}


_NOT_FOUND = re.compile(r"package '([^']+)' not found")
_NO_VERSION = re.compile(r"no version of '([^']+)' matches|^resolution conflict: Because only "
                         r"\S+ (?:is|are) available and you require ([A-Za-z0-9][\w.-]*)")


def explain_not_found(error: EnvBuildError, conversion: Conversion) -> EnvBuildError:
    """A resolution error about a converted conda package, saying where the package came from:
    not found (it may exist only on conda), or no matching version (conda and PyPI do not
    always publish the same versions). Other errors are returned as they are."""
    missing = _NOT_FOUND.match(error.message)
    match = missing or _NO_VERSION.match(error.message)
    entry = _entry_for(conversion, match.group(1) or match.group(2)) if match else None
    if entry is None:
        return error
    if missing:
        why = ", which may exist only on conda"
        what = "use --env-manager conda, or put its PyPI name in the pip: list"
    else:
        why = " (conda and PyPI do not always publish the same versions)"
        what = "loosen the version in conda.yaml, or use --env-manager conda"
    return EnvBuildError(
        f"{error.message}: it comes from the conda dependency '{entry.conda}' of "
        f"{conversion.file}{why}",
        hint=f"{what}; {error.hint}" if error.hint else what,
    )


def _entry_for(conversion: Conversion, name: str) -> ConvertedDependency | None:
    wanted = _normalized(name)
    for entry in conversion.entries:
        if entry.pypi and _normalized(re.split(r"[<>=!~;\[ ]", entry.pypi, maxsplit=1)[0]) \
                == wanted:
            return entry
    return None


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
