"""Running the git CLI: one environment, credentials scrubbed from its messages, one-line errors.

Every git command of reprun goes through :func:`run_git`, which uses the project's subprocess seam.
Git never prompts (``GIT_TERMINAL_PROMPT=0``): credentials come from whatever git itself uses
(credential helpers, ssh-agent, ``GIT_ASKPASS``) or from the URL, and a secret from a URL is
replaced by ``***`` in anything reprun shows.

What reaches git from a user, a repository, a record or an export stays data:

- URLs and revisions are passed after ``--end-of-options`` and a URL may not begin with ``-``
  (:func:`check_url`); only the transports of :data:`ALLOWED_PROTOCOLS` are allowed
  (``GIT_ALLOW_PROTOCOL``), so ``ext::`` and ``fd::`` URLs run nothing;
- a repository's own configuration runs no program: every command runs with
  ``core.fsmonitor=false`` and ``core.hooksPath`` set to the null device, and in a working tree
  reprun does not own (``cwd``) every program-running key its local configuration sets
  (filters, textconv, external diff, ssh command, credential helpers...) is overridden by the
  user's own (global or system) value, or emptied (:func:`neutralised`);
- credentials from a URL travel in the environment, never on a command line (:func:`transport`).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from runner.errors import SourceError, UsageError
from runner.process import Completed, capture
from runner.redact import redact_url

FETCH_TIMEOUT_S = 3600.0
SHORT_TIMEOUT_S = 300.0
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
ALLOWED_PROTOCOLS = ("file", "git", "http", "https", "ssh")
NEVER_PROTOCOLS = frozenset({"ext", "fd"})
# Keys of a repository's configuration that make git run a program (or pick one).
_RUNS_PROGRAM = re.compile(
    r"^(core\.(fsmonitor|hookspath|sshcommand|gitproxy|askpass|editor|pager"
    r"|alternaterefscommand)|diff\.external|diff\..+\.(command|textconv)|merge\..+\.driver"
    r"|filter\..+\.(clean|smudge|process|required)|credential\.(.+\.)?helper"
    r"|uploadpack\.packobjectshook|pager\..+|sequence\.editor|gpg\.(.+\.)?program"
    r"|remote\..+\.(uploadpack|receivepack|vcs|proxy)|submodule\..+\.update"
    r"|ssh\.variant)$"
)
_SAFE_ALWAYS = ("-c", "core.fsmonitor=false", "-c", f"core.hooksPath={os.devnull}")


def git_env(base: Mapping[str, str]) -> dict[str, str]:
    """The environment of every git command: C locale, no prompts, no optional locks, and only
    the transports of :data:`ALLOWED_PROTOCOLS` (plus those named in ``REPRUN_GIT_PROTOCOLS``,
    colon-separated; ``ext`` and ``fd`` never)."""
    env = dict(base)
    extra = [p for p in (base.get("REPRUN_GIT_PROTOCOLS") or "").split(":")
             if p and p not in NEVER_PROTOCOLS and re.fullmatch(r"[a-z][a-z0-9+.-]*", p)]
    env.update({"LC_ALL": "C", "LANGUAGE": "C", "GIT_OPTIONAL_LOCKS": "0",
                "GIT_TERMINAL_PROMPT": "0", "GIT_PROTOCOL_FROM_USER": "0",
                "GIT_ALLOW_PROTOCOL": ":".join(dict.fromkeys([*ALLOWED_PROTOCOLS, *extra]))})
    return env


def check_url(url: str, what: str = "repository URL") -> str:
    """``url`` unless git could read it as an option or a command: a leading ``-``, ``ext::``
    and ``fd::`` transports and control characters are refused."""
    scheme = url.partition("::")[0].lower() if "::" in url.partition("/")[0] else ""
    if url.startswith("-") or scheme in NEVER_PROTOCOLS or any(ord(c) < 32 for c in url):
        raise UsageError(
            f"{what} '{scrub(redact_url(url))}' is not a git URL (it would be read as an option "
            "or run a command)", hint="give an https://, ssh://, git@host:path or file:// URL",
        )
    return url


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
    """The URL to hand git, and its environment: the user name and password of an http(s) URL
    (``user:password@``, or a token alone as ``token@``, sent with an empty password) travel in
    an Authorization header set through the environment, so they are not in git's command line
    (which other users of the machine can see). Other URLs are handed over as they are."""
    check_url(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return url, dict(env)
    userinfo, at, host = parts.netloc.rpartition("@")
    if parts.scheme not in ("http", "https") or not at:
        return url, dict(env)
    user, _, password = userinfo.partition(":")
    plain = urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
    pair = f"{unquote(user)}:{unquote(password)}".encode()
    header = with_config(env, [(f"http.{plain}.extraHeader",
                                f"Authorization: Basic {base64.b64encode(pair).decode()}")])
    return plain, header


def with_config(env: Mapping[str, str], pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """``env`` with ``pairs`` added as git configuration of the command scope through
    ``GIT_CONFIG_COUNT``/``KEY``/``VALUE`` (never on a command line, exact keys and values)."""
    out = dict(env)
    try:
        index = max(int(env.get("GIT_CONFIG_COUNT") or 0), 0)
    except ValueError:
        index = 0
    for key, value in pairs:
        out[f"GIT_CONFIG_KEY_{index}"] = key
        out[f"GIT_CONFIG_VALUE_{index}"] = value
        index += 1
    out["GIT_CONFIG_COUNT"] = str(index)
    return out


_LISTINGS: dict[tuple[str, tuple[int, ...]], list[tuple[str, str, str]]] = {}


def neutralised(cwd: Path, env: Mapping[str, str]) -> list[tuple[str, str]]:
    """Overrides for each program-running key the repository at ``cwd`` sets in its own
    (local or worktree) configuration: emptied, then given back the user's global or system
    values, so a repository cannot run anything while the user's own settings still apply."""
    local: list[str] = []
    trusted: dict[str, list[str]] = {}
    for scope, key, value in config_listing(cwd, env):
        if not _RUNS_PROGRAM.match(key.lower()):
            continue
        if scope in ("local", "worktree"):
            local.append(key)
        elif scope != "command":  # reprun's own -c settings are applied anyway
            trusted.setdefault(key, []).append(value)
    pairs: list[tuple[str, str]] = []
    for key in dict.fromkeys(local):
        pairs.append((key, _neutral(key.lower())))
        pairs += [(key, value) for value in trusted.get(key, [])]
    return pairs


def config_listing(cwd: Path, env: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(scope, key, value) of every configuration entry git sees in the repository holding
    ``cwd``, in git's order (``git config --list --show-scope``); empty without git or outside
    a repository. Asked once per repository and state of its configuration files in a process
    (a run asks git for its remote here too, and neutralises the keys from the same answer)."""
    root, stamp = _config_stamp(cwd)
    key = (str(root or cwd), stamp)
    if key not in _LISTINGS:
        _LISTINGS[key] = _listing(cwd, env)
    return _LISTINGS[key]


def _config_stamp(cwd: Path) -> tuple[Path | None, tuple[int, ...]]:
    """The working tree at or above ``cwd`` and the change times of the configuration files
    its repository reads."""
    for parent in (cwd, *cwd.parents):
        dot_git = parent / ".git"
        if dot_git.exists():
            stamps = []
            for name in ("config", "config.worktree"):
                try:
                    stat = (dot_git / name).stat()
                    stamps += [stat.st_mtime_ns, stat.st_size, stat.st_ino]
                except OSError:
                    stamps.append(-1)
            return parent, tuple(stamps)
    return None, ()


def _listing(cwd: Path, env: Mapping[str, str]) -> list[tuple[str, str, str]]:
    try:
        done = capture(["git", *_SAFE_ALWAYS, "-C", str(cwd), "config", "--list",
                        "--show-scope", "-z"], env=env, timeout=SHORT_TIMEOUT_S)
    except (FileNotFoundError, TimeoutError):
        return []
    if not done.ok:
        return []
    items = done.stdout.split("\0")
    found = []
    for scope, entry in zip(items[::2], items[1::2], strict=False):
        key, _, value = entry.partition("\n")
        found.append((scope, key, value))
    return found


def _neutral(key: str) -> str:
    """A value of ``key`` that runs nothing (an empty textconv would be run, ``cat`` is none)."""
    if key.endswith((".required", ".fsmonitor")):
        return "false"
    if key == "core.hookspath":
        return os.devnull
    return "cat" if key.endswith(".textconv") else ""


def run_git(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    cwd: Path | None = None,
    git_dir: Path | None = None,
    timeout: float = SHORT_TIMEOUT_S,
) -> Completed:
    """Run ``git ARGS`` in ``cwd`` or on the repository ``git_dir``; no git -> SourceError.

    ``git_dir`` is one of reprun's own repositories (the clone cache); ``cwd`` may be anyone's,
    so the program-running keys of its own configuration are neutralised first.
    """
    argv = ["git", *_SAFE_ALWAYS]
    if git_dir is not None:
        argv += ["--git-dir", str(git_dir)]
    if cwd is not None:
        argv += ["-C", str(cwd)]
        if git_dir is None:
            env = with_config(env, neutralised(cwd, env))
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
