"""Hostile input, round 3: each class of docs/reliability.md fed to the real CLI (or the web
view), checked for one line, its exit code, no traceback, nothing lost, and an end within a
subprocess timeout (never a timed assertion)."""

from __future__ import annotations

import json

from conftest import Reprun, Result
from uistore import serving

MLPROJECT = "name: bad\nentry_points:\n  main:\n    command: \"python -c 'print(1)'\"\n"


def one_line(result: Result, *needles: str, code: int = 2) -> str:
    """The result is exit ``code`` with exactly one error line holding every needle."""
    assert result.code == code, (result.code, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(result.error_lines) == 1, result.stderr
    line = result.error_lines[0]
    for needle in needles:
        assert needle in line, line
    return line


# -- 9. the web view: every method but GET and HEAD -------------------------------------------

def test_web_view_answers_405_to_every_other_method(reprun: Reprun) -> None:
    reprun.home.mkdir(parents=True, exist_ok=True)
    with serving(reprun.home) as client:
        for method in ("PROPFIND", "MKCOL", "COPY", "LOCK", "SEARCH", "BREW", "post", "X-Y_1"):
            code, headers, body = client.request("/api/runs", method=method)
            assert code == 405, (method, code, body)
            assert headers["Allow"] == "GET, HEAD"
            assert json.loads(body)["error"] == (f"{method} is not allowed: the web view is "
                                                 "read-only (GET, HEAD)")
        code, headers, body = client.request("/", method="A" * 300)
        assert code == 405 and b"this method is not allowed" in body
        assert client.request("/api/runs")[0] == 200
