"""The layout's rules (docs/contributing.md): small modules, no import climbing back up the flow.

Every import counts, those inside functions too: a lazy import that climbs is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("runner", "backends", "reprun")
MAX_LINES = 450
# The steps that tie the packages together, and the layers above them: the packages the flow's
# lower layers (source, spec, envs, record, tracking) and the backends must never import.
STEPS = ("runner.plan", "runner.execute", "runner.first_record", "runner.environment",
         "runner.results", "runner.reproduce", "runner.sweep", "runner.pipeline", "runner.models",
         "runner.ui", "runner.cli", "reprun")
LOWER = ("runner.source", "runner.spec", "runner.envs", "runner.record", "runner.tracking")


def _modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in prefixes)


def test_no_module_is_over_the_limit() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them): {long}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_climbs_back_up(path: Path) -> None:
    module = _name(path)
    imported = _imports(path)
    if _within(module, LOWER) or _within(module, ("backends",)):
        climbing = sorted(i for i in imported if _within(i, STEPS))
        assert not climbing, f"{module} imports higher layers: {climbing}"
    if not _within(module, ("runner.cli",)) and module != "runner.__main__":
        assert not any(_within(i, ("runner.cli",)) for i in imported), (
            f"{module} imports the CLI; only runner/cli turns results into output")


def test_the_checker_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f() -> None:\n    from runner.execute import execute\n")
    assert "runner.execute" in _imports(module)


@pytest.mark.parametrize("package", ["runner.envs.python", "runner.envs.conda",
                                     "runner.tracking.mlflow"])
def test_a_package_exports_its_names_lazily(package: str) -> None:
    import importlib
    import subprocess
    import sys

    module = importlib.import_module(package)
    for name, source in module._EXPORTS.items():
        assert getattr(module, name) is getattr(importlib.import_module(f"{package}.{source}"),
                                                name)
    with pytest.raises(AttributeError, match="no_such_name"):
        module.no_such_name  # noqa: B018
    # Importing the package alone imports none of its modules.
    code = (f"import sys, {package}; "
            f"print(sorted(m for m in sys.modules if m.startswith('{package}.')))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert shown == "[]"
