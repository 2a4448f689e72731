"""The outputs wrapper of Kubernetes pods, run by a real /bin/sh with the real tar and base64:
what it prints is split from the log and unpacked as the backend does."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from backends.kubernetes.outputs import split_log, unpack, wrapped_command

RUN_ID = "0123456789abcdef0123456789abcdef"


def run_wrapped(tmp_path: Path, command: str, limit: int = 1 << 20,
                path: str | None = None) -> tuple[int, bytes]:
    env = {"PATH": path or "/usr/bin:/bin", "REPRUN_OUTPUT_DIR": str(tmp_path / "pod" / "out")}
    done = subprocess.run(wrapped_command(command, RUN_ID, limit), check=False, env=env,
                          cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    return done.returncode, done.stdout


def test_outputs_come_back_and_the_log_and_exit_code_are_the_commands(tmp_path: Path) -> None:
    code, log = run_wrapped(tmp_path, 'echo hello; mkdir "$REPRUN_OUTPUT_DIR/sub"; '
                                      'printf "a,b\\n1,2\\n" > "$REPRUN_OUTPUT_DIR/sub/m.csv"; '
                                      'printf no-newline; exit 4')
    assert code == 4
    user, collected = split_log(log, RUN_ID)
    assert user == b"hello\nno-newline\n"
    local = tmp_path / "local"
    assert unpack(collected, local, 1 << 20) is None
    assert (local / "sub" / "m.csv").read_bytes() == b"a,b\n1,2\n"
    assert hashlib.sha256((local / "sub" / "m.csv").read_bytes()).hexdigest()


def test_the_output_dir_exists_and_an_empty_one_sends_nothing(tmp_path: Path) -> None:
    code, log = run_wrapped(tmp_path, 'test -d "$REPRUN_OUTPUT_DIR" && echo there')
    assert code == 0 and log == b"there\n"
    assert split_log(log, RUN_ID)[1].state == "none"


def test_outputs_over_the_limit_are_named_not_sent(tmp_path: Path) -> None:
    code, log = run_wrapped(tmp_path, 'head -c 200000 /dev/urandom > "$REPRUN_OUTPUT_DIR/big"; '
                                      'echo small > "$REPRUN_OUTPUT_DIR/small.txt"', limit=1000)
    assert code == 0
    user, collected = split_log(log, RUN_ID)
    assert user == b""
    problem = unpack(collected, tmp_path / "local", 1000)
    assert problem is not None and problem.startswith("outputs not collected: their archive is ")
    assert "over outputs_max_bytes (1000); files left in the pod: " in problem
    assert "big" in problem and "small.txt" in problem
    assert not (tmp_path / "local").exists()


def test_an_image_without_tar_says_so(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("mkdir", "ls"):  # a shell and these, but no tar and no base64
        (bin_dir / tool).symlink_to(subprocess.check_output(["which", tool]).decode().strip())
    code, log = run_wrapped(tmp_path, 'echo 1 > "$REPRUN_OUTPUT_DIR/x"', path=str(bin_dir))
    assert code == 0
    problem = unpack(split_log(log, RUN_ID)[1], tmp_path / "local", 1 << 20)
    assert problem == "outputs not collected: the image has no tar or no base64"


def test_a_log_cut_inside_the_archive_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    _code, log = run_wrapped(tmp_path, 'echo 1 > "$REPRUN_OUTPUT_DIR/x"')
    cut = log[: log.index(b"end")]
    problem = unpack(split_log(cut, RUN_ID)[1], tmp_path / "local", 1 << 20)
    assert problem is not None and "the log ended inside the outputs archive" in problem


def test_sigterm_reaches_the_command(tmp_path: Path) -> None:
    proc = subprocess.Popen(wrapped_command('trap "echo got-term; exit 7" TERM; echo ready; '
                                            'while :; do sleep 0.1; done', RUN_ID, 0),
                            env={"PATH": "/usr/bin:/bin",
                                 "REPRUN_OUTPUT_DIR": str(tmp_path / "o")},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    assert b"got-term" in out and proc.returncode == 7
