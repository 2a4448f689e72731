"""Parameters: parse ``-P name=value``, validate typed values, form the command as MLflow does.

The command is MLflow's: every value is shell-quoted and put in place of ``{name}``; parameters that
are not declared are appended as ``--name value`` (both quoted), in the order given.
"""

from __future__ import annotations

import shlex
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from urllib.parse import unquote, urlparse

from runner.errors import ParameterError, UsageError
from runner.frozen import frozen
from runner.spec.types import EntryPoint, ParameterSpec, ParamType, check_value


def parse_param_args(items: Sequence[str]) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}``; split on the first ``=``."""
    params: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(
                f"malformed parameter '-P {item}'", hint="write -P name=value"
            )
        if name in params:
            raise UsageError(
                f"parameter '{name}' is given twice (-P {name}={params[name]} and -P {item})",
                hint="give each parameter once",
            )
        params[name] = value
    return params


@frozen
class ResolvedParams:
    """The values a run uses (as text, unquoted) and the exact command they form."""

    values: Mapping[str, str]
    extras: tuple[str, ...]
    command: str


def resolve(entry: EntryPoint, given: Mapping[str, str], cwd: Path,
            strict: bool = False) -> ResolvedParams:
    """Validate ``given`` against ``entry``, fill defaults and form the command.

    ``cwd`` is the caller's working directory: relative ``path`` values are resolved against it.
    An undeclared name close to a declared one is refused as a misspelling (any undeclared name
    with ``strict``); the others are passed on as MLflow does.
    """
    missing = [n for n, p in entry.parameters.items() if p.required and n not in given]
    if missing:
        names = ", ".join(f"'{n}'" for n in missing)
        example = " ".join(f"-P {n}=VALUE" for n in missing)
        raise ParameterError(missing[0], f"no value given for required {names}",
                             hint=f"pass {example}")
    values: dict[str, str] = {}
    for name, decl in entry.parameters.items():
        raw = given.get(name, decl.default)
        if raw is not None:
            values[name] = _typed_value(name, decl, raw, cwd)
    extras = tuple(n for n in given if n not in entry.parameters)
    check_undeclared(entry, extras, strict)
    for name in extras:
        values[name] = given[name]
    return ResolvedParams(MappingProxyType(values), extras, form_command(entry, values, extras))


def check_undeclared(entry: EntryPoint, names: Sequence[str], strict: bool) -> None:
    """Refuse an undeclared name that looks like a misspelt declared one (any, if ``strict``)."""
    from runner.spec.names import nearest

    declared = ", ".join(entry.parameters) or "none"
    for name in names:
        close = nearest(name, entry.parameters)
        if close:
            raise ParameterError(name, "not declared by the entry point; "
                                 f"did you mean '{close[0]}'?",
                                 hint=f"declared: {declared}")
        if strict:
            raise ParameterError(name, "not declared by the entry point (--strict)",
                                 hint=f"declared: {declared}; drop --strict to pass it on "
                                      f"as --{name}")


def _typed_value(name: str, decl: ParameterSpec, raw: str, cwd: Path) -> str:
    if decl.type is ParamType.PATH:
        return _local_path(name, raw, cwd)
    reason = check_value(decl.type, raw, decl.choices)
    if reason is not None:
        raise ParameterError(name, f"{reason} (declared type {decl.type.value})",
                             hint=_fix_hint(name, decl))
    return raw


def _fix_hint(name: str, decl: ParameterSpec) -> str:
    examples = {
        ParamType.FLOAT: "0.5", ParamType.INT: "10", ParamType.BOOL: "true",
        ParamType.URI: "s3://bucket/key", ParamType.STRING: "text",
    }
    if decl.type is ParamType.CHOICE:
        return f"pass one of: {', '.join(decl.choices or [])}"
    return f"pass for example -P {name}={examples.get(decl.type, 'VALUE')}"


def _local_path(name: str, raw: str, cwd: Path) -> str:
    """A ``path`` value must exist; it becomes absolute against the caller's directory."""
    parsed = urlparse(raw)
    if parsed.scheme == "file" and not parsed.netloc:
        raw = unquote(parsed.path)
    elif parsed.scheme and len(parsed.scheme) > 1:
        raise ParameterError(
            name, f"'{raw}' is a remote location; path parameters must be local files",
            hint="download it first, or declare the parameter with type uri",
        )
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = cwd / path
    if not path.exists():
        raise ParameterError(name, f"no such file or directory: '{raw}' (looked at {path})",
                             hint="pass an existing path (relative to where you run reprun)")
    return str(Path(path.resolve()))


def form_command(entry: EntryPoint, values: Mapping[str, str], extras: Sequence[str]) -> str:
    """Substitute quoted values into the command and append the extra parameters."""
    parts: list[str] = []
    for literal, field, _spec, _conv in string.Formatter().parse(entry.command):
        parts.append(literal)
        if field is not None:
            parts.append(shlex.quote(values[field]))
    command = "".join(parts)
    tail = [f"--{shlex.quote(name)} {shlex.quote(values[name])}" for name in extras]
    return " ".join([command, *tail])
