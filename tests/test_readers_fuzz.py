"""Property tests: whatever bytes the MLproject, environment-file, record and export readers are
given, they answer with a value or a ReprunError (one line for a person), never a traceback."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import ReprunError
from runner.record.export import _read_record, unpack
from runner.spec.project import load_project

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=20))
json_values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                     st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=20)
words = st.sampled_from(["name", "entry_points", "main", "parameters", "command", "type",
                         "default", "python_env", "conda_env", "docker_env", "image",
                         "python", "dependencies", "build_dependencies", "channels", "pip",
                         "float", "path", "../x.yaml", "x.py", "{a}", "&a", "*a", "<<", "!!binary",
                         "2024-13-45", "- ", ": ", "\n", "  ", "[", "{", "'", '"', "#", "\xff"])
yaml_like = st.lists(words, max_size=40).map("".join)
spec_keys = st.sampled_from(["name", "entry_points", "python_env", "conda_env", "docker_env"])
mlproject_dicts = st.dictionaries(spec_keys, json_values, max_size=5)


def one_line_error(exc: ReprunError) -> None:
    text = exc.render()
    assert text and "\n" not in text, repr(text)


def load(files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, data in files.items():
            (root / name).write_bytes(data)
        try:
            load_project(root)
        except ReprunError as exc:
            one_line_error(exc)


@FUZZ
@given(st.one_of(st.binary(max_size=300), yaml_like.map(str.encode),
                 mlproject_dicts.map(lambda d: yaml.safe_dump(d).encode())))
def test_mlproject_reader(data: bytes) -> None:
    load({"MLproject": data})


@FUZZ
@given(st.sampled_from(["python_env.yaml", "conda.yaml"]),
       st.one_of(st.binary(max_size=300), yaml_like.map(str.encode),
                 json_values.map(lambda v: yaml.safe_dump(v).encode())))
def test_environment_file_reader(name: str, data: bytes) -> None:
    load({"MLproject": b"name: fuzz\n", name: data})


GOOD_RECORD: dict[str, Any] = {
    "schema_version": 1, "run_id": "a" * 32, "status": "FINISHED", "entry_point": "main",
    "parameters": {}, "command": "true",
    "project": {"uri": ".", "path": "/p", "name": "p"},
    "source": {"resolved_commit": "b" * 40},
    "environment": {"kind": "none", "manager": "local"},
    "backend": {"name": "local"}, "output_dir": "/o",
    "host": {"hostname": "h", "os": "Linux", "os_release": "6", "architecture": "x86_64",
             "cpu_count": 2, "python_version": "3.11.7", "reprun_version": "0.1.0"},
    "started_at": "2026-01-01T00:00:00Z",
}


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    return found


def replaced(record: dict[str, Any], where: tuple[Any, ...], new: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(record))
    if not where:
        return new if isinstance(new, dict) else copy
    target = copy
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = new
    return copy


@FUZZ
@given(st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.tuples(st.sampled_from(paths(GOOD_RECORD)), json_values).map(
        lambda p: json.dumps(replaced(GOOD_RECORD, *p)).encode()),
))
def test_record_reader(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.json"
        path.write_bytes(data)
        try:
            _read_record(path)
        except ReprunError as exc:
            one_line_error(exc)


def archive(manifest: Any, files: dict[str, bytes], cut: int | None) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as zipped, \
            tarfile.open(fileobj=zipped, mode="w") as tar:
        for name, data in {"manifest.json": json.dumps(manifest).encode(), **files}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    return data[:cut] if cut is not None else data


names = st.sampled_from(["run.json", "x", "x/y", "../e", "/abs", "spec/MLproject", "", ".",
                         "-rf", "a\\b", "spec"])
contents = st.sampled_from([json.dumps(GOOD_RECORD).encode(), b"", b"{}", b"\x00\xff"])


@st.composite
def exports(draw: st.DrawFn) -> bytes:
    files = draw(st.dictionaries(names, contents, max_size=4))
    listed: Any = {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    listed = draw(st.one_of(st.just(listed), json_values))
    manifest = draw(st.one_of(
        st.just({"format": "reprun-export", "version": 1, "run_id": "x", "files": listed}),
        json_values))
    return archive(manifest, files, draw(st.one_of(st.none(), st.integers(0, 600))))


@FUZZ
@given(st.one_of(st.binary(max_size=300), exports()))
def test_export_reader(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.tar.gz"
        path.write_bytes(data)
        dest = Path(tmp) / "out"
        dest.mkdir()
        try:
            _read_record(unpack(path, dest))
        except ReprunError as exc:
            one_line_error(exc)
        for written in dest.rglob("*"):
            assert written.resolve().is_relative_to(dest.resolve())


lock_like = st.fixed_dictionaries({
    "metadata": st.one_of(json_values, st.fixed_dictionaries(
        {"platforms": st.one_of(json_values, st.just(["linux-64"])), "channels": json_values})),
    "package": st.one_of(json_values, st.lists(st.dictionaries(
        st.sampled_from(["name", "version", "platform", "manager", "url", "hash"]),
        st.one_of(json_values, st.just("linux-64"), st.just("conda"), st.just("pip")),
        max_size=6), max_size=3)),
})


@FUZZ
@given(st.one_of(st.text(max_size=300), yaml_like,
                 st.one_of(json_values, lock_like).map(yaml.safe_dump)))
def test_recorded_conda_lock_reader(text: str) -> None:
    from runner.envs.conda.lock import read_facts

    try:
        read_facts(text)
    except ReprunError as exc:
        one_line_error(exc)
