"""The registry side, for real: Debian's docker-registry on 127.0.0.1, a tiny OCI image pushed
over the HTTP API v2, digests checked, pushes skipped when the content is there."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from conftest import MakeProject, Reprun
from fakekube import FakeKube

from backends.kubernetes.registry import (
    DOCKER_HUB,
    ImageContent,
    Registry,
    parse_reference,
    push_if_missing,
    resolve_digest,
)
from runner.errors import BackendError, UsageError


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tiny_image(text: str) -> ImageContent:
    """A one-layer OCI image holding /hello.txt."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        payload = text.encode()
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": [sha(raw.getvalue())]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha(layer), "size": len(layer)}],
    }).encode()
    return ImageContent(manifest, "application/vnd.oci.image.manifest.v1+json",
                        {sha(config): config, sha(layer): layer})


def test_push_only_when_the_registry_lacks_the_digest(registry: str) -> None:
    image = tiny_image("one")
    first = push_if_missing(image, f"{registry}/team/app", "v1")
    assert first.pushed and first.blobs_uploaded == 2
    assert first.reference == f"{registry}/team/app@{image.digest}"
    again = push_if_missing(image, f"{registry}/team/app", "v1")
    assert not again.pushed and again.digest == first.digest
    assert Registry(registry).manifest_digest("team/app", "v1") == image.digest
    other = tiny_image("two")
    second = push_if_missing(other, f"{registry}/team/app", "v2")
    assert second.pushed and second.blobs_uploaded == 2
    assert resolve_digest(f"{registry}/team/app:v2").pinned == second.reference


def test_unknown_tag_and_unreachable_registry_are_clear(registry: str) -> None:
    with pytest.raises(BackendError, match=r"has no tag 'nope' in team/app"):
        resolve_digest(f"{registry}/team/app:nope")
    with pytest.raises(BackendError, match=r"cannot reach registry http://127.0.0.1:9"):
        resolve_digest("127.0.0.1:9/team/app:v1")


@pytest.mark.parametrize(("ref", "registry_host", "repository", "tag"), [
    ("python", DOCKER_HUB, "library/python", None),
    ("python:3.11-slim", DOCKER_HUB, "library/python", "3.11-slim"),
    ("org/img:1", DOCKER_HUB, "org/img", "1"),
    ("127.0.0.1:5000/a/b:2", "127.0.0.1:5000", "a/b", "2"),
    ("localhost/x", "localhost", "x", None),
    ("ghcr.io/o/r@sha256:" + "1" * 64, "ghcr.io", "o/r", None),
])
def test_parse_reference(ref: str, registry_host: str, repository: str,
                         tag: str | None) -> None:
    parsed = parse_reference(ref)
    assert (parsed.registry, parsed.repository, parsed.tag) == (registry_host, repository, tag)


@pytest.mark.parametrize("ref", ["Upper/Case:1", "x@sha256:short", ""])
def test_bad_references_are_refused(ref: str) -> None:
    with pytest.raises(UsageError):
        parse_reference(ref)


def test_existing_image_by_tag_is_pinned_by_digest_without_a_push(
        registry: str, reprun: Reprun, fake_kube: FakeKube, make_project: MakeProject) -> None:
    image = tiny_image("app")
    push_if_missing(image, f"{registry}/team/app", "stable")
    project = make_project("name: tagged\nentry_points:\n  main:\n    command: echo ran\n")
    cfg = json.dumps({"image": f"{registry}/team/app:stable", "poll_seconds": 0.3})
    result = reprun("run", str(project), "--backend", "kubernetes", "--backend-config", cfg,
                    env={"KUBECONFIG": str(fake_kube.kubeconfig_path)})
    assert result.code == 0, result.stderr
    pinned = f"{registry}/team/app@{image.digest}"
    container = fake_kube.created_jobs[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == pinned
    facts = reprun.last_record()["backend"]["facts"]
    assert facts["image"] == pinned and facts["image_digest"] == image.digest
    assert facts["image_source"] == "existing" and facts["image_pushed"] is False
    tags = Registry(registry)._request("GET", "/v2/team/app/tags/list")[2]
    assert json.loads(tags)["tags"] == ["stable"]  # nothing was pushed by the run


def test_registry_data_is_on_disk(registry: str, tmp_path: Path) -> None:
    push_if_missing(tiny_image("disk"), f"{registry}/disk/app", "v1")
    assert any((tmp_path / "registry-data").rglob("data"))
