from __future__ import annotations

import os
import socket
import threading
import time
from types import TracebackType

import pytest

from pytest_llm import testing

pytest_plugins = ["pytester", "tests.report_schema"]  # every written JSON report validates

#: tests/real/ needs a real model server: scripts/real-model.sh starts one and sets this
#: variable; a plain `pytest` does not collect it at all (so nothing there shows as skipped).
REAL_MODEL_ENV = "PYTEST_LLM_REAL_MODEL"
collect_ignore = [] if os.environ.get(REAL_MODEL_ENV) == "1" else ["real"]

ScriptedBackend = testing.ScriptedBackend  # the public one (pytest_llm.testing)


class InFlight:
    """Counts the threads inside ``with`` at once: ``peak`` is the most seen together."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self.now -= 1


@pytest.fixture
def scripted() -> type[ScriptedBackend]:
    return ScriptedBackend


class StallingServer:
    """A server that accepts connections and never finishes an answer (a wedged model server).

    Each connection gets ``head`` (e.g. HTTP headers), then ``tick`` every ``interval``
    seconds (e.g. SSE keep-alive comments) for ``limit`` seconds, then is closed.
    ``accepted`` counts the connections, so a test can tell how often a client asked.
    """

    def __init__(
        self, head: bytes = b"", tick: bytes = b"", interval: float = 0.05, limit: float = 10
    ) -> None:
        self.head, self.tick, self.interval, self.limit = head, tick, interval, limit
        self.accepted = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]

    def __enter__(self) -> StallingServer:
        self._threads[0].start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            thread = threading.Thread(target=self._stall, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _stall(self, connection: socket.socket) -> None:
        end = time.monotonic() + self.limit
        with connection:
            try:
                connection.sendall(self.head)
                while not self._stop.wait(self.interval) and time.monotonic() < end:
                    connection.sendall(self.tick)
            except OSError:  # the client hung up
                pass


def free_port() -> int:
    """A loopback port nothing listens on (a refused connection), for a server down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_url() -> str:
    """``http://127.0.0.1:PORT`` of :func:`free_port`."""
    return f"http://127.0.0.1:{free_port()}"
