"""Assertions shared by the fake API server's tests and the real cluster's (test_k8s_real.py),
so that a record field the real tests read cannot drift away unnoticed: CI runs the fake."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import blake3


def assert_outputs_came_back(record: Mapping[str, Any], files: Mapping[str, bytes]) -> None:
    """The run's outputs are exactly ``files`` (path -> content): recorded with size and
    digest, and present in the local output folder."""
    outputs = {o["path"]: o for o in record["outputs"]}
    assert set(outputs) == set(files), outputs
    local = Path(record["output_dir"])
    for path, content in files.items():
        assert outputs[path]["size"] == len(content)
        assert outputs[path]["digest"] == "blake3:" + blake3.blake3(content).hexdigest()
        assert (local / path).read_bytes() == content
