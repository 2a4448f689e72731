"""Conda match specs (``numpy >=1.20,<2 *_openblas``, ``conda-forge::scipy[version='1.*']``) read
into name, version and build, and a conda version spec translated to PEP 440 when it has a PyPI
form; `Untranslatable` says why when it has none. Pure: no rattler, no I/O."""

from __future__ import annotations

import re

from runner.frozen import frozen

_NAME = re.compile(r"([^\s=<>!~\[]+)(.*)$", re.DOTALL)
_BRACKETS = re.compile(r"\[([^\]]*)\]")
_BRACKET_ITEM = re.compile(r"([A-Za-z0-9_-]+)\s*=\s*([\"']?)(.*?)\2\s*(?:,|$)")
_BUILD_AFTER_EQUALS = re.compile(r"(.*[^=!|,<>~])=([^=,|<>~]+)$")
_CLAUSE = re.compile(r"(>=|<=|==|!=|~=|>|<|=)?(.*)$")
_RELEASE = re.compile(r"\d+(\.\d+)*$")
# PEP 440 as pip and uv read it (the permissive form: 1.0a, 1.0-post1, v1.0 ...).
_PEP440 = re.compile(
    r"v?(\d+!)?\d+(\.\d+)*"
    r"([-_.]?(a|b|c|rc|alpha|beta|pre|preview)[-_.]?\d*)?"
    r"(-\d+|[-_.]?(post|rev|r)[-_.]?\d*)?"
    r"([-_.]?dev[-_.]?\d*)?"
    r"(\+[a-z0-9]+([-_.][a-z0-9]+)*)?$",
    re.IGNORECASE,
)


@frozen
class MatchSpec:
    """A conda dependency, taken apart: what PyPI can use and what it cannot."""

    text: str
    name: str
    version: str | None = None  # conda's version spec; None: any version
    build: str | None = None
    channel: str | None = None
    other_keys: tuple[str, ...] = ()  # bracket keys with no PyPI meaning (build_number, md5...)


class Untranslatable(ValueError):
    """A conda spec with no PyPI form; the message says why."""


def parse_match_spec(text: str) -> MatchSpec:
    """Split a conda match spec: ``[channel[/subdir]::]name[ version[ build]][[key=value,...]]``,
    ``name=version=build``, ``name==version`` ..., with conda's rule that ``=1.2`` means
    ``1.2*`` unless a build string follows."""
    spec = text.split("#", 1)[0].strip()
    brackets: dict[str, str] = {}
    found = _BRACKETS.search(spec)
    if found:
        spec = (spec[:found.start()] + spec[found.end():]).strip()
        for key, _quote, value in _BRACKET_ITEM.findall(found.group(1)):
            brackets[key.lower()] = value.strip()
    channel = None
    if "::" in spec:
        channel, _, spec = spec.rpartition("::")
    match = _NAME.match(spec.strip())
    if match is None:
        raise Untranslatable("no package name")
    name, rest = match.group(1).lower(), match.group(2)
    if "*" in name:
        raise Untranslatable("a name pattern names no one package")
    version, build = _version_and_build(rest)
    version = brackets.pop("version", version)
    build = brackets.pop("build", build)
    channel = brackets.pop("channel", channel)
    brackets.pop("subdir", None)
    return MatchSpec(text, name, version or None, build or None, channel or None,
                     tuple(sorted(brackets)))


def _version_and_build(rest: str) -> tuple[str | None, str | None]:
    text = re.sub(r"\s*([,|])\s*", r"\1", rest.strip())
    text = re.sub(r"(>=|<=|==|!=|~=|[<>=])\s+", r"\1", text)
    if not text:
        return None, None
    tokens = text.split()
    if len(tokens) > 2:
        raise Untranslatable("more than a version and a build string")
    version, build = tokens[0], tokens[1] if len(tokens) == 2 else None
    if build is None and (split := _BUILD_AFTER_EQUALS.match(version)):
        version, build = split.group(1), split.group(2)
    build = build.lstrip("=") if build else None
    if version.startswith("=") and not version.startswith("=="):
        bare = version[1:]
        if not any(c in bare for c in "=,|"):  # conda: '=1.2' is '1.2*' unless a build follows
            version = bare if build is not None or bare.endswith("*") else bare + "*"
    return version, build


def pypi_specifier(version: str | None) -> str:
    """A conda version spec as a PEP 440 specifier ('' for any version).

    ``1.2`` is ``==1.2``, ``1.2*``/``1.2.*``/``=1.2`` are ``==1.2.*``, the comparison operators
    carry over (a trailing ``.*`` after them is ignored, as conda does), ``,`` is ``,`` and
    parentheses only group; ``|`` (either/or) has no PEP 440 form.
    """
    if version is None:
        return ""
    if "|" in version:
        raise Untranslatable("conda's '|' (either/or) has no PyPI form")
    clauses = [c.strip() for c in version.replace("(", "").replace(")", "").split(",")]
    return ",".join(_clause(c) for c in clauses if c not in ("", "*"))


def _clause(clause: str) -> str:
    match = _CLAUSE.match(clause)
    assert match is not None  # the pattern matches any text
    op, value = match.group(1) or "", match.group(2).strip()
    prefix = value.endswith("*")
    base = value.rstrip("*").rstrip(".")
    if not base:
        raise Untranslatable(f"'{clause}' is not a version spec")
    if op in (">=", "<=", ">", "<"):
        return f"{op}{_checked(base)}"
    if op == "~=":
        if prefix or "." not in base:
            raise Untranslatable(f"'{clause}': '~=' needs a version with at least two parts")
        return f"~={_checked(base)}"
    if op == "=" or prefix:
        if not _RELEASE.match(base):
            raise Untranslatable(f"'{clause}': only release numbers can be a PyPI prefix "
                                 "(like 1.2.*)")
        return f"{'!=' if op == '!=' else '=='}{base}.*"
    return f"{op or '=='}{_checked(base)}"


def _checked(version: str) -> str:
    if not _PEP440.match(version):
        raise Untranslatable(f"version '{version}' is not a PyPI (PEP 440) version")
    return version
