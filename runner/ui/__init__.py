"""The local web view of the run store (``reprun ui``): a read-only HTTP server whose API answers
the same JSON as the CLI's ``--json`` outputs, and a page of our own (HTML, CSS and JavaScript
without a build step) that draws tables and, with Plotly from the ``ui`` extra, plots.

- `server`: the HTTP server, its checks (method, Host, token) and headers.
- `api`: what each endpoint answers.
"""

from runner.ui.server import make_server, plotly_bundle

__all__ = ["make_server", "plotly_bundle"]
