"""Remove credentials from URLs before they are shown or written down."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_SCP_LIKE = re.compile(r"^[^/@:]+@[^/:]+:")


def redact_url(url: str) -> str:
    """``https://user:token@host/x`` -> ``https://host/x``; ssh user names (``git@``) are kept."""
    if _SCP_LIKE.match(url) and "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.netloc or "@" not in parts.netloc:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    if parts.scheme in {"ssh", "git+ssh"} and ":" not in userinfo:
        return url  # an ssh user name (git@) is an address, not a secret
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
