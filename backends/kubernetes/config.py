"""The Kubernetes backend configuration (``--backend-config``): a pydantic model and its loader.

The configuration is a JSON or YAML file, or inline JSON. MLflow's keys (``kube-context``,
``repository-uri``, ``kube-job-template-path``) are accepted as they are; the rest are reprun's.
This module does not import the ``kubernetes`` library.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from backends.configerrors import config_problems
from runner.errors import Problem, SpecError, UsageError
from runner.frozen import frozen
from runner.spec.yamlfile import YamlDoc, load_yaml

CHECK = "reprun validate --backend-config CONFIG"
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
KEY_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Resources(_Model):
    """Requests and limits of the run's container."""

    cpu: str | None = Field(default=None, description="CPU request, e.g. '500m' or '2'")
    memory: str | None = Field(default=None, description="Memory request and limit, e.g. '2Gi'")
    gpu: int | None = Field(default=None, ge=0, description="nvidia.com/gpu limit (whole GPUs)")
    requests: dict[str, str] = Field(default_factory=dict, description="More requests by name")
    limits: dict[str, str] = Field(default_factory=dict, description="More limits by name")

    @field_validator("cpu", "memory", mode="before")
    @classmethod
    def _quantity(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and not QUANTITY.match(value):
            raise ValueError(f"'{value}' is not a Kubernetes quantity (examples: 500m, 2, 4Gi)")
        return value


class Toleration(_Model):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, alias="tolerationSeconds")


class SecretRef(_Model):
    """An environment variable read from a Kubernetes Secret in the run's namespace."""

    secret: str = Field(description="The Secret's name")
    key: str = Field(description="The key inside the Secret")
    optional: bool = False


class KubernetesConfig(_Model):
    """``--backend-config`` of ``--backend kubernetes``."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, title="reprun kubernetes backend"
    )

    kube_context: str | None = Field(
        default=None, alias="kube-context",
        description="kubeconfig context; default: the current one, or in-cluster config",
    )
    repository_uri: str | None = Field(
        default=None, alias="repository-uri",
        description="Where built images are pushed, e.g. registry.example.com/team/proj",
    )
    kube_job_template_path: str | None = Field(
        default=None, alias="kube-job-template-path",
        description="A Job YAML whose other fields are kept; relative to this file",
    )
    namespace: str | None = Field(
        default=None, description="Default: the template's, else the context's, else 'default'"
    )
    image: str | None = Field(
        default=None, description="Run this existing image (tag or @sha256 digest); no build"
    )
    base_image: str | None = Field(
        default=None, description="Base of the built image for projects without docker_env "
                                  "(--docker-base-image wins); default python:<version>-slim",
    )
    image_builder: Literal["docker", "registry"] | None = Field(
        default=None, description="How a project's image is made: 'docker' (a Docker engine "
                                  "builds and pushes it) or 'registry' (assembled through the "
                                  "registry's HTTP API, no engine); default: docker when an "
                                  "engine answers, else registry")
    platform: str = Field(
        default="linux/amd64", description="os/architecture[/variant] of the nodes: the "
                                           "registry builder picks the base image for it")
    env_build: Literal["auto", "cluster", "local"] = Field(
        default="auto", description="Where the registry builder installs the environment "
                                    "layer: 'cluster' (a build Job in the base image), 'local' "
                                    "(this machine, when its platform and Python are the "
                                    "image's), 'auto' (local when they match, else cluster)")
    registry_login: SecretRef | None = Field(
        default=None, description="{secret, key}: a Secret holding 'user:password' for the "
                                  "environment build Job's push (the value is never read "
                                  "by reprun)")
    insecure_registries: list[str] = Field(
        default_factory=list, description="Registries (host:port) spoken to over plain http "
                                          "(loopback ones always are)")
    working_dir: str | None = Field(default=None, description="The container's working directory")
    resources: Resources = Field(default_factory=Resources)
    node_selector: dict[str, str] = Field(default_factory=dict,
                                          description="Pod nodeSelector (added to the template's)")
    tolerations: list[Toleration] = Field(default_factory=list,
                                          description="Pod tolerations (added to the template's)")
    service_account: str | None = Field(default=None, description="Pod serviceAccountName")
    image_pull_secrets: list[str] = Field(default_factory=list)
    host_network: bool | None = Field(
        default=None, description="Pod hostNetwork (clusters without a pod network); the "
                                  "template's value wins")
    priority_class: str | None = Field(default=None, description="Pod priorityClassName")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None, description="The container's imagePullPolicy")
    termination_grace_period_seconds: int | None = Field(
        default=None, ge=0, description="Pod terminationGracePeriodSeconds")
    labels: dict[str, str] = Field(default_factory=dict, description="More pod labels")
    annotations: dict[str, str] = Field(default_factory=dict, description="Pod annotations")
    env: dict[str, str] = Field(default_factory=dict, description="Plain values (not secrets)")
    secret_env: dict[str, SecretRef] = Field(
        default_factory=dict, description="NAME: {secret, key}; the value is never read by reprun"
    )
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    backoff_limit: int = Field(default=0, ge=0)
    allow_host_path: bool = Field(
        default=False, description="Allow docker_env volumes from host paths (hostPath volumes)"
    )
    unschedulable_timeout_seconds: float = Field(
        default=300.0, ge=0, description="Fail a run whose pod stays unschedulable this long"
    )
    start_timeout_seconds: float = Field(
        default=600.0, ge=0,
        description="Fail a run whose container has not started this long after the Job was "
                    "created (no pod created, sandbox or volume errors, ContainerCreating...)",
    )
    outputs_max_bytes: int = Field(
        default=8 * 1024 * 1024, ge=0,
        description="Largest gzipped tar of REPRUN_OUTPUT_DIR brought back through the pod's "
                    "log (the kubelet rotates logs at 10 MiB by default); 0: bring none back",
    )
    poll_seconds: float = Field(default=2.0, gt=0, le=60, description="Status check interval")

    @field_validator("platform")
    @classmethod
    def _platform(cls, value: str) -> str:
        parts = value.split("/")
        if len(parts) not in (2, 3) or not all(re.match(r"^[a-z0-9_]+$", p) for p in parts):
            raise ValueError(f"'{value}' is not os/architecture[/variant] (e.g. linux/amd64)")
        return value

    @field_validator("env", "secret_env")
    @classmethod
    def _env_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not ENV_NAME.match(name):
                raise ValueError(f"'{name}' is not a valid environment variable name")
        return value

    @field_validator("labels", "annotations", "node_selector")
    @classmethod
    def _keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            prefix, _, name = key.rpartition("/")
            if (prefix and not DNS_SUBDOMAIN.match(prefix)) or not KEY_NAME.match(name) or len(
                    name) > 63:
                raise ValueError(f"'{key}' is not a valid key ([prefix/]name, name at most 63 "
                                 "letters, digits, '-', '_', '.')")
        return value

    @field_validator("labels", "node_selector")
    @classmethod
    def _label_values(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if len(text) > 63 or not LABEL_VALUE.match(text):
                raise ValueError(f"'{text}' (of '{key}') is not a valid label value")
        return value

    @field_validator("service_account", "priority_class")
    @classmethod
    def _object_name(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 253 or not DNS_SUBDOMAIN.match(value)):
            raise ValueError(f"'{value}' is not a Kubernetes object name (lower case letters, "
                             "digits, '-' and '.')")
        return value

    def recordable(self) -> dict[str, Any]:
        """The config as given, for the record: ``secret_env`` holds references, not values."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def was_set(self, name: str) -> bool:
        """Whether the user gave ``name`` (as opposed to its default)."""
        return name in self.model_fields_set


@frozen
class LoadedConfig:
    """The configuration, where it came from, and the Job template it names (if any)."""

    config: KubernetesConfig
    source: Path | None
    template: dict[str, Any] | None
    template_path: Path | None


def load_config(value: str | None, cwd: Path) -> LoadedConfig:
    """Read ``--backend-config``: inline JSON (starts with '{'), or a JSON/YAML file."""
    if value is None or not value.strip():
        return LoadedConfig(KubernetesConfig(), None, None, None)
    if value.lstrip().startswith("{"):
        return _finish(_inline(value), None, cwd)
    path = (cwd / value).resolve()
    if not path.is_file():
        raise UsageError(f"--backend-config '{value}' is neither inline JSON nor an existing file",
                         hint="give a JSON/YAML file or a JSON object such as '{\"image\": ...}'")
    doc = load_yaml(path)
    if not isinstance(doc.data, dict):
        raise SpecError([Problem(path, "", "the backend config must be a mapping of keys")])
    return _finish(_validate(doc.data, doc), path, path.parent)


def _inline(text: str) -> KubernetesConfig:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--backend-config is not valid JSON: {exc.msg} at column {exc.colno}",
                         hint="quote the JSON for your shell, or give a file") from exc
    if not isinstance(data, dict):
        raise UsageError("--backend-config must be a JSON object")
    return _validate(data, None)


def _validate(data: dict[str, Any], doc: YamlDoc | None) -> KubernetesConfig:
    try:
        return KubernetesConfig.model_validate(data)
    except ValidationError as exc:
        raise SpecError(config_problems(exc, doc, "kubernetes-config"), check=CHECK) from None


def _finish(config: KubernetesConfig, source: Path | None, base: Path) -> LoadedConfig:
    if config.kube_job_template_path is None:
        return LoadedConfig(config, source, None, None)
    path = (base / config.kube_job_template_path).resolve()
    if not path.is_file():
        raise SpecError([Problem(source, "kube-job-template-path",
                                 f"no such file: {config.kube_job_template_path}",
                                 hint="the path is relative to the backend config file")])
    doc = load_yaml(path)
    data = doc.data
    if not isinstance(data, dict):
        raise SpecError([Problem(path, "", "a Job template must be a YAML mapping")])
    kind = data.get("kind", "Job")
    if kind != "Job":
        raise SpecError([Problem(path, "kind", f"'{kind}' is not a Job",
                                 hint="give a batch/v1 Job template")])
    return LoadedConfig(config, source, data, path)
