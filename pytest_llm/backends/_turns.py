"""One chat at a time to a server that interrupts a streamed answer when another arrives.

llama-cpp-python's server does so unless started with ``--interrupt_requests False``:
the running answer ends with ``[DONE]`` and no ``finish_reason``. Once a backend has
seen that, it takes :meth:`Turns.turn` around every chat: a lock in this process and,
under pytest-xdist, a file lock that the run's workers share (keyed by xdist's run id
and the host, in the temporary directory), so that workers take turns too. The worker
that saw the interruption tells the others through the same file: it exists from then on.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["Turns"]

#: Set by pytest-xdist in each worker: the same for every worker of one run.
_RUN_ID = "PYTEST_XDIST_TESTRUNUID"
_POLL = 0.01


class Turns:
    """Whether chats to one server take turns, and the turn itself."""

    def __init__(self, host: str) -> None:
        self._lock = threading.Lock()
        self._on = False
        run = os.environ.get(_RUN_ID, "")
        key = hashlib.sha256(f"{run} {host}".encode()).hexdigest()[:16]
        shared = run and sys.platform != "win32"  # Windows: turns within a process only
        self._path = Path(tempfile.gettempdir(), f"pytest-llm-turns-{key}") if shared else None

    @property
    def on(self) -> bool:
        """Whether chats take turns: this process saw an interrupted answer, or another
        worker of the run did."""
        if not self._on and self._path is not None and self._path.exists():
            self._on = True
        return self._on

    def switch_on(self) -> None:
        """From now on every chat to this server, of every worker of the run, takes turns."""
        self._on = True
        if self._path is not None:
            with contextlib.suppress(OSError):
                self._path.touch()

    @contextlib.contextmanager
    def turn(self, timeout: float) -> Iterator[bool]:
        """Hold the turn (``True``), or give up after ``timeout`` seconds (``False``)."""
        end = time.monotonic() + timeout
        if not self._lock.acquire(timeout=timeout):
            yield False
            return
        try:
            if self._path is None or sys.platform == "win32":
                yield True
                return
            import fcntl

            with open(self._path, "a") as handle:
                while True:
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= end:
                            yield False
                            return
                        time.sleep(_POLL)
                try:
                    yield True
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            self._lock.release()
