"""A total deadline for one request to the tracking server.

A socket timeout bounds each wait for bytes, not a request: a server that accepts and then sends
a byte a second never lets one expire. `Deadline` shuts the connection's socket down when the
request's time is up (from a timer thread), so whatever the request is waiting for (the
connection, sending, the status line, the body) ends at once, and says so afterwards.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from types import TracebackType

MIN_UPLOAD_BYTES_PER_S = 1 << 20  # a body is given its size at this rate on top of the deadline


def seconds_for(timeout: float, length: int) -> float:
    """The deadline of a request that sends ``length`` bytes: ``timeout`` (the answer), plus
    the body's size at `MIN_UPLOAD_BYTES_PER_S` (an artifact upload)."""
    return timeout + length / MIN_UPLOAD_BYTES_PER_S


class Deadline:
    """``with Deadline(connection, seconds) as d:`` one request; ``d.expired`` afterwards."""

    def __init__(self, connection: http.client.HTTPConnection, seconds: float) -> None:
        self.connection = connection
        self.seconds = seconds
        self.expired = False
        self._done = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        with self._lock:
            self._done = True
            self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            sock = self.connection.sock
            if sock is None:  # still connecting: shut it down as soon as it is there
                self._timer = threading.Timer(0.05, self._expire)
                self._timer.daemon = True
                self._timer.start()
                return
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
