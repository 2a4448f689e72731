"""The record dataclasses write the JSON pydantic would; pydantic validates what they wrote."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import TypeAdapter, ValidationError

from runner.record.types import (
    BackendInfo,
    CondaInfo,
    DockerInfo,
    DriftEntry,
    EnvironmentInfo,
    HostInfo,
    OutputFile,
    OutputsCheck,
    Package,
    ProjectInfo,
    Reproduction,
    RunnerProcess,
    RunRecord,
    SnapshotInfo,
    SourceInfo,
    Status,
    SubmoduleInfo,
)


def full_record() -> RunRecord:
    """A record with every nested model filled, odd text and times with microseconds."""
    started = datetime(2026, 11, 23, 11, 7, 58, 123456, tzinfo=timezone.utc)
    return RunRecord(
        run_id="a" * 32, status=Status.FINISHED, exit_code=0, reason=None, entry_point="main",
        parameters={"alpha": "0.5", "text": "it's \"quoted\" — ünïcode"},
        command="python train.py --alpha 0.5",
        project=ProjectInfo(uri="https://example.org/p.git", path="/p", name="p",
                            spec_file="/p/MLproject"),
        source=SourceInfo(
            uri="https://example.org/p.git", resolved_commit="c" * 40, checkout="clean",
            submodules=[SubmoduleInfo(path="lib", commit="d" * 40, url=None)],
            git_dirty=True, patch_file="source.patch", patch_sha256="e" * 64,
            snapshot=SnapshotInfo(file="snapshot.tar.gz", sha256="f" * 64, files=3, size=10,
                                  rules=[".git/"], excluded=["data/"], excluded_count=1),
        ),
        environment=EnvironmentInfo(
            kind="conda_env", manager="conda", python_version="3.11.7",
            packages=[Package(name="numpy", version="2.1.0")], cache_key="k", lock_sha256="0" * 64,
            conda=CondaInfo(solver="rattler 0.28.0", channels=["file:///c"], platform="linux-64",
                            virtual_packages=["__glibc=2.36"]),
        ),
        backend=BackendInfo(
            name="docker", facts={"nested": {"n": [1, 2.5, None, True]}},
            docker=DockerInfo(base_image="python:3.11-slim", image="reprun/p:abc", built=True,
                              dockerfile="Dockerfile", workdir="/workspace/p",
                              command=["bash", "-c", "true"], env_names=["TOKEN"]),
        ),
        host=HostInfo(hostname="h", os="Linux", os_release="6", architecture="x86_64",
                      cpu_count=None, python_version="3.11.7", reprun_version="0.1.0"),
        runner=RunnerProcess(hostname="h", pid=42, start_ticks=7),
        output_dir="/runs/a/outputs",
        outputs=[OutputFile(path="model.pkl", size=3, sha256="1" * 64)],
        started_at=started, ended_at=started + timedelta(seconds=2), duration_s=2.0,
        reproduces="b" * 32,
        reproduction=Reproduction(
            source="git", drift=[DriftEntry(entry="numpy", recorded="2.1.0", found=None)],
            missing_paths={"data": "/gone"},
            check=OutputsCheck(result="different", different=["model.pkl"]),
        ),
    )


def test_record_json_is_what_pydantic_writes_and_reads_back_equal() -> None:
    record = full_record()
    ours = record.model_dump_json(indent=2)
    theirs = TypeAdapter(RunRecord).dump_json(record, indent=2).decode()
    assert json.loads(ours) == json.loads(theirs)
    assert '"started_at": "2026-11-23T11:07:58.123456Z"' in ours
    assert RunRecord.model_validate_json(ours) == record


def test_model_copy_replaces_fields_and_keeps_the_original() -> None:
    record = full_record()
    ended = record.model_copy(update={"status": Status.KILLED, "exit_code": 130})
    assert (ended.status, ended.exit_code, record.status) == (Status.KILLED, 130, Status.FINISHED)
    assert ended.project is record.project


def test_validation_rejects_unknown_keys_and_bad_values() -> None:
    data = json.loads(full_record().model_dump_json())
    data["project"]["extra_key"] = 1
    with pytest.raises(ValidationError, match="extra_key"):
        RunRecord.model_validate(data)
    data = json.loads(full_record().model_dump_json())
    data["status"] = "DONE"
    with pytest.raises(ValidationError, match="status"):
        RunRecord.model_validate(data)


def test_schema_describes_fields_from_their_docstrings() -> None:
    schema = RunRecord.model_json_schema()
    assert schema["title"] == "reprun run record"
    assert schema["additionalProperties"] is False
    command = schema["properties"]["command"]
    assert command["description"] == "The exact command string run with bash -c"
