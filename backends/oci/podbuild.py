"""The program of an environment build Job: install a lock in the base image, push the layer.

It runs in the cluster, in the run's base image (pinned by digest), with ``python3`` and the
standard library only: `script` sends it together with `backends.oci.layers` (the same layer
writer reprun uses here). Its inputs are environment variables of the Job:

    REPRUN_LOCK             the lock (pip requirements with hashes)
    REPRUN_PIP_ARGS         JSON list of pip source options (the lock's ``# from`` places)
    REPRUN_REGISTRY         the registry's base URL (http only for loopback/insecure ones)
    REPRUN_REPOSITORY       the repository the layer is pushed to
    REPRUN_TAG              ``reprun-env-<key>``: the one-layer image the layer is kept as
    REPRUN_PLATFORM         os/architecture of the image
    REPRUN_SITE             where the layer puts the packages (/opt/reprun/site-packages)
    REPRUN_REGISTRY_LOGIN   optional ``user:password`` (from a Secret, never in the manifest)

pip is the image's own, else that of a virtual environment made with the base's
``python3 -m venv``; the packages are installed with ``--target``, ``--no-deps``,
``--no-compile`` and the lock's hashes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from backends.oci.layers import tree_files, write_layer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class _Push:
    """Just enough of the distribution API: upload a blob, put a manifest (with a login)."""

    def __init__(self, base: str, repository: str, login: str | None) -> None:
        self.base, self.repository, self.login = base.rstrip("/"), repository, login
        self.auth: str | None = None

    def call(self, method: str, url: str, data: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
        for _ in range(2):
            sent = dict(headers or {})
            if self.auth:
                sent["Authorization"] = self.auth
            request = urllib.request.Request(url, data=data, headers=sent, method=method)
            try:
                with urllib.request.urlopen(request, timeout=300) as answer:
                    return answer.status, dict(answer.headers)
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and self.auth is None and self._auth(exc.headers):
                    continue
                body = exc.read()[:300].decode("utf-8", "replace")
                raise SystemExit(f"reprun-build: {method} {url.split('?', maxsplit=1)[0]} answered "
                                 f"{exc.code} {body}") from None
        raise SystemExit("reprun-build: the registry refused the login")

    def _auth(self, headers: object) -> bool:
        challenge = str(getattr(headers, "get", lambda _k, _d: "")("WWW-Authenticate", ""))
        basic = ("Basic " + base64.b64encode(self.login.encode()).decode()) if self.login else None
        if challenge.lower().startswith("basic"):
            self.auth = basic
            return basic is not None
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        if not realm:
            return False
        request = urllib.request.Request(f"{realm}?{urllib.parse.urlencode(params)}",
                                         headers={"Authorization": basic} if basic else {})
        with urllib.request.urlopen(request, timeout=60) as answer:
            token = json.loads(answer.read())
        self.auth = f"Bearer {token.get('token') or token.get('access_token')}"
        return True

    def blob(self, digest: str, data: bytes) -> None:
        url = f"{self.base}/v2/{self.repository}/blobs/{digest}"
        try:
            self.call("HEAD", url)
            return
        except SystemExit:
            pass
        _, headers = self.call("POST", f"{self.base}/v2/{self.repository}/blobs/uploads/", b"")
        location = urllib.parse.urljoin(self.base + "/", headers.get("Location", ""))
        joiner = "&" if "?" in location else "?"
        self.call("PUT", f"{location}{joiner}digest={digest}", data,
                  {"Content-Type": "application/octet-stream"})

    def manifest(self, tag: str, body: bytes) -> None:
        self.call("PUT", f"{self.base}/v2/{self.repository}/manifests/{tag}", body,
                  {"Content-Type": OCI_MANIFEST})


def _dumps(data: object) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _pip(work: Path) -> str:
    """A python with pip: the image's own, else a virtual environment's (``python3 -m venv``)."""
    found = subprocess.run([sys.executable, "-m", "pip", "--version"], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if found.returncode == 0:
        return sys.executable
    print("reprun-build: making a virtual environment for pip", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
    return str(work / "venv" / "bin" / "python")


def main() -> None:
    env = os.environ
    site_path = env["REPRUN_SITE"]
    work = Path(tempfile.mkdtemp(prefix="reprun-build-"))
    lock = work / "requirements.txt"
    lock.write_text(env["REPRUN_LOCK"], encoding="utf-8")
    site = work / "site"
    hashes = ["--require-hashes"] if "--hash=" in env["REPRUN_LOCK"] else []
    argv = [_pip(work), "-m", "pip", "install", "--target", str(site),
            "--no-deps", "--no-compile", "--no-cache-dir", *hashes, "--disable-pip-version-check",
            "--no-input", "--no-warn-script-location", *json.loads(env["REPRUN_PIP_ARGS"]),
            "-r", str(lock)]
    print("reprun-build: installing the lock", flush=True)
    done = subprocess.run(argv, check=False, env={**env, "PIP_BREAK_SYSTEM_PACKAGES": "1"})
    if done.returncode != 0:
        raise SystemExit(f"reprun-build: pip install failed with exit code {done.returncode}")
    bin_dir = site / "bin"
    for script in sorted(bin_dir.iterdir()) if bin_dir.is_dir() else []:
        data = script.read_bytes()
        if data.startswith(b"#!") and b"python" in data.split(b"\n", 1)[0]:
            rest = data.split(b"\n", 1)[1] if b"\n" in data else b""
            script.write_bytes(b"#!/usr/bin/env python3\n" + rest)
    layer = write_layer(tree_files(site, site_path))
    layer.file.seek(0)
    data = layer.file.read()
    system, arch = env["REPRUN_PLATFORM"].split("/")[:2]
    config = _dumps({"architecture": arch, "os": system,
                     "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
                     "config": {"Labels": json.loads(env.get("REPRUN_LABELS", "{}"))}})
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    push = _Push(env["REPRUN_REGISTRY"], env["REPRUN_REPOSITORY"],
                 env.get("REPRUN_REGISTRY_LOGIN") or None)
    print(f"reprun-build: pushing {layer.digest} ({layer.size} bytes)", flush=True)
    push.blob(layer.digest, data)
    push.blob(config_digest, config)
    push.manifest(env["REPRUN_TAG"], _dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer.digest, "size": layer.size}]}))
    print(f"reprun-build: done {env['REPRUN_TAG']}", flush=True)


def script() -> str:
    """The Job's program: `backends.oci.layers` and this module, as one standard-library file."""
    parts = ["from __future__ import annotations\n"]
    for module in (Path(__file__).with_name("layers.py"), Path(__file__)):
        text = module.read_text(encoding="utf-8")
        parts += [line for line in text.splitlines(keepends=True)
                  if not line.startswith(("from __future__", "from backends."))]
    parts.append("\nif __name__ == '__main__':\n    main()\n")
    return "".join(parts)
