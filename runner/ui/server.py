"""The HTTP server of ``reprun ui``: the standard library's threading server, read-only.

Rules kept here, for every request:

- GET and HEAD only (anything else: 405).
- On the loopback (no token), the Host header must name the address the server listens on
  (DNS rebinding: a page of another site that resolves its own name to 127.0.0.1 gets 403).
- Bound to another address than the loopback, a token is required (``Authorization: Bearer``,
  or the cookie a first visit with ``?token=`` sets); otherwise 401. Compared in constant time.
- Static files come from a fixed table of names (the page, its script and style, Plotly's
  bundle from the installed ``plotly`` package); a run's files from the record's own names
  (`runner.ui.api.read_file`). No path of a request reaches the file system.
- Headers: a Content-Security-Policy that allows only this server's scripts (no inline
  script), ``nosniff``, no referrer, no caching of the API.
"""

from __future__ import annotations

import hmac
import http.server
import ipaddress
import json
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from runner.errors import ReprunError, RunNotFoundError, UsageError
from runner.record.store import RunStore
from runner.ui import api, models_api

STATIC = Path(__file__).resolve().parent / "static"
# name in the URL -> (file in runner/ui/static, or None for Plotly's bundle; content type)
ASSETS: dict[str, tuple[str | None, str]] = {
    "app.js": ("app.js", "text/javascript; charset=utf-8"),
    "pipeline.js": ("pipeline.js", "text/javascript; charset=utf-8"),
    "app.css": ("app.css", "text/css; charset=utf-8"),
    "models.js": ("models.js", "text/javascript; charset=utf-8"),
    "plotly.min.js": (None, "text/javascript; charset=utf-8"),
    "favicon.svg": ("favicon.svg", "image/svg+xml"),
}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'none'")
COOKIE = "reprun_ui_token_{port}"  # cookies are shared by the ports of a host
METHOD = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")  # a method named back as it was sent
TOKEN = re.compile(r"^[A-Za-z0-9._~-]{8,200}$")  # what a cookie and a URL carry as they are


def plotly_bundle() -> Path | None:
    """The plotly.min.js that the installed ``plotly`` package ships (found without importing
    plotly, which takes a second)."""
    import importlib.util

    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        bundle = Path(folder) / "package_data" / "plotly.min.js"
        if bundle.is_file():
            return bundle
    return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Settings:
    """What every request handler of one server shares."""

    store: RunStore
    host: str
    port: int
    token: str | None
    plotly: Path
    env: Mapping[str, str]

    def allowed_hosts(self) -> set[str]:
        names = {self.host}
        if is_loopback(self.host) or self.host in ("0.0.0.0", "::"):
            names |= {"localhost", "127.0.0.1", "[::1]"}
        shown = {f"[{n}]" if ":" in n and not n.startswith("[") else n for n in names}
        return shown | {f"{n}:{self.port}" for n in shown}


class Handler(http.server.BaseHTTPRequestHandler):
    """One request: checks, then a route of `ROUTES` or a static file."""

    settings: ClassVar[Settings]
    server_version = "reprun-ui"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle kept-alive connection is closed after a minute

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """A request the base class refuses (malformed, too long) gets the JSON error and the
        same headers as any other answer."""
        self.close_connection = True
        self._error(code, message or self.responses.get(code, ("error",))[0])

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the terminal shows the address, not every request."""

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _not_allowed(self) -> None:
        self.close_connection = True  # a body it may have sent is not read
        method = self.command if METHOD.match(self.command or "") else "this method"
        self._error(405, f"{method} is not allowed: the web view is read-only (GET, HEAD)",
                    extra={"Allow": "GET, HEAD"})

    def __getattr__(self, name: str) -> Any:
        """Every other method (POST, PROPFIND, MKCOL, anything a client makes up) is 405: the
        base class looks for ``do_<METHOD>`` and would answer 501 where there is none."""
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    # -- checks ----------------------------------------------------------------------------

    def _answer(self, head: bool) -> None:
        self.head = head
        split = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        host = self.headers.get("Host", "")
        # Without a token (the loopback only), the Host must be this server's: a page whose
        # name was made to resolve to 127.0.0.1 (DNS rebinding) is refused. With a token,
        # whatever name reaches the server, the token decides.
        if self.settings.token is None and host.lower() not in self.settings.allowed_hosts():
            self._error(403, f"this server answers to {self.settings.host}, not to Host "
                             f"{host[:100]!r}")
            return
        cookie = None
        if self.settings.token is not None:
            given = query.pop("token", [None])[-1]
            if given is not None and self._token_ok(given):
                cookie = (f"{self._cookie_name()}={given}; Path=/; HttpOnly; "
                          "SameSite=Strict")
            elif not self._token_ok(self._presented()):
                self._error(401, "a token is needed: open the address reprun ui printed, or "
                                 "send 'Authorization: Bearer TOKEN'",
                            extra={"WWW-Authenticate": 'Bearer realm="reprun"'})
                return
        self.cookie = cookie
        # A store of the request's own: SQLite connections stay in the thread that made them.
        self.store = RunStore(self.settings.store.home)
        try:
            self._route(split.path, query)
        except api.ApiError as exc:
            self._error(exc.status, exc.message)
        except RunNotFoundError as exc:
            self._error(404, exc.render())
        except UsageError as exc:
            self._error(400, exc.render())
        except ReprunError as exc:
            self._error(500, exc.render())
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # a bug or an unreadable store: an answer, and the server lives
            import sys
            import traceback

            traceback.print_exc(file=sys.stderr)
            self._error(500, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self.store.close()

    def _presented(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[len("Bearer "):].strip()
        from http.cookies import CookieError, SimpleCookie

        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie", ""))
        except CookieError:
            return None
        morsel = jar.get(self._cookie_name())
        return morsel.value if morsel is not None else None

    def _cookie_name(self) -> str:
        return COOKIE.format(port=self.settings.port)

    def _token_ok(self, given: str | None) -> bool:
        expected = self.settings.token
        if given is None or expected is None:
            return False
        return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())

    # -- routes ----------------------------------------------------------------------------

    def _route(self, path: str, query: dict[str, list[str]]) -> None:
        if path in ("/", "/index.html"):
            self._file(STATIC / "index.html", "text/html; charset=utf-8", cache=False)
            return
        if path.startswith("/static/"):
            self._asset(path[len("/static/"):])
            return
        store, env = self.store, self.settings.env
        parts = path.split("/")
        if len(parts) < 3 or parts[1] != "api":
            raise api.ApiError(404, f"no page {path[:200]!r}")
        name = parts[2]
        if len(parts) == 3 and name in COLLECTION:
            if name == "runs.csv":
                text = api.runs_csv(store, query)
                self._send(200, text.encode(), "text/csv; charset=utf-8", extra={
                    "Content-Disposition": 'attachment; filename="runs.csv"'})
                return
            if name == "diff":
                self._json(api.diff(store, query, env))
                return
            view = COLLECTION[name]
            if view is not None:
                self._json(view(store, query))
                return
        if name == "sweeps" and len(parts) == 4:
            self._json(api.sweep(store, parts[3], query))
            return
        if name == "pipelines" and len(parts) == 4:
            self._json(api.pipeline(store, parts[3], query))
            return
        if name == "models" and len(parts) in (4, 5):
            self._json(models_api.model(store, parts[3], parts[4] if len(parts) == 5 else "",
                                        query))
            return
        if name == "runs" and len(parts) in (4, 5):
            self._run(parts[3], parts[4] if len(parts) == 5 else "", query)
            return
        raise api.ApiError(404, f"no endpoint {path[:200]!r}")

    def _run(self, given: str, what: str, query: dict[str, list[str]]) -> None:
        store = self.store
        if what in RUN_VIEWS:
            self._json(RUN_VIEWS[what](store, given, query))
            return
        if what in api.FILES:
            which = what
            rid = api.run_id(store, given)
            offset_text = api.one(query, "offset", "0") or "0"
            if not offset_text.isdigit():
                raise api.ApiError(400, f"offset must be a whole number, not {offset_text!r}")
            data, size = api.read_file(store, rid, which, int(offset_text), api.LOG_CHUNK)
            record = store.get(rid)
            extra = {"X-File-Size": str(size), "X-Run-Status": record.status.value}
            self._send(200, data, "text/plain; charset=utf-8", extra=extra, cache=False)
            return
        raise api.ApiError(404, f"no endpoint for a run: {what[:100]!r}")

    # -- sending ---------------------------------------------------------------------------

    def _asset(self, name: str) -> None:
        entry = ASSETS.get(name)
        if entry is None:
            raise api.ApiError(404, f"no file {name[:100]!r}")
        file, kind = entry
        self._file(STATIC / file if file else self.settings.plotly, kind, cache=True)

    def _file(self, path: Path, kind: str, cache: bool) -> None:
        self._send(200, path.read_bytes(), kind, cache=cache)

    def _json(self, body: Any) -> None:
        data = json.dumps(body, indent=None, separators=(",", ":")).encode()
        self._send(200, data, "application/json")

    def _error(self, status: int, message: str, extra: Mapping[str, str] | None = None) -> None:
        body = json.dumps({"error": message, "status": status}).encode()
        self._send(status, body, "application/json", extra=extra)

    def _send(self, status: int, data: bytes, kind: str, *, cache: bool = False,
              extra: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "private, max-age=3600" if cache else "no-store")
        if getattr(self, "cookie", None):
            self.send_header("Set-Cookie", self.cookie or "")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not getattr(self, "head", False):
            self.wfile.write(data)


COLLECTION: dict[str, Callable[[RunStore, api.Query], Any] | None] = {
    "runs": api.runs, "runs.csv": None, "fields": api.fields, "changes": api.changes,
    "compare": api.compare, "diff": None, "sweeps": api.sweeps, "models": models_api.models,
}
RUN_VIEWS: dict[str, Callable[[RunStore, str, api.Query], Any]] = {
    "": api.show, "lineage": api.lineage, "history": api.history,
    "models": models_api.run_models,
}


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


def make_server(store: RunStore, host: str = "127.0.0.1", port: int = 0,
                token: str | None = None, env: Mapping[str, str] | None = None) -> Server:
    """A server of ``store`` on ``host:port`` (0: any free port), not yet serving. UsageError
    without Plotly (the ui extra) or without a token on an address other than the loopback."""
    from runner.errors import MissingExtraError

    bundle = plotly_bundle()
    if bundle is None:
        raise MissingExtraError("ui", "web views (reprun ui)")
    if token is None and not is_loopback(host):
        raise UsageError(f"the address {host} lets other machines connect: a token is needed",
                         hint="give one, e.g. reprun ui --token TOKEN")
    if token is not None and not TOKEN.match(token):
        raise UsageError("a token is 8 to 200 letters, digits, '.', '_', '~' or '-'",
                         hint="e.g. reprun ui --token generate")
    family = Server.address_family
    if ":" in host:
        import socket

        family = socket.AF_INET6

    class Bound(Server):
        address_family = family

    class BoundHandler(Handler):
        pass

    try:
        server = Bound((host, port), BoundHandler)
    except OSError as exc:
        import errno

        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} of {host} is in use",
                             hint="give another with --port (0: any free one)") from None
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                         hint="give another --host or --port") from None
    BoundHandler.settings = Settings(store, host, server.server_address[1], token, bundle,
                                     dict(env if env is not None else os.environ))
    return server
