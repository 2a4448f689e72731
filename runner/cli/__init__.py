"""The command line: click commands that parse, call the library, print, and map exceptions to exit
codes. The only place that does so.

- `main`: the ``reprun`` group and ``reprun run``; the other commands are loaded when used.
- `runs`: ``runs list|show|logs|reindex|cancel``, ``reproduce``, ``export``, ``diff``.
- `env`: ``env list|prune|path|refresh``.
- `common`: exit codes and output helpers shared by the commands.
"""

from runner.cli.main import main

__all__ = ["main"]
