"""Names of models and aliases, and references to a version (``NAME``, ``NAME:3``, ``NAME@prod``).

A model's name becomes a directory of the store, so it is checked before anything is touched:
letters, digits, '.', '_' and '-', starting with a letter or digit, never '..'. An alias is a
name too, and never a number (``NAME:3`` is version 3), ``latest`` (the newest version) or
``v<number>`` (which MLflow's registry reserves).
"""

from __future__ import annotations

import re

from runner.errors import UsageError
from runner.frozen import frozen

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
RESERVED_ALIAS = re.compile(r"^(latest|[vV]?[0-9]+)$")


@frozen
class Ref:
    """A reference to a model, or to one of its versions."""

    name: str
    version: int | None = None
    alias: str | None = None
    latest: bool = False  # NAME@latest: the newest version (NAME alone: the model)

    @property
    def one_version(self) -> bool:
        return self.version is not None or self.alias is not None or self.latest


def shown(text: str) -> str:
    """``text`` with control characters made visible, for a one-line message."""
    return text.encode("unicode_escape").decode("ascii")


def check_name(name: str, what: str = "model name") -> str:
    """``name`` if it can name a model; UsageError saying why not."""
    if not NAME.match(name) or ".." in name:
        why = ("is empty" if not name else "contains '..'" if ".." in name
               else "contains '/'" if "/" in name or "\\" in name
               else "contains a space" if " " in name
               else "contains a control character" if any(ord(c) < 32 or ord(c) == 127
                                                          for c in name)
               else "must start with a letter or digit" if not name[0].isalnum()
               else "is longer than 128 characters" if len(name) > 128
               else "contains a character other than letters, digits, '.', '_' and '-'")
        raise UsageError(f"{what} '{shown(name)}' {why}",
                         hint="use letters, digits, '.', '_' and '-', e.g. wine-regressor")
    return name


def check_alias(alias: str) -> str:
    check_name(alias, "alias")
    if RESERVED_ALIAS.match(alias):
        raise UsageError(f"alias '{alias}' looks like a version (a number, v<number> or "
                         "'latest')", hint="pick a word, e.g. production or champion")
    return alias


def parse_ref(text: str) -> Ref:
    """``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS`` (``@latest``: the newest version)."""
    name, at, alias = text.partition("@")
    if at:
        check_name(name)
        if alias == "latest":
            return Ref(name, latest=True)
        return Ref(name, alias=check_alias(alias))
    name, colon, version = text.partition(":")
    check_name(name)
    if not colon:
        return Ref(name)
    if not version.isdigit() or int(version) < 1:
        raise UsageError(f"version '{shown(version)}' of '{name}' is not a number from 1",
                         hint=f"write {name}:3 for version 3, or {name}@ALIAS")
    return Ref(name, version=int(version))
