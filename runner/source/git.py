"""Running the git CLI: one environment, credentials scrubbed from its messages, one-line errors.

Every git command of reprun goes through :func:`run_git`, which uses the project's subprocess seam.
Git never prompts (``GIT_TERMINAL_PROMPT=0``): credentials come from whatever git itself uses
(credential helpers, ssh-agent, ``GIT_ASKPASS``) or from the URL, and a secret from a URL is
replaced by ``***`` in anything reprun shows.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from runner.errors import SourceError
from runner.process import Completed, capture
from runner.redact import redact_url

FETCH_TIMEOUT_S = 3600.0
SHORT_TIMEOUT_S = 300.0
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def git_env(base: Mapping[str, str]) -> dict[str, str]:
    """The environment of every git command: C locale, no prompts, no optional locks."""
    env = dict(base)
    env.update({"LC_ALL": "C", "LANGUAGE": "C", "GIT_OPTIONAL_LOCKS": "0",
                "GIT_TERMINAL_PROMPT": "0"})
    return env


def secrets_of(url: str) -> list[str]:
    """The user name and password of an ``scheme://user:pass@host`` URL (raw and decoded)."""
    if "://" not in url:
        return []
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return []
    if "@" not in netloc:
        return []
    userinfo = netloc.rpartition("@")[0]
    found: list[str] = []
    for part in userinfo.split(":", 1):
        for value in (part, unquote(part)):
            if len(value) >= 3 and value not in found:
                found.append(value)
    return found


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without any URL userinfo and without any of ``secrets``."""
    text = _USERINFO.sub(r"\1", text)
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text


def transport(url: str, env: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The URL to hand git, and its environment: ``user:password`` of an http(s) URL travel in
    an Authorization header set through the environment, so they are not in git's command line
    (which other users of the machine can see). Other URLs are handed over as they are."""
    parts = urlsplit(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if parts.scheme not in ("http", "https") or not colon:
        return url, dict(env)
    plain = urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
    pair = f"{unquote(user)}:{unquote(password)}".encode()
    try:
        index = int(env.get("GIT_CONFIG_COUNT") or 0)
    except ValueError:
        return url, dict(env)
    header = dict(env)
    header.update({
        f"GIT_CONFIG_KEY_{index}": f"http.{plain}.extraHeader",
        f"GIT_CONFIG_VALUE_{index}": f"Authorization: Basic {base64.b64encode(pair).decode()}",
        "GIT_CONFIG_COUNT": str(index + 1),
    })
    return plain, header


def run_git(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    cwd: Path | None = None,
    git_dir: Path | None = None,
    timeout: float = SHORT_TIMEOUT_S,
) -> Completed:
    """Run ``git ARGS`` in ``cwd`` or on the repository ``git_dir``; no git -> SourceError."""
    argv = ["git"]
    if git_dir is not None:
        argv += ["--git-dir", str(git_dir)]
    if cwd is not None:
        argv += ["-C", str(cwd)]
    try:
        return capture([*argv, *args], env=env, timeout=timeout)
    except FileNotFoundError:
        raise SourceError(
            "git is not installed (no 'git' program on PATH)",
            hint="install git (e.g. 'apt-get install git') to run projects from git repositories",
        ) from None
    except TimeoutError as exc:
        raise SourceError(f"git {args[0]} did not finish: {exc}") from None


def git_output(args: Sequence[str], env: Mapping[str, str], *, cwd: Path | None = None,
               git_dir: Path | None = None) -> str | None:
    """Stripped stdout of a git command that succeeded, else None."""
    done = run_git(args, env, cwd=cwd, git_dir=git_dir)
    return done.stdout.strip() if done.ok else None


def last_line(stderr: str, secrets: Iterable[str] = ()) -> str:
    """The most telling line of git's stderr (its 'fatal:'/'error:' line), scrubbed."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    telling = [ln for ln in lines if ln.startswith(("fatal:", "error:"))] or lines
    if not telling:
        return "git gave no reason"
    line = telling[0]
    for prefix in ("fatal: ", "error: "):
        line = line.removeprefix(prefix)
    return scrub(line, secrets)


_AUTH = ("authentication failed", "could not read username", "could not read password",
         "terminal prompts disabled", "returned error: 401", "returned error: 403",
         "permission denied (publickey", "permission denied, please try again",
         "invalid username or password", "access denied", "http basic: access denied")
_UNREACHABLE = ("could not resolve host", "failed to connect", "connection refused",
                "connection timed out", "couldn't connect to server", "network is unreachable",
                "no route to host", "name or service not known", "could not resolve hostname",
                "temporary failure in name resolution", "operation timed out",
                "connection reset", "ssl certificate problem", "recv failure")
_NOT_FOUND = ("not found", "does not appear to be a git repository", "returned error: 404",
              "not a git repository", "does not exist", "unable to find remote helper",
              "repository not found", "no such file or directory")


def fetch_error(url: str, stderr: str) -> SourceError:
    """A one-line error for a failed fetch from ``url``: unreachable, auth, or no repository."""
    shown = redact_url(url)
    secrets = secrets_of(url)
    low = stderr.lower()
    reason = last_line(stderr, secrets)
    if any(s in low for s in _AUTH):
        return SourceError(
            f"authentication failed for '{shown}' ({reason})",
            hint="check the credentials git uses for this host (credential helper, ssh-agent, "
                 "a token in the URL)",
        )
    if any(s in low for s in _UNREACHABLE):
        return SourceError(f"cannot reach '{shown}' ({reason})",
                           hint="check the URL and the network")
    if any(s in low for s in _NOT_FOUND):
        return SourceError(f"no git repository at '{shown}' ({reason})",
                           hint="check the URL (a typo?) and that you may read it")
    return SourceError(f"git could not fetch '{shown}': {reason}")
