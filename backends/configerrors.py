"""A backend config's validation errors as problems: a file's with its line, a JSON value's named
``--backend-config KEY``; the hint points at the config's schema."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.errors import Problem

if TYPE_CHECKING:
    from pydantic import ValidationError

    from runner.spec.yamlfile import YamlDoc


def config_problems(exc: ValidationError, doc: YamlDoc | None, schema: str) -> list[Problem]:
    """One problem per error of ``exc``; ``doc`` is the file's YAML (None: a JSON value)."""
    problems = []
    for err in exc.errors():
        keypath = tuple(p for p in err["loc"] if isinstance(p, str | int))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        if doc is not None:
            problems.append(doc.problem(keypath, message, hint=f"see 'reprun schema {schema}'"))
        else:
            key = ".".join(str(p) for p in keypath)
            problems.append(Problem(None, f"--backend-config {key}", message))
    return problems
