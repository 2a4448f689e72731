"""reprun: run MLproject projects reproducibly and remember exactly how each run ran."""

__version__ = "0.1.0"
