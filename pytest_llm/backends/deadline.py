"""Deadlines: the time one answer may take, the time one harness call may take, and stopping.

Three objects, from the outside in:

* :class:`Interrupt` stops a group of calls at once (the calls of one ``llm.map`` when the
  test is interrupted by Ctrl-C or pytest-timeout): queued ones never start, running ones
  are cut;
* :class:`CallScope` is one harness call: the time all its attempts and pauses may take
  (``total_timeout_seconds``) and its interrupt. The harness enters it with
  :func:`call_scope`; every :class:`Deadline` created inside it ends no later than it;
* :class:`Deadline` is one answer (``timeout_seconds``, or less when the call's time runs
  out first). A backend enters it around its HTTP work; the HTTP layer
  (:mod:`pytest_llm.backends._deadline_transport`) bounds every wait by what is left of it
  and registers a stop (shutting the connection's socket) that runs when it passes, so a
  server dripping bytes, or a line that never ends, cannot stretch the answer.

Every error that escapes a deadline that has passed is a :class:`BackendTimeout` that says
which bound ran out (or that the test was interrupted). Standard library only.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from types import TracebackType

from ..errors import BackendBusy, BackendError, BackendTimeout

__all__ = [
    "CallScope",
    "Deadline",
    "Interrupt",
    "call_scope",
    "current_deadline",
    "current_scope",
    "timeout_message",
]


_SCOPE: ContextVar[CallScope | None] = ContextVar("pytest_llm_call_scope", default=None)
_DEADLINE: ContextVar[Deadline | None] = ContextVar("pytest_llm_deadline", default=None)


def timeout_message(model: str, host: str, timeout_seconds: float) -> str:
    """What every backend says when an answer takes too long, with how to allow more time."""
    return (
        f"no answer from {model!r} at {host} within timeout_seconds={timeout_seconds:g}; "
        "raise it with @pytest.mark.llm(timeout_seconds=...) or --llm-timeout"
    )


class Interrupt:
    """Stops every call of a group at once: :meth:`stop` cuts the running answers (their
    deadlines pass now) and :meth:`sleep` wakes up. Thread-safe; stopping twice is a no-op."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._deadlines: set[Deadline] = set()

    @property
    def stopped(self) -> bool:
        return self._event.is_set()

    def stop(self, reason: str) -> None:
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
            self._event.set()
            running = list(self._deadlines)
        for deadline in running:
            deadline.stop(reason)

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; ``False`` if stopped meanwhile."""
        return not self._event.wait(seconds)

    def _add(self, deadline: Deadline) -> bool:
        with self._lock:
            if self.reason is not None:
                return False
            self._deadlines.add(deadline)
            return True

    def _discard(self, deadline: Deadline) -> None:
        with self._lock:
            self._deadlines.discard(deadline)


@dataclass(frozen=True)
class CallScope:
    """One harness call: it must be over ``seconds`` after ``start`` (``perf_counter``).

    ``setting`` says where the bound comes from, for messages: ``"total_timeout_seconds=5"``,
    or how the default was reckoned.
    """

    start: float
    seconds: float
    setting: str
    interrupt: Interrupt | None = None
    explicit: bool = True
    """Whether the user set the bound. The default one is the sum of the attempts'
    ``timeout_seconds``: an attempt it ends says ``timeout_seconds``, the setting to raise."""

    @classmethod
    def starting_now(
        cls,
        seconds: float,
        setting: str,
        interrupt: Interrupt | None = None,
        *,
        explicit: bool = True,
    ) -> CallScope:
        """A scope of ``seconds`` from now; inside another one (a judge's call made by a
        check), it ends no later than that one and shares its interrupt."""
        outer = _SCOPE.get()
        scope = cls(time.perf_counter(), seconds, setting, interrupt, explicit)
        if outer is None:
            return scope
        if outer.end < scope.end:
            scope = replace(outer, interrupt=interrupt)
        if interrupt is None:
            scope = replace(scope, interrupt=outer.interrupt)
        return scope

    @property
    def end(self) -> float:
        return self.start + self.seconds

    def remaining(self) -> float:
        return max(self.end - time.perf_counter(), 0.0)

    @property
    def stopped(self) -> bool:
        return self.interrupt is not None and self.interrupt.stopped

    def sleep(self, seconds: float) -> bool:
        """Pause ``seconds``; ``False`` if the call was interrupted meanwhile."""
        if self.interrupt is None:
            time.sleep(seconds)
            return True
        return self.interrupt.sleep(seconds)

    def stopped_error(self, model: str, host: str) -> BackendTimeout:
        """The error of a call its interrupt stopped between two attempts."""
        reason = self.interrupt.reason if self.interrupt is not None else None
        return _stopped(f"{model!r} at {host}", reason or "interrupted")

    def message(self, model: str, host: str, timeout_seconds: float) -> str:
        """What an answer this scope ended says."""
        if not self.explicit:
            return timeout_message(model, host, timeout_seconds)
        return (
            f"no answer from {model!r} at {host} within timeout_seconds={timeout_seconds:g}: "
            f"the time for the whole call ran out ({self.setting}: every attempt and pause "
            "of one llm call); raise it with @pytest.mark.llm(total_timeout_seconds=...) "
            "or --llm-total-timeout"
        )


@contextmanager
def call_scope(scope: CallScope) -> Iterator[CallScope]:
    """Bound every :class:`Deadline` created inside (in this thread or context) by ``scope``."""
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def current_deadline() -> Deadline | None:
    """The deadline of the answer being read in this thread, if any (for the HTTP layer)."""
    return _DEADLINE.get()


def current_scope() -> CallScope | None:
    """The harness call this thread works for, if any (a host pool's wait for a slot)."""
    return _SCOPE.get()


class Deadline:
    """The time a whole answer may take, from now: ``timeout_seconds``, or less when the
    enclosing :class:`CallScope` ends sooner.

    Enter it around the HTTP work of one answer. Inside, the HTTP layer bounds each wait
    by :meth:`remaining` and registers with :meth:`on_expiry` what stops a read (shutting
    the socket); a watchdog thread runs it when the deadline passes, and an
    :class:`Interrupt` runs it at once (the body is checked at every chunk too). On the way
    out, an error raised after the deadline passed becomes the :class:`BackendTimeout`
    that names the bound; ``retry_after`` (set by the HTTP layer from a 429/503's
    ``Retry-After``) is handed to the :class:`BackendBusy` raised.
    """

    def __init__(
        self, *, model: str, host: str, timeout_seconds: float, session: bool = False
    ) -> None:
        """``session``: what is read serves the whole session (a model listing), so the
        call it happens in does not shorten it; an interrupt still stops it."""
        self.start = time.perf_counter()
        self._end = self.start + timeout_seconds
        self._message = timeout_message(model, host, timeout_seconds)
        self._where = f"{model!r} at {host}"
        scope = _SCOPE.get()
        self._interrupt = scope.interrupt if scope is not None else None
        if scope is not None and scope.end < self._end and not session:
            self._end = scope.end
            self._message = scope.message(model, host, timeout_seconds)
        self.retry_after: float | None = None
        self._lock = threading.Lock()
        self._stops: list[Callable[[], None]] = []
        self._alarm: _Alarm | None = None
        self._passed = False  # the watchdog or an interrupt ran the stops
        self._stopped: str | None = None  # why it was stopped before its time
        self._done = False
        self._token: object = None

    # --- time ------------------------------------------------------------------------------

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.start) * 1000

    def remaining(self) -> float:
        """Seconds left (0 once passed or stopped)."""
        if self._passed:
            return 0.0
        return max(self._end - time.perf_counter(), 0.0)

    @property
    def expired(self) -> bool:
        return self._passed or time.perf_counter() >= self._end

    def error(self) -> BackendTimeout:
        """The error of an answer this deadline ended: which bound ran out, or the interrupt."""
        if self._stopped is not None:
            return _stopped(self._where, self._stopped)
        return BackendTimeout(self._message)

    # --- stopping --------------------------------------------------------------------------

    def on_expiry(self, stop: Callable[[], None]) -> Callable[[], None]:
        """Run ``stop`` (quick, thread-safe: e.g. shut a socket) when the deadline passes or
        the call is interrupted, unless the returned function was called first. Runs it at
        once if that already happened."""
        with self._lock:
            if self._passed:
                run_now = True
            else:
                run_now = False
                self._stops.append(stop)
                if self._alarm is None and not self._done:
                    self._alarm = _WATCHDOG.arm(self._end, self._pass)
        if run_now:
            stop()

        def detach() -> None:
            with self._lock:
                if stop in self._stops:
                    self._stops.remove(stop)

        return detach

    def stop(self, reason: str) -> None:
        """End the answer now (an interrupt): its reads are cut, its error says ``reason``."""
        with self._lock:
            if self._stopped is None and not self._passed:
                self._stopped = reason
        self._pass()

    def _pass(self) -> None:
        with self._lock:  # detach() waits: a stop never runs after its read was closed
            if self._passed or self._done:
                return
            self._passed = True
            for stop in self._stops:
                stop()
            self._stops.clear()

    # --- the answer's extent ---------------------------------------------------------------

    def __enter__(self) -> Deadline:
        self._token = _DEADLINE.set(self)
        if self._interrupt is not None and not self._interrupt._add(self):
            self.stop(self._interrupt.reason or "interrupted")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _DEADLINE.reset(self._token)  # type: ignore[arg-type]
        if self._interrupt is not None:
            self._interrupt._discard(self)
        with self._lock:
            self._done = True
            self._stops.clear()
            alarm, self._alarm = self._alarm, None
        if alarm is not None:
            alarm.cancel()
        if isinstance(exc, BackendBusy) and self.retry_after is not None:
            exc.retry_after = self.retry_after
        if isinstance(exc, BackendError) and self.expired:  # whatever broke, time ran out
            raise self.error() from exc


def _stopped(where: str, reason: str) -> BackendTimeout:
    error = BackendTimeout(f"the call to {where} was stopped: the test was interrupted ({reason})")
    error.retryable = False  # nobody waits for its answer any more
    return error


class _Alarm:
    __slots__ = ("action", "cancelled", "when")

    def __init__(self, when: float, action: Callable[[], None]) -> None:
        self.when, self.action, self.cancelled = when, action, False

    def cancel(self) -> None:
        self.cancelled = True


class _Watchdog:
    """One daemon thread that runs each armed action at its time (``perf_counter``), unless
    cancelled: cheap to arm (a heap push), so every answer can have one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Alarm]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, when: float, action: Callable[[], None]) -> _Alarm:
        alarm = _Alarm(when, action)
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._order), alarm))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="pytest-llm-deadlines", daemon=True
                )
                self._thread.start()
            if self._heap[0][2] is alarm:
                self._cond.notify()
        return alarm

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.perf_counter()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                alarm = heapq.heappop(self._heap)[2]
            if not alarm.cancelled:
                with contextlib.suppress(Exception):  # a stop must never kill the watchdog
                    alarm.action()


_WATCHDOG = _Watchdog()
