"""Render the Kubernetes Job of a run: plain data, no ``kubernetes`` import, no network.

reprun owns a small set of fields and sets only those; everything else in a Job template is kept:

- ``metadata``: ``name``, ``namespace``, and its own labels (added to the template's);
- ``spec``: ``backoffLimit``, ``activeDeadlineSeconds``, ``ttlSecondsAfterFinished`` when the
  backend config gives them (``backoffLimit`` defaults to 0 when neither gives it); with a TTL
  (from either), the pod carries the finalizer ``reprun.dev/outcome``, so that the TTL cannot
  take the pod (its exit code, log and outputs) before reprun has read it; reprun removes it;
- the pod: its labels, ``restartPolicy`` (``Never`` unless the template says ``OnFailure``),
  ``nodeSelector`` and ``tolerations`` (added), ``serviceAccountName``, ``imagePullSecrets``
  (added), ``volumes`` (added);
- the pod settings of the config (``host_network``, ``priority_class``,
  ``termination_grace_period_seconds``, pod ``labels`` and ``annotations``) only where the
  template does not set them: a template overrides them;
- the first container: ``image``, ``command`` (the outputs wrapper of
  `backends.kubernetes.outputs` running ``/bin/sh -c COMMAND``; ``args`` removed), ``env`` (added;
  reprun's names win), ``resources`` (per key), ``volumeMounts`` (added), ``workingDir``,
  ``imagePullPolicy`` (unless the template sets it).

``docker_env`` maps as follows: ``volumes`` to a PersistentVolumeClaim (``claim:/path``) or a
hostPath (``/host:/path``, with ``allow_host_path``); ``gpus: N`` to an ``nvidia.com/gpu`` limit;
``shm_size`` to a memory-backed ``emptyDir`` on ``/dev/shm`` with that ``sizeLimit``;
``network: host`` to ``hostNetwork``. What has no Kubernetes form (``gpus: all``, another
``network``) is refused with the fix in the message, never dropped in silence.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

from backends.kubernetes.config import KubernetesConfig
from backends.kubernetes.outputs import wrapped_command
from runner.errors import Problem, SpecError
from runner.frozen import frozen
from runner.spec.types import DockerEnv

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SHM_SIZE = re.compile(r"^([0-9]+)([bkmgBKMG]?)$")
SHM_UNITS = {"": "", "b": "", "k": "Ki", "m": "Mi", "g": "Gi"}
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
KEY_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
LABEL_PREFIX = "reprun.dev"
RUN_LABEL = f"{LABEL_PREFIX}/run-id"
# Keeps a finished pod (status, log) until reprun has read it, when a TTL would delete it first.
OUTCOME_FINALIZER = f"{LABEL_PREFIX}/outcome"
GPU_RESOURCE = "nvidia.com/gpu"
MAX_NAME = 63
COPIED_MARK = "<copied from the submitting environment; not saved>"


@frozen
class JobInputs:
    """What the Job runs: the run, the command, the pinned image and the environment."""

    run_id: str
    project_name: str
    entry_point: str
    command: str
    image: str
    namespace: str
    env: Mapping[str, str]
    docker_env: DockerEnv | None = None
    host_env: Mapping[str, str] = field(default_factory=dict)
    outputs_max_bytes: int = 0
    host_copies: tuple[str, ...] = ()  # copied from host_env if set; never saved (credentials)


@frozen
class Rendered:
    """The manifest sent to the cluster, and the copy saved with the record."""

    manifest: dict[str, Any]
    saved: dict[str, Any]


def job_name(project: str, run_id: str) -> str:
    """A DNS-1123 label: the sanitised project name and the first 8 characters of the run id."""
    base = re.sub(r"[^a-z0-9-]+", "-", project.lower()).strip("-")
    base = re.sub(r"-{2,}", "-", base)[: MAX_NAME - 20].strip("-") or "reprun"
    return f"{base}-{run_id[:8].lower()}"


def label_value(text: str) -> str:
    """``text`` made a valid label value (63 characters at most)."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:MAX_NAME]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


def run_labels(inputs: JobInputs) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": "reprun",
        RUN_LABEL: label_value(inputs.run_id),
        f"{LABEL_PREFIX}/project": label_value(inputs.project_name),
        f"{LABEL_PREFIX}/entry-point": label_value(inputs.entry_point),
    }


def render_job(config: KubernetesConfig, template: Mapping[str, Any] | None,
               inputs: JobInputs) -> Rendered:
    """The Job for ``inputs``: the template (if any) with reprun's fields set."""
    job: dict[str, Any] = copy.deepcopy(dict(template)) if template else {}
    job["apiVersion"], job["kind"] = "batch/v1", "Job"
    labels = run_labels(inputs)
    meta = _dict(job, "metadata")
    meta["name"], meta["namespace"] = job_name(inputs.project_name, inputs.run_id), inputs.namespace
    meta.pop("generateName", None)
    _dict(meta, "labels").update(labels)
    spec = _dict(job, "spec")
    _job_spec(config, spec)
    pod_template = _dict(spec, "template")
    _dict(_dict(pod_template, "metadata"), "labels").update(labels)
    if spec.get("ttlSecondsAfterFinished") is not None:
        finalizers = pod_template["metadata"].setdefault("finalizers", [])
        if OUTCOME_FINALIZER not in finalizers:
            finalizers.append(OUTCOME_FINALIZER)
    pod = _dict(pod_template, "spec")
    volumes, mounts = _volumes(config, inputs.docker_env)
    _pod_spec(config, pod, volumes)
    _pod_settings(config, pod, _dict(pod_template, "metadata"), inputs.docker_env)
    containers = pod.setdefault("containers", [])
    if not containers:
        containers.append({"name": "main"})
    main = containers[0]
    main.setdefault("name", "main")
    main["image"] = inputs.image
    main["command"] = wrapped_command(inputs.command, inputs.run_id, inputs.outputs_max_bytes)
    main.pop("args", None)
    if config.working_dir:
        main["workingDir"] = config.working_dir
    if config.image_pull_policy:
        main.setdefault("imagePullPolicy", config.image_pull_policy)
    env, copied = _env(config, inputs)
    main["env"] = [e for e in main.get("env", []) if e.get("name") not in env] + list(env.values())
    _resources(config, _dict(main, "resources"), inputs.docker_env)
    if not main["resources"]:
        del main["resources"]
    if inputs.docker_env is not None and inputs.docker_env.shm_size:
        mounts.append({"name": "reprun-shm", "mountPath": "/dev/shm"})
    if mounts:
        main.setdefault("volumeMounts", []).extend(mounts)
    problems = check_rules(job)
    if problems:
        raise SpecError([Problem(None, "Job", p) for p in problems],
                        check="reprun validate --backend-config CONFIG")
    return Rendered(job, _saved_copy(job, copied))


def _dict(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        value = {}
        parent[key] = value
    return value


def _job_spec(config: KubernetesConfig, spec: dict[str, Any]) -> None:
    if config.was_set("backoff_limit") or "backoffLimit" not in spec:
        spec["backoffLimit"] = config.backoff_limit
    if config.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = config.active_deadline_seconds
    if config.ttl_seconds_after_finished is not None:
        spec["ttlSecondsAfterFinished"] = config.ttl_seconds_after_finished


def _pod_spec(config: KubernetesConfig, pod: dict[str, Any], volumes: list[Any]) -> None:
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):
        pod["restartPolicy"] = "Never"
    if config.node_selector:
        _dict(pod, "nodeSelector").update(config.node_selector)
    if config.tolerations:
        pod.setdefault("tolerations", []).extend(
            t.model_dump(by_alias=True, exclude_none=True) for t in config.tolerations
        )
    if config.service_account:
        pod["serviceAccountName"] = config.service_account
    if config.image_pull_secrets:
        have = {s.get("name") for s in pod.setdefault("imagePullSecrets", [])}
        pod["imagePullSecrets"].extend(
            {"name": n} for n in config.image_pull_secrets if n not in have
        )
    if volumes:
        pod.setdefault("volumes", []).extend(volumes)


def _pod_settings(config: KubernetesConfig, pod: dict[str, Any], meta: dict[str, Any],
                  docker: DockerEnv | None) -> None:
    """The config's pod settings and docker_env's shm_size and network; the template wins."""
    host_network = config.host_network
    network = docker.network if docker else None
    if network == "host":
        host_network = True if host_network is None else host_network
    elif network not in (None, "bridge", "default"):
        raise SpecError([Problem(None, "docker_env.network", f"'{network}' has no Kubernetes "
                                 "form: a pod always has the cluster's pod network",
                                 hint="remove it (isolate the pod with a NetworkPolicy), or use "
                                      "'host' for the node's network")])
    if host_network is not None:
        pod.setdefault("hostNetwork", host_network)
        if host_network:
            pod.setdefault("dnsPolicy", "ClusterFirstWithHostNet")
    if config.priority_class:
        pod.setdefault("priorityClassName", config.priority_class)
    if config.termination_grace_period_seconds is not None:
        pod.setdefault("terminationGracePeriodSeconds", config.termination_grace_period_seconds)
    labels, annotations = _dict(meta, "labels"), _dict(meta, "annotations")
    for key, value in config.labels.items():
        labels.setdefault(key, value)
    for key, value in config.annotations.items():
        annotations.setdefault(key, value)
    if not annotations:
        del meta["annotations"]
    shm = docker.shm_size if docker else None
    if shm:
        pod.setdefault("volumes", []).append(
            {"name": "reprun-shm", "emptyDir": {"medium": "Memory", "sizeLimit": _shm(shm)}})


def _shm(size: str) -> str:
    """docker's --shm-size (``64m``, ``1g``, bytes) as a Kubernetes quantity."""
    match = SHM_SIZE.match(size.strip())
    if match is None:
        raise SpecError([Problem(None, "docker_env.shm_size", f"'{size}' is not a size",
                                 hint="give a number with b, k, m or g, e.g. '1g'")])
    return match[1] + SHM_UNITS[match[2].lower()]


def _resources(config: KubernetesConfig, res: dict[str, Any], docker: DockerEnv | None) -> None:
    wanted = config.resources
    requests: dict[str, str] = dict(wanted.requests)
    limits: dict[str, str] = dict(wanted.limits)
    if wanted.cpu:
        requests["cpu"] = wanted.cpu
    if wanted.memory:
        requests["memory"] = limits["memory"] = wanted.memory
    gpus = docker.gpus if docker else None
    if gpus == "all" and not wanted.gpu:
        raise SpecError([Problem(None, "docker_env.gpus", "'all' has no Kubernetes form: a pod "
                                 "asks for a number of GPUs",
                                 hint="set resources.gpu in the backend config (it wins), or "
                                      "give gpus a number")])
    if isinstance(gpus, int) and not isinstance(gpus, bool) and gpus > 0:
        limits[GPU_RESOURCE] = str(gpus)
    if wanted.gpu:
        limits[GPU_RESOURCE] = str(wanted.gpu)
    if requests:
        _dict(res, "requests").update(requests)
    if limits:
        _dict(res, "limits").update(limits)


def _env(config: KubernetesConfig, inputs: JobInputs) -> tuple[dict[str, Any], set[str]]:
    """Environment entries by name (later sources win) and the names copied from the host."""
    env: dict[str, Any] = {}
    copied: set[str] = set()
    docker = inputs.docker_env
    for item in docker.environment if docker else []:
        if isinstance(item, str):
            if item in config.secret_env:
                continue  # given from a Secret below
            if item not in inputs.host_env:
                raise SpecError([Problem(None, "docker_env.environment",
                                         f"'{item}' is copied from the environment of reprun, "
                                         "but it is not set",
                                         hint=f"set {item}, or give it in the backend config's "
                                              "secret_env or env")])
            env[item] = {"name": item, "value": inputs.host_env[item]}
            copied.add(item)
        else:
            env[item[0]] = {"name": item[0], "value": item[1]}
    for name in inputs.host_copies:
        if name in inputs.host_env and name not in config.secret_env:
            env[name] = {"name": name, "value": inputs.host_env[name]}
            copied.add(name)
    for name, value in {**config.env, **inputs.env}.items():
        env[name] = {"name": name, "value": value}
        copied.discard(name)
    for name, ref in config.secret_env.items():
        key_ref: dict[str, Any] = {"name": ref.secret, "key": ref.key}
        if ref.optional:
            key_ref["optional"] = True
        env[name] = {"name": name, "valueFrom": {"secretKeyRef": key_ref}}
        copied.discard(name)
    return env, copied


def _volumes(config: KubernetesConfig,
             docker: DockerEnv | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """docker_env volumes: ``/host:/ctr[:ro]`` -> hostPath (if allowed); ``name:/ctr`` -> a PVC."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for index, spec in enumerate(docker.volumes if docker else []):
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not parts[1].startswith("/"):
            raise SpecError([Problem(None, f"docker_env.volumes[{index}]",
                                     f"'{spec}' is not SOURCE:/container/path[:ro|rw]")])
        source, target = parts[0], parts[1]
        name = f"reprun-vol-{index}"
        if source.startswith("/"):
            if not config.allow_host_path:
                raise SpecError([Problem(None, f"docker_env.volumes[{index}]",
                                         f"'{spec}' needs a hostPath volume on the node",
                                         hint="set allow_host_path: true in the backend config "
                                              "(the path must exist on the node) or remove it")])
            volumes.append({"name": name, "hostPath": {"path": source}})
        elif DNS1123_SUBDOMAIN.match(source) and len(source) <= 253:
            volumes.append({"name": name, "persistentVolumeClaim": {"claimName": source}})
        else:
            raise SpecError([Problem(
                None, f"docker_env.volumes[{index}]",
                f"'{source}' in '{spec}' is neither a PersistentVolumeClaim name (lower case "
                "letters, digits, '-' and '.') nor an absolute path on the node",
                hint="on Kubernetes name a claim ('my-claim:" + target + "') or give an absolute "
                     "node path with allow_host_path: true; a path on this machine cannot be "
                     "mounted in a pod")])
        mount: dict[str, Any] = {"name": name, "mountPath": target}
        if len(parts) == 3 and parts[2] == "ro":
            mount["readOnly"] = True
        mounts.append(mount)
    return volumes, mounts


def _saved_copy(job: dict[str, Any], copied: set[str]) -> dict[str, Any]:
    """The manifest for the record: values copied from the host environment are left out."""
    saved = copy.deepcopy(job)
    for entry in saved["spec"]["template"]["spec"]["containers"][0].get("env", []):
        if entry.get("name") in copied:
            entry["value"] = COPIED_MARK
    return saved


def valid_key(key: str) -> bool:
    """A label or annotation key: ``[prefix/]name``, the prefix a DNS subdomain."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        return False
    return len(name) <= MAX_NAME and bool(KEY_NAME.match(name))


def check_rules(job: Mapping[str, Any]) -> list[str]:
    """What the OpenAPI schema does not check: names, label values, the restart policy."""
    problems = []
    meta = job.get("metadata", {})
    name = str(meta.get("name", ""))
    if not DNS1123_LABEL.match(name) or len(name) > MAX_NAME:
        problems.append(f"metadata.name '{name}' is not a DNS-1123 label of at most 63 characters")
    pod_template = job.get("spec", {}).get("template", {})
    for where, labels in (("metadata.labels", meta.get("labels", {})),
                          ("spec.template.metadata.labels",
                           pod_template.get("metadata", {}).get("labels", {}))):
        for key, value in (labels or {}).items():
            if not valid_key(str(key)):
                problems.append(f"{where}: '{key}' is not a valid label key")
            if len(str(value)) > MAX_NAME or not LABEL_VALUE.match(str(value)):
                problems.append(f"{where}.{key}: '{value}' is not a valid label value")
    for key in (pod_template.get("metadata", {}).get("annotations") or {}):
        if not valid_key(str(key)):
            problems.append(f"spec.template.metadata.annotations: '{key}' is not a valid key")
    pod = pod_template.get("spec", {})
    policy = pod.get("restartPolicy")
    if policy not in ("Never", "OnFailure"):
        problems.append(f"spec.template.spec.restartPolicy: '{policy}' is not Never or OnFailure")
    for index, container in enumerate(pod.get("containers", [])):
        cname = str(container.get("name", ""))
        if not DNS1123_LABEL.match(cname) or len(cname) > MAX_NAME:
            problems.append(f"spec.template.spec.containers[{index}].name: '{cname}' is not a "
                            "DNS-1123 label")
    return problems


def check_config(value: str, cwd: Path) -> str:
    """``reprun validate --backend-config``: every problem of a config (and of the Job it
    renders for a sample run), raised together; a one-line summary when there is none."""
    from backends.kubernetes.config import load_config

    loaded = load_config(value, cwd)
    config = loaded.config
    sample = JobInputs(run_id="0" * 32, project_name="sample", entry_point="main",
                       command="true", image=config.image or "registry.invalid/sample@sha256:"
                       + "0" * 64, namespace=config.namespace or "default", env={},
                       outputs_max_bytes=config.outputs_max_bytes)
    render_job(config, loaded.template, sample)
    template = f", template {loaded.template_path.name}" if loaded.template_path else ""
    image = config.image or (f"built into {config.repository_uri}" if config.repository_uri
                             else "no image and no repository-uri (give one of them)")
    return f"kubernetes backend config: image {image}{template}"
