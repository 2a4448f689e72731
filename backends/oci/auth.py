"""Registry credentials, read where ``docker login`` writes them, and the auth challenges.

Credentials come from ``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``):
``auths.<registry>.auth`` (base64 of ``user:password``) or ``username``/``password``. They are
sent only to the registry they are written for (and to the token service that registry names),
never put on a command line, in a log or in a record. Credential helpers (``credsStore``) are not
run: a registry whose login lives only in a helper is answered as anonymous.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from pathlib import Path

from runner.frozen import frozen

HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io")


class Credentials:
    """A login; its password is never shown (repr, tracebacks)."""

    __slots__ = ("password", "username")

    def __init__(self, username: str, password: str = "") -> None:
        self.username, self.password = username, password

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Credentials) and
                (self.username, self.password) == (other.username, other.password))

    def __hash__(self) -> int:
        return hash((self.username, self.password))

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def __repr__(self) -> str:  # never shown, even in a traceback
        return f"Credentials({self.username!r}, ***)"


@frozen
class Challenge:
    """A ``WWW-Authenticate`` header: its scheme and parameters (realm, service, scope)."""

    scheme: str
    params: Mapping[str, str]


def config_path(env: Mapping[str, str]) -> Path | None:
    folder = env.get("DOCKER_CONFIG")
    if folder:
        return Path(folder) / "config.json"
    home = env.get("HOME")
    return Path(home) / ".docker" / "config.json" if home else None


def credentials_for(host: str, env: Mapping[str, str]) -> Credentials | None:
    """The login for ``host`` in the docker config file, or None (anonymous)."""
    path = config_path(env)
    if path is None or not path.is_file():
        return None
    try:
        auths = json.loads(path.read_text(encoding="utf-8")).get("auths") or {}
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(auths, dict):
        return None
    keys = [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/"]
    if host in ("registry-1.docker.io", "docker.io", "index.docker.io"):
        keys += list(HUB_KEYS)
    for key in keys:
        entry = auths.get(key)
        if isinstance(entry, dict):
            found = _decode(entry)
            if found is not None:
                return found
    return None


def _decode(entry: Mapping[str, object]) -> Credentials | None:
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            name, _, secret = base64.b64decode(auth).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return Credentials(name, secret) if name else None
    user, password = entry.get("username"), entry.get("password")
    if isinstance(user, str) and user and isinstance(password, str):
        return Credentials(user, password)
    return None


def parse_challenge(header: str) -> Challenge | None:
    """``Bearer realm="...",service="...",scope="..."`` or ``Basic realm="..."``."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return Challenge(scheme.lower(), params)
