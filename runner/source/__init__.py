"""Where the code of a run comes from, and the facts about it.

- `uri`: a project URI (git URL or local path, ``#subdirectory``).
- `git`: the one seam through which reprun runs git.
- `fetch`: the cache of bare clones and clean checkouts of exact commits.
- `checkout`: a URI and revision -> a `Checkout` (directory, commit, branch, dirty patch).
- `snapshot`: a content snapshot of a project outside git.
- `recorded`: the source of a recorded run, made again (for ``reproduce`` and ``diff``).
"""

from runner.source.checkout import Checkout, release, resolve_source

__all__ = ["Checkout", "release", "resolve_source"]
