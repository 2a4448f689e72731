"""The activation of a conda prefix as data: PATH entries to prepend and variables to set.

rattler writes the activation script (PATH, CONDA_PREFIX, the packages' ``etc/conda/activate.d``
scripts); it is run once, when the prefix is built, in a bash with a minimal environment, and the
difference it makes is kept in the prefix's marker. A run then needs neither bash nor rattler to
activate: a prefix never moves, so the result stays true.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from runner.errors import EnvBuildError
from runner.extras import needs_extra
from runner.process import capture

BASE_PATH = "/usr/bin:/bin"
_IGNORED = frozenset({"PWD", "OLDPWD", "SHLVL", "_"})


def activation(prefix: Path, env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """(PATH entries to put first, variables to set) that activating ``prefix`` amounts to."""
    with needs_extra("conda", "conda environments"):
        from rattler.shell import ActivationVariables, Shell, activate

    script = activate(prefix, ActivationVariables(current_path=[]), Shell.bash).script
    base = {"PATH": BASE_PATH, "HOME": env.get("HOME", "/"), "LANG": "C.UTF-8"}
    before = _env_after("", base, prefix)
    after = _env_after(script, base, prefix)
    path = after.pop("PATH", BASE_PATH)
    entries = [p for p in path.split(os.pathsep) if p]
    base_entries = BASE_PATH.split(os.pathsep)
    prepend = [p for p in entries if p not in base_entries] or [str(prefix / "bin")]
    variables = {k: v for k, v in after.items() if before.get(k) != v and k not in _IGNORED}
    return prepend, variables


def _env_after(script: str, base: Mapping[str, str], prefix: Path) -> dict[str, str]:
    text = f"{script}\nenv -0\n"
    done = capture(["bash", "--noprofile", "--norc", "-c", text], env=base, cwd=prefix,
                   timeout=120)
    if not done.ok:
        raise EnvBuildError(f"activating the conda prefix {prefix} failed: "
                            f"{done.stderr.strip().splitlines()[-1:] or done.returncode}")
    pairs = (item.partition("=") for item in done.stdout.split("\0") if "=" in item)
    return {k: v for k, _, v in pairs}
