"""Layer 1: every Job reprun renders passes kubernetes-validate (strict) and the rules it misses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from backends.kubernetes.config import KubernetesConfig, load_config
from backends.kubernetes.manifest import COPIED_MARK, JobInputs, check_rules, job_name, render_job
from runner.errors import SpecError
from runner.spec.types import DockerEnv

K8S_VERSION = "1.30.0"
DIGEST = "sha256:" + "ab" * 32


def inputs(**changes: Any) -> JobInputs:
    base: dict[str, Any] = {
        "run_id": "0123456789abcdef0123456789abcdef", "project_name": "My_Project v2",
        "entry_point": "main", "command": "python train.py --alpha 0.5 && echo 'a b' | wc -c",
        "image": f"registry.example.com/team/app@{DIGEST}", "namespace": "ml",
        "env": {"REPRUN_RUN_ID": "0123456789abcdef0123456789abcdef"},
    }
    base.update(changes)
    return JobInputs(**base)


def validated(config: KubernetesConfig, template: dict[str, Any] | None = None,
              **changes: Any) -> dict[str, Any]:
    rendered = render_job(config, template, inputs(**changes))
    for manifest in (rendered.manifest, rendered.saved):
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
        assert check_rules(manifest) == []
    return rendered.manifest


def pod_of(job: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = job["spec"]["template"]["spec"]
    return pod


def test_minimal_job_runs_the_command_through_a_shell_with_backoff_limit_zero() -> None:
    job = validated(KubernetesConfig())
    container = pod_of(job)["containers"][0]
    command = container["command"]
    assert command[:2] == ["/bin/sh", "-c"] and command[3:5] == ["reprun", inputs().command]
    assert "args" not in container
    assert container["image"].endswith(DIGEST)
    assert job["spec"]["backoffLimit"] == 0
    assert pod_of(job)["restartPolicy"] == "Never"
    assert job["metadata"]["namespace"] == "ml"
    labels = job["metadata"]["labels"]
    assert labels["reprun.dev/run-id"] == inputs().run_id
    assert labels["reprun.dev/project"] == "My_Project-v2"
    assert job["spec"]["template"]["metadata"]["labels"] == labels


@pytest.mark.parametrize(("project", "expected"), [
    ("My_Project v2", "my-project-v2-01234567"),
    ("UPPER__and spaces!!", "upper-and-spaces-01234567"),
    ("x" * 100, "x" * 43 + "-01234567"),
    ("___", "reprun-01234567"),
])
def test_job_names_are_dns_1123_labels(project: str, expected: str) -> None:
    name = job_name(project, "0123456789abcdef")
    assert name == expected
    assert len(name) <= 63
    validated(KubernetesConfig(), project_name=project)


def test_long_project_names_make_valid_label_values() -> None:
    job = validated(KubernetesConfig(), project_name="-" + "Long.Name_" * 20 + "-",
                    entry_point="x" * 80)
    for value in job["metadata"]["labels"].values():
        assert len(value) <= 63


def test_gpu_resources_selectors_tolerations_and_pull_secrets() -> None:
    config = KubernetesConfig.model_validate({
        "resources": {"cpu": "1500m", "memory": "4Gi", "gpu": 2,
                      "requests": {"ephemeral-storage": "10Gi"}},
        "node_selector": {"accelerator": "a100"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "service_account": "trainer", "image_pull_secrets": ["regcred"],
        "active_deadline_seconds": 3600, "ttl_seconds_after_finished": 600, "backoff_limit": 1,
    })
    job = validated(config)
    pod = pod_of(job)
    resources = pod["containers"][0]["resources"]
    assert resources["limits"] == {"memory": "4Gi", "nvidia.com/gpu": "2"}
    assert resources["requests"] == {"cpu": "1500m", "memory": "4Gi",
                                     "ephemeral-storage": "10Gi"}
    assert pod["nodeSelector"] == {"accelerator": "a100"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                   "effect": "NoSchedule"}]
    assert pod["serviceAccountName"] == "trainer"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    assert job["spec"]["ttlSecondsAfterFinished"] == 600
    assert job["spec"]["backoffLimit"] == 1


TEMPLATE = """
apiVersion: batch/v1
kind: Job
metadata:
  name: "{replaced by reprun}"
  namespace: team-ns
  labels: {team: vision}
  annotations: {owner: ada}
spec:
  backoffLimit: 3
  template:
    metadata:
      annotations: {sidecar.istio.io/inject: "false"}
    spec:
      restartPolicy: OnFailure
      priorityClassName: batch-low
      nodeSelector: {pool: cpu}
      containers:
        - name: trainer
          image: "{replaced by reprun}"
          args: ["ignored"]
          env: [{name: KEEP, value: "1"}, {name: REPRUN_RUN_ID, value: stale}]
          resources: {limits: {cpu: "2"}}
        - name: sidecar
          image: busybox:1.36
      volumes: [{name: scratch, emptyDir: {}}]
"""


def test_template_keeps_its_fields_and_reprun_sets_only_its_own() -> None:
    template = yaml.safe_load(TEMPLATE)
    config = KubernetesConfig.model_validate({"resources": {"memory": "1Gi"},
                                              "node_selector": {"zone": "a"}})
    job = validated(config, template)
    assert job["metadata"]["labels"]["team"] == "vision"
    assert job["metadata"]["annotations"] == {"owner": "ada"}
    assert job["metadata"]["name"] == "my-project-v2-01234567"
    assert job["spec"]["backoffLimit"] == 3  # the template's, since the config does not set it
    pod = pod_of(job)
    assert pod["restartPolicy"] == "OnFailure"
    assert pod["priorityClassName"] == "batch-low"
    assert pod["nodeSelector"] == {"pool": "cpu", "zone": "a"}
    assert pod["volumes"] == [{"name": "scratch", "emptyDir": {}}]
    assert job["spec"]["template"]["metadata"]["annotations"] == {
        "sidecar.istio.io/inject": "false"}
    trainer, sidecar = pod["containers"]
    assert trainer["name"] == "trainer" and "args" not in trainer
    env = {e["name"]: e["value"] for e in trainer["env"]}
    assert env["KEEP"] == "1" and env["REPRUN_RUN_ID"] == inputs().run_id
    assert trainer["resources"] == {"limits": {"cpu": "2", "memory": "1Gi"},
                                    "requests": {"memory": "1Gi"}}
    assert sidecar == {"name": "sidecar", "image": "busybox:1.36"}
    assert template["spec"]["template"]["spec"]["containers"][0]["args"] == ["ignored"]


def test_template_restart_policy_always_becomes_never() -> None:
    template = {"spec": {"template": {"spec": {"restartPolicy": "Always"}}}}
    assert pod_of(validated(KubernetesConfig(), template))["restartPolicy"] == "Never"


def test_secret_env_is_by_reference_and_copied_values_are_not_saved() -> None:
    config = KubernetesConfig.model_validate({
        "env": {"MODE": "train"},
        "secret_env": {"API_TOKEN": {"secret": "creds", "key": "token"}},
    })
    docker = DockerEnv(image="x", environment=["HOST_TOKEN", ("FIXED", "v"), "API_TOKEN"])
    rendered = render_job(config, None, inputs(docker_env=docker,
                                               host_env={"HOST_TOKEN": "s3cr3t"}))
    env = {e["name"]: e for e in pod_of(rendered.manifest)["containers"][0]["env"]}
    assert env["API_TOKEN"] == {"name": "API_TOKEN", "valueFrom": {
        "secretKeyRef": {"name": "creds", "key": "token"}}}
    assert env["MODE"]["value"] == "train" and env["FIXED"]["value"] == "v"
    assert env["HOST_TOKEN"]["value"] == "s3cr3t"
    saved = yaml.safe_dump(rendered.saved)
    assert "s3cr3t" not in saved and COPIED_MARK in saved
    kubernetes_validate.validate(rendered.saved, K8S_VERSION, strict=True)


def test_docker_env_volumes_map_to_pvcs_and_host_paths_only_when_allowed() -> None:
    docker = DockerEnv(image="x", volumes=["datasets:/data:ro", "/mnt/cache:/cache"])
    with pytest.raises(SpecError, match=r"allow_host_path"):
        render_job(KubernetesConfig(), None, inputs(docker_env=docker))
    config = KubernetesConfig.model_validate({"allow_host_path": True})
    job = validated(config, docker_env=docker)
    pod = pod_of(job)
    assert pod["volumes"] == [
        {"name": "reprun-vol-0", "persistentVolumeClaim": {"claimName": "datasets"}},
        {"name": "reprun-vol-1", "hostPath": {"path": "/mnt/cache"}},
    ]
    assert pod["containers"][0]["volumeMounts"] == [
        {"name": "reprun-vol-0", "mountPath": "/data", "readOnly": True},
        {"name": "reprun-vol-1", "mountPath": "/cache"},
    ]


def test_missing_copied_variable_is_an_error() -> None:
    docker = DockerEnv(image="x", environment=["NOT_SET_ANYWHERE"])
    with pytest.raises(SpecError, match="NOT_SET_ANYWHERE"):
        render_job(KubernetesConfig(), None, inputs(docker_env=docker))


def test_extra_rules_catch_what_the_schema_misses() -> None:
    job = validated(KubernetesConfig())
    job["metadata"]["name"] = "Bad_Name"
    pod_of(job)["restartPolicy"] = "Always"
    job["metadata"]["labels"]["x"] = "v" * 64
    problems = check_rules(job)
    assert len(problems) == 3
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)  # the schema alone passes it


def test_mlflow_keys_and_yaml_config_file(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(TEMPLATE)
    (tmp_path / "k8s.yaml").write_text(
        "kube-context: prod\nrepository-uri: registry.example.com/team/app\n"
        "kube-job-template-path: job.yaml\nbackoff_limit: 2\n")
    loaded = load_config("k8s.yaml", tmp_path)
    assert loaded.config.kube_context == "prod"
    assert loaded.config.repository_uri == "registry.example.com/team/app"
    assert loaded.template is not None and loaded.template["metadata"]["namespace"] == "team-ns"
    job = validated(loaded.config, loaded.template)
    assert job["spec"]["backoffLimit"] == 2  # set in the config: it wins over the template


def test_example_backend_config_renders_a_valid_job() -> None:
    examples = Path(__file__).resolve().parent.parent / "example-projects"
    loaded = load_config("hello/kubernetes.yaml", examples)
    assert loaded.config.resources.gpu == 1
    job = validated(loaded.config, loaded.template, image=str(loaded.config.image))
    assert pod_of(job)["containers"][0]["workingDir"] == "/app"


def test_pod_settings_without_a_template_are_valid_and_a_template_wins() -> None:
    settings = {
        "host_network": True, "priority_class": "batch-high", "image_pull_policy": "IfNotPresent",
        "termination_grace_period_seconds": 5, "service_account": "trainer",
        "node_selector": {"kubernetes.io/hostname": "node-1"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml",
                         "effect": "NoExecute", "tolerationSeconds": 60}],
        "labels": {"team": "vision", "example.com/cost-centre": "42"},
        "annotations": {"example.com/owner": "ada lovelace"},
    }
    job = validated(KubernetesConfig.model_validate(settings))
    pod = pod_of(job)
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["priorityClassName"] == "batch-high"
    assert pod["terminationGracePeriodSeconds"] == 5
    assert pod["serviceAccountName"] == "trainer"
    assert pod["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert pod["tolerations"][0]["tolerationSeconds"] == 60
    meta = job["spec"]["template"]["metadata"]
    assert meta["labels"]["team"] == "vision" and meta["labels"]["example.com/cost-centre"] == "42"
    assert meta["annotations"] == {"example.com/owner": "ada lovelace"}
    template = yaml.safe_load(TEMPLATE)
    template["spec"]["template"]["spec"]["hostNetwork"] = False
    template["spec"]["template"]["metadata"]["labels"] = {"team": "nlp"}
    job = validated(KubernetesConfig.model_validate(settings), template)
    pod = pod_of(job)
    assert pod["hostNetwork"] is False and pod["priorityClassName"] == "batch-low"
    assert job["spec"]["template"]["metadata"]["labels"]["team"] == "nlp"


@pytest.mark.parametrize(("settings", "expected"), [
    ({"labels": {"bad key!": "x"}}, "'bad key!' is not a valid key"),
    ({"labels": {"team": "a b"}}, "'a b' (of 'team') is not a valid label value"),
    ({"annotations": {"-x/y": "1"}}, "'-x/y' is not a valid key"),
    ({"priority_class": "High"}, "'High' is not a Kubernetes object name"),
    ({"image_pull_policy": "Sometimes"}, "image_pull_policy: Input should be"),
    ({"termination_grace_period_seconds": -1}, "greater than or equal to 0"),
])
def test_bad_pod_settings_name_the_key(settings: dict[str, Any], expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_config(__import__("json").dumps(settings), Path())
    assert expected in caught.value.render()


@pytest.mark.parametrize("source", ["./data", "data/raw", "Data", "../x"])
def test_a_volume_that_is_neither_a_claim_nor_a_host_path_is_refused(source: str) -> None:
    docker = DockerEnv(image="x", volumes=[f"{source}:/data:ro"])
    with pytest.raises(SpecError) as caught:
        render_job(KubernetesConfig(), None, inputs(docker_env=docker))
    message = caught.value.render()
    assert message.startswith(f"docker_env.volumes[0]: '{source}' in '{source}:/data:ro' is "
                              "neither a PersistentVolumeClaim name")
    assert "name a claim ('my-claim:/data')" in message


def test_gpus_shm_size_and_host_network_map_to_their_kubernetes_forms() -> None:
    docker = DockerEnv(image="x", gpus=2, shm_size="1g", network="host")
    job = validated(KubernetesConfig(), docker_env=docker)
    pod = pod_of(job)
    container = pod["containers"][0]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert {"name": "reprun-shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}} in (
        pod["volumes"])
    assert {"name": "reprun-shm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert pod["hostNetwork"] is True
    config = KubernetesConfig.model_validate({"resources": {"gpu": 1}})
    job = validated(config, docker_env=DockerEnv(image="x", gpus="all"))
    assert pod_of(job)["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}


@pytest.mark.parametrize(("docker", "expected"), [
    (DockerEnv(image="x", gpus="all"), "docker_env.gpus: 'all' has no Kubernetes form"),
    (DockerEnv(image="x", network="none"), "docker_env.network: 'none' has no Kubernetes form"),
    (DockerEnv(image="x", shm_size="lots"), "docker_env.shm_size: 'lots' is not a size"),
])
def test_docker_settings_without_a_kubernetes_form_are_refused(docker: DockerEnv,
                                                               expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        render_job(KubernetesConfig(), None, inputs(docker_env=docker))
    assert caught.value.render().startswith(expected)


def test_several_config_problems_are_all_reported_and_validate_is_named() -> None:
    with pytest.raises(SpecError) as caught:
        load_config('{"imag": 1, "backoff_limit": -1, "labels": {"a b": "c"}}', Path())
    assert len(caught.value.problems) == 3
    assert "run 'reprun validate --backend-config CONFIG'" in caught.value.render()
