"""Locks are the same bytes on every machine: no path of the store or of the checkout in them.

The python-env example ships its wheel in the project (``--find-links ./wheels``) and reads
``-r requirements.txt``: uv's output names the input file (in the store's logs) and the wheel
folder (in the checkout); the lock must name neither, and still install where it is used.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeProject, Reprun, init_repo

from runner.envs.python.lock import anchor_entry, installs_project_files, portable

EXAMPLE = Path(__file__).resolve().parent.parent / "example-projects" / "python-env"


def _copy_example(where: Path) -> Path:
    shutil.copytree(EXAMPLE, where)
    return where


def _run(reprun: Reprun, project: Path) -> dict[str, object]:
    result = reprun("run", str(project), "-q")
    assert result.code == 0, result.stderr
    assert "Hello, world!" in result.stdout
    return reprun.last_record()


def _lock_bytes(reprun: Reprun, record: dict[str, object]) -> bytes:
    env = record["environment"]
    assert isinstance(env, dict)
    return (reprun.home / "runs" / str(record["run_id"]) / str(env["lock_file"])).read_bytes()


def test_two_stores_and_two_checkouts_resolve_byte_identical_locks(tmp_path: Path) -> None:
    alice = Reprun(tmp_path / "alice" / "reprun-home", tmp_path)
    bob = Reprun(tmp_path / "b" / "elsewhere" / ".reprun", tmp_path)
    first = _copy_example(tmp_path / "alice" / "src" / "python-env")
    second = _copy_example(tmp_path / "b" / "checkouts" / "x" / "proj")

    lock_a = _lock_bytes(alice, _run(alice, first))
    lock_b = _lock_bytes(bob, _run(bob, second))

    assert lock_a == lock_b
    text = lock_a.decode()
    for path in (tmp_path, alice.home, bob.home, first, second):
        assert str(path) not in text
    assert "# from ./wheels\n" in text
    assert "# via -r requirements.txt\n" in text
    assert text.startswith("# reprun lock: resolved by uv pip compile --generate-hashes for uv\n"
                           "# python: ")
    assert "# request:" not in text


def test_diff_of_runs_from_two_checkouts_reports_no_lock_change(reprun: Reprun,
                                                                tmp_path: Path) -> None:
    a = _run(reprun, _copy_example(tmp_path / "one" / "python-env"))
    b = _run(reprun, _copy_example(tmp_path / "two" / "deeper" / "python-env"))
    result = reprun("diff", str(a["run_id"]), str(b["run_id"]), "--json")
    assert result.code == 0, result.stderr
    lock = result.json()["environment"]["lock_sha256"]
    assert lock["same"] is True and lock["a"] == lock["b"]
    shown = reprun("diff", str(a["run_id"]), str(b["run_id"]))
    assert shown.code == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if "lock_sha256" in line)
    assert not row.rstrip().endswith("*"), row  # a differing row is marked with '*'


def test_a_lock_of_an_older_reprun_still_reproduces(reprun: Reprun, tmp_path: Path) -> None:
    """Records written before locks were portable hold the interpreter's path, the request key
    and absolute paths: reproduce installs them as they are."""
    project = _copy_example(tmp_path / "python-env")
    record = _run(reprun, project)
    run_dir = reprun.home / "runs" / str(record["run_id"])
    env = record["environment"]
    assert isinstance(env, dict)
    lock_path = run_dir / str(env["lock_file"])
    portable_text = lock_path.read_text()
    old = portable_text.replace(
        f"# python: {env['python_version']}\n",
        f"# python: {env['python_version']} /nonexistent/bin/python3\n",
    ).replace("# from ./wheels", f"# from {(project / 'wheels').as_uri()}")
    old = old.replace("# platform:", "# request: " + "0" * 64 + "\n# platform:", 1)
    old += "    # via -r /old/home/cache/python/logs/20250101-000000-resolve-0-1.in\n"
    assert old != portable_text
    lock_path.write_text(old)
    data = json.loads((run_dir / "run.json").read_text())
    data["environment"]["lock_sha256"] = hashlib.sha256(old.encode()).hexdigest()
    (run_dir / "run.json").write_text(json.dumps(data))

    again = reprun("reproduce", str(record["run_id"]))
    assert again.code == 0, again.stderr
    assert "Hello, world!" in again.stdout
    new = reprun.last_record()
    assert new["environment"]["lock_sha256"] == data["environment"]["lock_sha256"]


@pytest.mark.parametrize(("raw", "expected"), [
    ("-e {p}\n    # via -r {infile}\n", "-e .\n    # via -r python_env\n"),
    ("-e {p}/sub\n", "-e ./sub\n"),
    ("pkg @ file://{p}/dist/pkg.whl \\\n", "pkg @ ./dist/pkg.whl \\\n"),
    ("{p}/wheels/a-1-py3-none-any.whl \\\n", "./wheels/a-1-py3-none-any.whl \\\n"),
    ("    # from file://{p}/wheels\n", "    # from ./wheels\n"),
    ("    # from file://{p}2/wheels\n", "    # from file://{p}2/wheels\n"),  # another folder
    ("    # from https://pypi.org/simple\n", "    # from https://pypi.org/simple\n"),
])
def test_uv_output_loses_the_paths_of_this_machine(tmp_path: Path, raw: str,
                                                   expected: str) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    infile = tmp_path / "home" / "logs" / "x-resolve.in"
    text = raw.format(p=project, infile=infile)
    assert portable(text, infile, project) == expected.format(p=project)


def test_project_relative_entries_are_anchored_where_the_lock_is_installed(
        tmp_path: Path) -> None:
    project = tmp_path / "proj"
    assert anchor_entry("-e .", project) == f"-e {project}"
    assert anchor_entry("-e ./sub", project) == f"-e {project}/sub"
    assert anchor_entry("./w/a.whl --hash=sha256:00", project) == f"{project}/w/a.whl " \
        "--hash=sha256:00"
    assert anchor_entry("-e /old/abs/path", project) == "-e /old/abs/path"
    assert anchor_entry("alpha==1.0 --hash=sha256:00", project) == "alpha==1.0 --hash=sha256:00"
    assert anchor_entry("    # via -r ./x", project) == "    # via -r ./x"
    assert installs_project_files("-e .\n    # via -r python_env\n")
    assert installs_project_files("./pkg\n")
    assert not installs_project_files("-e /old/abs/path\n")  # keyed by its path already
    assert not installs_project_files("a==1 \\\n    --hash=sha256:00\n    # from ./wheels\n")


@pytest.mark.docker
def test_a_git_url_run_and_a_local_run_of_one_commit_share_the_kubernetes_image(
        reprun: Reprun, fake_kube: Any, make_project: MakeProject, registry: str,
        base_image: str, image_repo: str, docker_client: Any) -> None:
    """The checkout of a git URL lives in the store, the local one elsewhere: one lock, one
    content hash, so the second run builds and pushes nothing."""
    from test_docker import python_env_project
    from test_k8s_build import job_image, kube_run

    project = python_env_project(make_project, image_repo)
    text = (project / "MLproject").read_text().replace("python greet.py docker", "echo ran")
    (project / "MLproject").write_text(text)  # the fake kubelet runs it on this host
    init_repo(project)
    cfg = {"repository-uri": f"{registry}/team/portable"}
    local = kube_run(reprun, fake_kube, project, cfg, "--docker-base-image", base_image)
    assert local.code == 0, local.stderr
    first = reprun.last_record()
    try:
        from_git = reprun("run", project.as_uri(), "--backend", "kubernetes", "--backend-config",
                          json.dumps({"poll_seconds": 0.3, **cfg}), "--docker-base-image",
                          base_image, env={"KUBECONFIG": str(fake_kube.kubeconfig_path)})
        assert from_git.code == 0, from_git.stderr
        second = reprun.last_record()
        assert second["source"] != first["source"]  # a git URL, checked out in the store
        assert second["environment"]["lock_sha256"] == first["environment"]["lock_sha256"]
        facts, again = first["backend"]["facts"], second["backend"]["facts"]
        assert again["image_tag"] == facts["image_tag"]
        assert again["image_built"] is False and again["image_pushed"] is False
        assert job_image(fake_kube) == facts["image"]
    finally:
        docker_client.images.remove(first["backend"]["facts"]["image_id"], force=True, noprune=True)


BACKEND = '''
"""An in-tree build backend with no requirements: an editable wheel is one .pth file."""
import base64, hashlib, os, zipfile

NAME, VERSION = "localpkg", "0.1"
DIST = f"{NAME}-{VERSION}.dist-info"


def _digest(data):
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _wheel(directory, files):
    files = {**files, f"{DIST}/METADATA": f"Metadata-Version: 2.1\\nName: {NAME}\\n"
             f"Version: {VERSION}\\n",
             f"{DIST}/WHEEL": "Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\n"
             "Tag: py3-none-any\\n"}
    record = [f"{p},sha256={_digest(t.encode())},{len(t.encode())}" for p, t in files.items()]
    files[f"{DIST}/RECORD"] = "\\n".join([*record, f"{DIST}/RECORD,,"]) + "\\n"
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(directory, name), "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return name


def get_requires_for_build_wheel(config_settings=None):
    return []


get_requires_for_build_editable = get_requires_for_build_wheel


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
    return _wheel(wheel_directory, {f"{NAME}.pth": src + "\\n"})


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    raise SystemExit("only editable installs in this test")
'''
PYPROJECT = """[project]
name = "localpkg"
version = "0.1"
[build-system]
requires = []
build-backend = "backend"
backend-path = ["."]
"""


def _editable_checkout(where: Path) -> Path:
    """The python-env example plus ``-e .``: the project is a package installed in place."""
    project = _copy_example(where)
    (project / "backend.py").write_text(BACKEND)
    (project / "pyproject.toml").write_text(PYPROJECT)
    (project / "src" / "localpkg").mkdir(parents=True)
    (project / "src" / "localpkg" / "__init__.py").write_text("HERE = __file__\n")
    env = (project / "python_env.yaml").read_text() + "  - -e .\n"
    (project / "python_env.yaml").write_text(env)
    mlproject = (project / "MLproject").read_text()
    command = next(line for line in mlproject.splitlines() if "command:" in line)
    (project / "MLproject").write_text(mlproject.replace(
        command, "    command: \"python -c 'import greeting, localpkg; print(localpkg.HERE)'\""))
    return project


def test_an_editable_project_has_one_lock_and_an_environment_per_checkout(
        reprun: Reprun, tmp_path: Path) -> None:
    records, outputs = [], []
    for where in (tmp_path / "one" / "proj", tmp_path / "two" / "proj"):
        project = _editable_checkout(where)
        result = reprun("run", str(project), "-q")
        assert result.code == 0, result.stderr
        outputs.append(result.stdout.strip())
        records.append(reprun.last_record())
        assert outputs[-1] == str(project.resolve() / "src" / "localpkg" / "__init__.py")
    locks = [_lock_bytes(reprun, r) for r in records]
    assert locks[0] == locks[1]
    assert "\n-e .\n" in locks[0].decode()
    keys = [r["environment"]["cache_key"] for r in records]
    assert keys[0] != keys[1]  # -e . of one checkout is not the other's
