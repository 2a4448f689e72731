"""Print where the environment is and which greeting version it holds."""

import sys

import greeting

name = sys.argv[1] if len(sys.argv) > 1 else "world"
print(f"Hello, {name}! (greeting {greeting.VERSION}, python {sys.version.split()[0]})")
print(f"environment: {sys.prefix}")
