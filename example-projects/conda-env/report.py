"""Say hello from the conda environment and tell where it lives."""

import os
import platform
import sys

name = sys.argv[1] if len(sys.argv) > 1 else "world"
print(f"hello, {name}, from python {platform.python_version()}")
print(f"conda prefix: {os.environ.get('CONDA_PREFIX', '-')}")
