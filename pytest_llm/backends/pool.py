"""Host pools: several servers of one model used as one, the way a load balancer does.

``--llm-host=http://gpu1:11434#4,http://gpu2:11434#2`` names a pool of two servers with
4 and 2 slots (``URL#N``; a host without ``#N`` has 1 slot, as an Ollama started with the
default ``OLLAMA_NUM_PARALLEL=1``). Three objects:

* :class:`HostPool`, one per pytest process: the slots, the health and the choice of a
  host. Every call takes a slot on the least-loaded healthy host (its share of busy slots;
  among equals the host that served least, so sequential tests take turns) and gives it
  back at its end, so no host ever has more calls in flight than it has slots. Under
  pytest-xdist the slots are also lock files in a directory the controller shares with its
  workers (``fcntl.flock``: a crashed worker's locks go with it), so the sum over every
  worker never exceeds them either; on a platform without ``flock`` each worker gets its
  share of every host's slots instead (:func:`worker_share`). Waiting for a free slot is
  bounded by the call's time (its ``CallScope``, else ``timeout_seconds``).
* Health: a host that refuses connections, times out (a whole ``timeout_seconds``), or
  answers 5xx/429 or breaks its answer :data:`DOWN_AFTER` times in a row is *down* for
  ``cooldown_seconds``; then it is tried again (a success makes it healthy, one more
  failure puts it down again). What it cost is kept for the report: the reason, the
  error, how often, and which tests had calls moved away from it.
* :class:`PooledBackend`, a ``Backend`` over the pool for one test: a call that fails on
  a host for one of those reasons moves to another healthy host at once, within the
  call's deadline; each move is a transport retry of the call (see :func:`on_move`). Only
  when no host is left does the call fail, with an error that names every host and why
  it is out.

Which host answered never enters an answer, its cassette or its model identity: every
host of a pool serves the same model, and the identity is asked of the pool (the first
healthy host that tells one).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..config import public_host
from ..errors import (
    BackendBusy,
    BackendError,
    BackendResponseError,
    BackendTimeout,
    BackendUnreachable,
)
from ..result import Completion
from .deadline import Deadline, current_scope

if TYPE_CHECKING:
    from . import Backend, ChatRequest

__all__ = [
    "DEFAULT_COOLDOWN_SECONDS",
    "DOWN_AFTER",
    "HostPool",
    "PooledBackend",
    "failure_reason",
    "on_move",
    "worker_share",
]

T = TypeVar("T")

#: Failures in a row (refused, timed out, 5xx) after which a host is marked down.
DOWN_AFTER = 2
#: Seconds a host that is down is left alone before it is tried again.
DEFAULT_COOLDOWN_SECONDS = 30.0
#: How often a call waiting for a slot looks again (other workers free theirs silently).
_POLL = 0.02
#: Whether slots can be lock files shared by processes (not on Windows, where each xdist
#: worker gets its share of every host's slots instead).
_HAS_FLOCK = importlib.util.find_spec("fcntl") is not None

_ON_MOVE: ContextVar[Callable[[str, float], None] | None] = ContextVar(
    "pytest_llm_pool_on_move", default=None
)


@contextlib.contextmanager
def on_move(report: Callable[[str, float], None]) -> Iterator[None]:
    """Within, each call the pool moves from a failing host to another is told to
    ``report(error, duration_ms)``: the harness records it as a transport retry."""
    token = _ON_MOVE.set(report)
    try:
        yield
    finally:
        _ON_MOVE.reset(token)


def failure_reason(error: BackendError, elapsed_s: float, timeout_seconds: float) -> str | None:
    """Why ``error`` counts against its host's health (``None``: it does not).

    ``refused the connection``; ``timed out`` (only when the host had the whole
    ``timeout_seconds``: an answer the call's own time cut short says nothing about the
    host); ``answered 503`` (any 5xx, and 429); ``broke the answer`` (a dropped connection,
    an error mid-stream).
    A missing model, refused credentials, a 4xx or an interrupted test are not the host's
    health: those errors end the call as they would without a pool.
    """
    if isinstance(error, BackendUnreachable):
        return "refused the connection"
    if isinstance(error, BackendTimeout):
        whole = elapsed_s >= timeout_seconds * 0.95
        return "timed out" if error.retryable and whole else None
    if isinstance(error, BackendResponseError) and error.retryable:
        status = error.status_code
        if status is None:
            return "broke the answer"
        if status >= 500 or isinstance(error, BackendBusy):
            return f"answered {status}"
    return None


def worker_share(slots: int, workers: int, index: int) -> int:
    """Worker ``index``'s share of a host's ``slots`` among ``workers`` (the shares add up
    to ``slots``; a worker may get none)."""
    return slots // workers + (1 if index < slots % workers else 0)


@dataclass(eq=False)
class _Host:
    url: str
    slots: int
    index: int
    held: list[bool] = field(default_factory=list)
    served: int = 0
    peak: int = 0
    failures: int = 0
    """Failures in a row (a success resets them)."""
    failed: int = 0
    down_until: float = 0.0
    downs: int = 0
    reason: str | None = None
    message: str | None = None
    moved: dict[str, None] = field(default_factory=dict)
    files: list[int] = field(default_factory=list)
    """One lock file per slot (shared with the other xdist workers), or none."""

    def __post_init__(self) -> None:
        self.held = [False] * self.slots

    @property
    def in_use(self) -> int:
        return sum(self.held)

    def up(self, now: float) -> bool:
        return self.slots > 0 and self.down_until <= now


class _NoSlot(Exception):
    """Every healthy host's slots are taken and the wait for one ran out."""


@dataclass(eq=False)
class Lease:
    """A slot held on ``url`` until :meth:`release`."""

    pool: HostPool
    host: _Host
    index: int

    @property
    def url(self) -> str:
        return self.host.url

    def release(self) -> None:
        self.pool._release(self.host, self.index)


class HostPool:
    """The hosts of a pool in one process: slots, health and the choice of a host.

    ``hosts`` are ``(url, slots)`` pairs. ``slot_dir`` is the directory of the run's slot
    lock files, shared by the xdist workers (``None``: the slots count in this process
    only). ``worker`` is ``(index, count)`` of this xdist worker: where ``flock`` is
    missing, it gets its :func:`worker_share` of each host's slots instead.
    """

    def __init__(
        self,
        hosts: Sequence[tuple[str, int]],
        *,
        cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS,
        slot_dir: Path | None = None,
        worker: tuple[int, int] | None = None,
    ) -> None:
        if not hosts:
            raise ValueError("a host pool needs at least one host")
        self.name = hosts[0][0]
        """The pool as a test's configuration names it: its first host."""
        self.cooldown_seconds = cooldown_seconds
        shared = slot_dir is not None and _HAS_FLOCK
        divided = worker is not None and slot_dir is not None and not shared
        self._hosts = [
            _Host(
                url, worker_share(slots, worker[1], worker[0]) if divided and worker else slots, i
            )
            for i, (url, slots) in enumerate(hosts)
        ]
        self._by_url = {h.url: h for h in self._hosts}
        self._cond = threading.Condition()
        self._served_tests: dict[str, str] = {}
        self._test_moves: dict[str, dict[str, dict[str, Any]]] = {}
        self._identities: dict[tuple[str, str], str] = {}
        self.shared = shared
        if shared and slot_dir is not None:
            for host in self._hosts:
                key = hashlib.sha256(host.url.encode()).hexdigest()[:16]
                host.files = [
                    os.open(slot_dir / f"{key}-{i}.lock", os.O_RDWR | os.O_CREAT, 0o600)
                    for i in range(host.slots)
                ]

    @property
    def urls(self) -> list[str]:
        return [h.url for h in self._hosts]

    # --- slots ----------------------------------------------------------------------------

    def acquire(self, wait: Deadline, exclude: Collection[str] = ()) -> Lease:
        """A slot on the least-loaded healthy host not in ``exclude``.

        Waits while every slot is taken until ``wait`` passes (then ``_NoSlot``). No healthy
        host left: ``BackendUnreachable`` naming each host and why it is out.
        """
        with self._cond:
            while True:
                now = time.monotonic()
                usable = [h for h in self._hosts if h.url not in exclude and h.up(now)]
                if not usable:
                    error = BackendUnreachable(self._none_left(exclude, {}))
                    error.host = ",".join(map(public_host, self.urls))
                    raise error
                taken = self._take(usable)
                if taken is not None:
                    return Lease(self, *taken)
                if wait.expired:
                    raise _NoSlot(self._busy(usable))
                self._cond.wait(min(wait.remaining(), _POLL))

    def _take(self, usable: list[_Host]) -> tuple[_Host, int] | None:
        """A free slot on the least-loaded of ``usable`` (the lock held), or ``None``."""
        offers: list[tuple[float, float, int, _Host, int]] = []
        for host in usable:
            free, first = 0, -1
            for i, held in enumerate(host.held):
                if held or not self._lock_file(host, i):
                    continue
                free += 1
                if first < 0:
                    first = i
                else:
                    self._unlock_file(host, i)  # only counted: another worker may take it
            if first >= 0:
                load = 1 - free / host.slots
                offers.append((load, host.served / host.slots, host.index, host, first))
        if not offers:
            return None
        offers.sort(key=lambda o: o[:3])
        _, _, _, best, index = offers[0]
        for _, _, _, other, i in offers[1:]:
            self._unlock_file(other, i)
        best.held[index] = True
        best.served += 1
        best.peak = max(best.peak, best.in_use)
        return best, index

    def _release(self, host: _Host, index: int) -> None:
        with self._cond:
            host.held[index] = False
            self._unlock_file(host, index)
            self._cond.notify_all()

    @staticmethod
    def _lock_file(host: _Host, index: int) -> bool:
        if not host.files:
            return True
        import fcntl

        try:
            fcntl.flock(host.files[index], fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    @staticmethod
    def _unlock_file(host: _Host, index: int) -> None:
        if host.files:
            import fcntl

            fcntl.flock(host.files[index], fcntl.LOCK_UN)

    def _busy(self, usable: list[_Host]) -> str:
        where = ", ".join(f"{public_host(h.url)} ({h.slots} slot(s))" for h in usable)
        others = ", with the other xdist workers" if self.shared else ""
        return f"every slot was busy{others}: {where}"

    # --- health ---------------------------------------------------------------------------

    def succeeded(self, url: str, test: str | None) -> None:
        with self._cond:
            host = self._by_url[url]
            host.failures, host.down_until = 0, 0.0
            if test is not None:
                self._served_tests[test] = url

    def failed(self, url: str, reason: str, error: BackendError) -> None:
        """Count a failure of ``url``; the :data:`DOWN_AFTER`-th in a row marks it down."""
        with self._cond:
            host = self._by_url[url]
            host.failures += 1
            host.failed += 1
            host.reason, host.message = reason, _first_line(str(error))
            if host.failures >= DOWN_AFTER:
                host.down_until = time.monotonic() + self.cooldown_seconds
                host.downs += 1
                self._cond.notify_all()

    def moved(self, url: str, test: str | None) -> None:
        """``test`` had a call moved away from ``url`` (after :meth:`failed`)."""
        if test is None:
            return
        with self._cond:
            host = self._by_url[url]
            host.moved[test] = None
            down = host.down_until > time.monotonic()
            moves = self._test_moves.setdefault(test, {})
            moves[url] = {"host": url, "reason": host.reason, "message": host.message, "down": down}

    def usable(self, exclude: Collection[str]) -> bool:
        """Whether a host outside ``exclude`` is up (so that a failed call can move)."""
        now = time.monotonic()
        with self._cond:
            return any(h.up(now) and h.url not in exclude for h in self._hosts)

    def none_left(self, errors: dict[str, str]) -> str:
        """Why no host can take a call: every host and what put it out (``errors``: the
        hosts this call failed on, with why)."""
        with self._cond:
            return self._none_left(errors, errors)

    def _none_left(self, tried: Collection[str], errors: dict[str, str]) -> str:
        now = time.monotonic()
        parts = []
        for h in self._hosts:
            why = errors.get(h.url) or (h.reason if h.down_until > now else None)
            if h.down_until > now:
                why = f"{why} (down, tried again in {h.down_until - now:.0f} s)"
            elif h.slots == 0:
                why = "has no slot for this xdist worker"
            elif why is None and h.url in tried:
                why = "failed this call"
            if why is not None:
                parts.append(f"{public_host(h.url)} {why}")
        return (
            f"no healthy host left in the pool of {len(self._hosts)}: "
            + ", ".join(parts)
            + ". Start the servers, or fix --llm-host"
        )

    def served(self, test: str, *, forget: bool = False) -> tuple[str | None, list[dict[str, Any]]]:
        """What the pool did for ``test``: the host that answered its last call through the
        pool, and its moves, one per host it moved away from (``host``, ``reason``,
        ``message``, ``down``: whether that host was marked down). ``forget``: at the
        test's end, so that memory does not grow with the run."""
        with self._cond:
            if forget:
                host = self._served_tests.pop(test, None)
                moves = self._test_moves.pop(test, {})
            else:
                host = self._served_tests.get(test)
                moves = self._test_moves.get(test, {})
            return host, [dict(m) for m in moves.values()]

    def health(self) -> dict[str, dict[str, Any]]:
        """The hosts that failed calls: ``{url: {"reason", "message", "downs", "failures",
        "moved"}}``: the last failure's reason and error, how often the host was marked
        down, its failed requests, and the tests with calls moved away from it (sorted)."""
        with self._cond:
            return {
                h.url: {
                    "reason": h.reason,
                    "message": h.message,
                    "downs": h.downs,
                    "failures": h.failed,
                    "moved": sorted(h.moved),
                }
                for h in self._hosts
                if h.failed
            }

    def figures(self) -> dict[str, dict[str, int]]:
        """Per host: its slots (for this process), the requests it took, the most at once."""
        with self._cond:
            return {
                h.url: {"slots": h.slots, "requests": h.served, "peak": h.peak} for h in self._hosts
            }

    # --- identity -------------------------------------------------------------------------

    def identity(self, kind: str, model: str, ask: Callable[[str], str | None]) -> str | None:
        """``model``'s digest, asked of the hosts in order (those up first) until one tells;
        then remembered, so that it never depends on which host answered a call."""
        known = self._identities.get((kind, model))
        if known is not None:
            return known
        now = time.monotonic()
        with self._cond:
            order = sorted(self._hosts, key=lambda h: (not h.up(now), h.index))
        failure: BackendError | None = None
        for host in order:
            try:
                digest = ask(host.url)
            except BackendError as exc:
                failure = exc
                continue
            if digest:
                self._identities[(kind, model)] = digest
                return digest
        if failure is not None and len(order) == 1:
            raise failure
        return None

    def close(self) -> None:
        with self._cond:
            for host in self._hosts:
                for fd in host.files:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                host.files = []


def make_slot_dir() -> Path:
    """A new directory for the run's slot lock files (made by the xdist controller)."""
    return Path(tempfile.mkdtemp(prefix="pytest-llm-slots-"))


def remove_slot_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class PooledBackend:
    """A ``Backend`` over a :class:`HostPool` for one test: each request goes to the host
    the pool picks and moves to another when that one fails (see the module docstring)."""

    def __init__(
        self,
        pool: HostPool,
        backend_for: Callable[[str], Backend],
        *,
        name: str,
        timeout_seconds: float,
        test: str | None = None,
    ) -> None:
        self.name = name
        self.host = pool.name
        self.timeout_seconds = timeout_seconds
        self._pool = pool
        self._backend_for = backend_for
        self._test = test

    def chat(self, request: ChatRequest) -> Completion:
        return self._failover(request.model, lambda backend: backend.chat(request))

    def embed(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        return self._failover(model, lambda backend: backend.embed(model, texts))

    def digest(self, model: str) -> str | None:
        return self._pool.identity(
            self.name, model, lambda url: self._backend_for(url).digest(model)
        )

    def size(self, model: str) -> tuple[str, str] | None:
        """The model's size as the first host that answers tells it (``/api/show``)."""
        for url in self._pool.urls:
            sizer = getattr(self._backend_for(url), "size", None)
            if sizer is None:
                return None
            try:
                size: tuple[str, str] | None = sizer(model)
            except BackendError:
                continue
            return size
        return None

    def close(self) -> None:
        """Nothing to do: the hosts' backends belong to the session's ``BackendPool``."""

    def _failover(self, model: str, call: Callable[[Backend], T]) -> T:
        """``call`` on a pooled host, moving to the next healthy one while hosts fail."""
        errors: dict[str, str] = {}
        while True:
            lease = self._lease(model, errors)
            started = time.perf_counter()
            try:
                result = call(self._backend_for(lease.url))
            except BackendError as exc:
                exc.host = lease.url
                elapsed = time.perf_counter() - started
                reason = failure_reason(exc, elapsed, self.timeout_seconds)
                if reason is None:
                    raise
                self._pool.failed(lease.url, reason, exc)
                errors[lease.url] = reason
                if not self._pool.usable(errors):
                    raise self._exhausted(exc, errors) from exc
                self._pool.moved(lease.url, self._test)
                report = _ON_MOVE.get()
                if report is not None:
                    report(f"{exc} (moved to another host of the pool)", elapsed * 1000)
                continue
            finally:
                lease.release()
            self._pool.succeeded(lease.url, self._test)
            return result

    def _lease(self, model: str, errors: dict[str, str]) -> Lease:
        """A slot, waiting at most what is left of the call (else ``timeout_seconds``)."""
        scope = current_scope()
        seconds = self.timeout_seconds if scope is None else scope.seconds
        with Deadline(model=model, host=self.host, timeout_seconds=seconds) as wait:
            try:
                return self._pool.acquire(wait, errors)
            except _NoSlot as exc:
                busy = str(exc)
        stopped = wait.error()
        if not stopped.retryable:  # the test was interrupted
            raise stopped
        raise BackendTimeout(
            f"no free slot for {model!r} in the host pool within {wait.elapsed_ms() / 1000:.1f} "
            f"s, the time of the call: {busy}. Declare the slots the servers have "
            "(--llm-host=URL#N), lower concurrency or -n, or allow more time "
            "(timeout_seconds, total_timeout_seconds)"
        )

    def _exhausted(self, last: BackendError, errors: dict[str, str]) -> BackendError:
        """The error of a call no host is left for: ``last`` itself in a pool of one, else
        one of its kind that names every host and why it is out."""
        if len(self._pool.urls) == 1:
            return last
        message = self._pool.none_left(errors)
        error: BackendError
        if isinstance(last, BackendResponseError):
            error = type(last)(message, status_code=last.status_code)
        elif isinstance(last, BackendTimeout):
            error = BackendTimeout(message)
        else:
            error = BackendUnreachable(message)
        error.retryable = last.retryable
        error.host = ",".join(map(public_host, self._pool.urls))
        return error


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= 300 else line[:297] + "..."
