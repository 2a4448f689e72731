"""Reading a project URI: remote git URL or local path, the ``#subdirectory``, relative URLs."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from runner.errors import UsageError
from runner.frozen import frozen
from runner.redact import redact_url

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_SCP_LIKE = re.compile(r"^[^/@:]+@[^/:]+:")
_SLUG = re.compile(r"[^a-zA-Z0-9._-]+")


@frozen
class ProjectUri:
    """A project URI taken apart: where the repository or directory is, and the subdirectory."""

    given: str
    base: str
    subdirectory: str | None

    @property
    def shown(self) -> str:
        """The URI as given, credentials removed."""
        return redact_url(self.given)


def parse_uri(uri: str) -> ProjectUri:
    """Split ``URI#sub/dir``; quotes around the whole URI are dropped, the subdirectory checked."""
    text = uri.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    base, hashmark, sub = text.partition("#")
    if not base:
        raise UsageError(f"project URI '{redact_url(uri)}' names no project",
                         hint="give a directory or a git URL")
    return ProjectUri(text, base, clean_subdirectory(sub, redact_url(text)) if hashmark else None)


def clean_subdirectory(sub: str, shown: str) -> str | None:
    """``sub`` as a normal relative path (``./a//b`` -> ``a/b``); ``..`` and absolute refused."""
    if sub.startswith(("/", "\\")) or re.match(r"^[a-zA-Z]:[/\\]", sub):
        raise UsageError(
            f"subdirectory '{sub}' in '{shown}' is an absolute path",
            hint="write it relative to the repository root, e.g. '#projects/train'",
        )
    parts = [p for p in sub.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UsageError(
            f"subdirectory '{sub}' in '{shown}' leaves the repository ('..' is not allowed)",
            hint="name a directory inside the repository",
        )
    return "/".join(parts) or None


def is_remote(base: str) -> bool:
    """True for ``scheme://`` URLs other than ``file://`` and for ``user@host:path``.

    An scp-like string is only a URL when no local path of that name exists (checked by caller).
    """
    if base.startswith("file://"):
        return False
    return bool(_SCHEME.match(base) or _SCP_LIKE.match(base))


def is_scp_like(base: str) -> bool:
    return bool(_SCP_LIKE.match(base)) and not _SCHEME.match(base)


def file_url_path(base: str) -> Path:
    """The local path of a ``file://`` URL (``file:///a/b`` and ``file://localhost/a/b``)."""
    parts = urlsplit(base)
    if parts.netloc not in ("", "localhost"):
        raise UsageError(f"'{base}' names a file on host '{parts.netloc}'",
                         hint="file:// URLs must name a local path, e.g. file:///path/to/repo")
    return Path(unquote(parts.path))


def join_url(base: str, relative: str) -> str:
    """A submodule URL (``../lib.git``, ``./x``) made absolute against the superproject's URL.

    Absolute URLs and paths are returned unchanged, as git does.
    """
    if not relative.startswith(("./", "../")):
        return relative
    root, sep, path = _split_path(base.rstrip("/"))
    parts = path.split("/") if path else []
    rest = relative
    while True:
        if rest.startswith("./"):
            rest = rest[2:]
        elif rest.startswith("../"):
            rest = rest[3:]
            if parts:
                parts.pop()
        else:
            break
    joined = "/".join([*parts, rest]) if rest else "/".join(parts)
    return f"{root}{sep}{joined}"


def _split_path(url: str) -> tuple[str, str, str]:
    """(``scheme://host``, ``/``, ``org/repo``) or (``git@host``, ``:``, ``org/repo``)."""
    match = _SCHEME.match(url)
    if match:
        rest = url[match.end():]
        host, slash, path = rest.partition("/")
        return url[:match.end()] + host, slash or "/", path
    if _SCP_LIKE.match(url):
        head, _, path = url.partition(":")
        return head, ":", path
    if url.startswith("/"):
        return "", "/", url[1:]
    return "", "", url


def cache_name(url: str) -> str:
    """A directory name for the cache of ``url``: a readable slug and a hash of the redacted URL."""
    key = redact_url(url).rstrip("/")
    name = PurePosixPath(key.replace(":", "/")).name.removesuffix(".git") or "repo"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return f"{_SLUG.sub('-', name)[:40]}-{digest}"
