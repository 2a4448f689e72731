"""JSON Schemas generated from the pydantic models; ``schemas/`` holds the committed copies.

Regenerate them with ``python -m runner.schemas schemas/``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from backends.k8s_config import KubernetesConfig
from runner.record import RunRecord
from runner.spec_models import CondaEnvFile, MLProject, PythonEnvFile

SCHEMAS: dict[str, tuple[type[BaseModel], str]] = {
    "mlproject": (MLProject, "mlproject.schema.json"),
    "python_env": (PythonEnvFile, "python_env.schema.json"),
    "conda_env": (CondaEnvFile, "conda_env.schema.json"),
    "run-record": (RunRecord, "run-record.schema.json"),
    "kubernetes-config": (KubernetesConfig, "kubernetes-config.schema.json"),
}


def render(kind: str) -> str:
    model, _filename = SCHEMAS[kind]
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **model.model_json_schema(mode="validation"),
    }
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_all(directory: Path) -> list[Path]:
    written = []
    for kind, (_model, filename) in SCHEMAS.items():
        path = directory / filename
        path.write_text(render(kind), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "schemas")):
        print(written_path)
