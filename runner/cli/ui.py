"""``reprun ui``: serve a read-only web view of the run store."""

from __future__ import annotations

import os
import secrets
import urllib.parse

import click

from runner.cli.common import say
from runner.cli.common import store as open_store


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on; on any other than the loopback, every request "
                   "needs a token (--token, else a random one is made and printed).")
@click.option("-p", "--port", default=5050, show_default=True, type=click.IntRange(0, 65535),
              help="The port (0: any free one).")
@click.option("--token", default=None, metavar="TOKEN|generate",
              help="Ask every request for this token ('generate': a random one), given in the "
                   "printed address. Without it, a --host other than the loopback gets a random "
                   "one.")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a browser.")
def ui(host: str, port: int, token: str | None, open_browser: bool) -> int:
    """Serve a read-only web view of the runs of REPRUN_HOME: the runs table (sort, filter,
    columns, CSV), a run (source, parameters, environment, lineage, metrics, log), comparisons
    and plots. Stop it with Ctrl-C."""
    from runner.ui import make_server
    from runner.ui.server import is_loopback

    if token == "generate" or (token is None and not is_loopback(host)):
        token = secrets.token_urlsafe(24)
    runs_store = open_store()
    server = make_server(runs_store, host, port, token, os.environ)
    bound = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}/"
    if token is not None:
        url += "?" + urllib.parse.urlencode({"token": token})
    click.echo(url, err=False)
    say(f"serving the runs of {runs_store.home} (read-only); Ctrl-C stops")
    if token is not None:
        say("every request needs the token in this address (or 'Authorization: Bearer TOKEN')")
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
