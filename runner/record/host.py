"""Facts about the machine a run ran on."""

from __future__ import annotations

import os
import platform

from runner import __version__
from runner.process import hostname
from runner.record.types import HostInfo


def host_info() -> HostInfo:
    uname = platform.uname()
    return HostInfo(
        hostname=hostname(),
        os=uname.system,
        os_release=uname.release,
        architecture=uname.machine,
        cpu_count=os.cpu_count(),
        python_version=platform.python_version(),
        reprun_version=__version__,
    )
