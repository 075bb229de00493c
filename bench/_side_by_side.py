"""What the side-by-side benchmarks share: a FakeOllama in its own process, a loop that
alternates the compared calls one by one so machine noise hits every side alike, and
bounded subprocess sessions measured for wall time, CPU time and peak memory."""

from __future__ import annotations

import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_llm.testing import FakeOllama


class BenchError(Exception):
    """A benchmark could not measure (a session failed, a tool is missing): the reason."""


def _serve(conn: Any, replies: Any, options: dict[str, Any]) -> None:
    with FakeOllama(replies, **options) as fake:
        conn.send(fake.url)
        conn.recv()  # until the parent is done


@contextmanager
def fake_in_subprocess(replies: Any, **options: Any) -> Iterator[str]:
    """A FakeOllama in its own process (it does not share the GIL with the clients); its URL."""
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=_serve, args=(child, replies, options), daemon=True)
    server.start()
    try:
        if not parent.poll(30):
            raise BenchError("the FakeOllama process did not start within 30 s")
        yield parent.recv()
    finally:
        parent.send("stop")
        server.join(10)
        if server.is_alive():
            server.kill()


def alternate(
    sides: dict[str, Callable[[], object]], *, calls: int, rounds: int, warmup: int = 20
) -> dict[str, float]:
    """Median over ``rounds`` of each side's ms per call, the sides called in turn."""
    for _ in range(warmup):  # connections opened, imports done
        for call in sides.values():
            call()
    per_round: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        spent = dict.fromkeys(sides, 0.0)
        for _ in range(calls):
            for name, call in sides.items():
                start = time.perf_counter()
                call()
                spent[name] += time.perf_counter() - start
        for name in sides:
            per_round[name].append(spent[name] / calls * 1000)
    return {name: statistics.median(values) for name, values in per_round.items()}


@dataclass(frozen=True)
class Session:
    """One finished subprocess: its wall time, CPU time (user + sys, its reaped children
    included) and peak resident memory, and what it printed."""

    wall_s: float
    cpu_s: float
    max_rss_mib: float
    stdout: str
    stderr: str


def run(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    what: str = "the session",
) -> Session:
    """Run ``args`` to its end (killed after ``timeout`` seconds); a non-zero exit or a
    timeout is a :class:`BenchError` showing the end of its output."""
    out_path, err_path = cwd / ".bench-stdout", cwd / ".bench-stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        process = subprocess.Popen(
            list(args), cwd=cwd, env=None if env is None else dict(env), stdout=out, stderr=err
        )
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    stdout = out_path.read_text(errors="replace")
    stderr = err_path.read_text(errors="replace")
    if process.returncode != 0:
        shown = (stdout[-3000:] + "\n" + stderr[-2000:]).strip()
        if wall >= timeout:
            raise BenchError(f"{what} did not finish within {timeout:.0f} s and was killed")
        raise BenchError(f"{what} exited with {process.returncode}:\n{shown}")
    return Session(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_mib=usage.ru_maxrss / 1024,  # KiB on Linux
        stdout=stdout,
        stderr=stderr,
    )


def pytest_args(*options: str) -> list[str]:
    """``python -m pytest`` in this interpreter, quiet, with no cache directory written and
    without pytest-sugar (a terminal reporter that may be installed, with its own cost)."""
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:sugar",
            *options]  # fmt: skip


#: Where the sessions' bytecode goes: compiled once, as an installed package has its ``.pyc``
#: (this includes pytest's assertion-rewritten modules), without writing into the tree.
PYCACHE = Path.home() / ".cache" / "pytest-llm" / "pycache"


def quiet_env(**extra: str) -> dict[str, str]:
    """This environment, without variables that would point the plugin elsewhere, and with
    bytecode cached under :data:`PYCACHE` even where ``PYTHONDONTWRITEBYTECODE`` is set (a
    session that compiles every module from source measures the compiler, not the code)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "PYTEST_"))}
    for name in ("OPENAI_BASE_URL", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    return {**env, "PYTHONPYCACHEPREFIX": str(PYCACHE), **extra}


def closed_port_url() -> str:
    """The URL of a loopback port nothing listens on (a server that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def chat_calls(fake: FakeOllama) -> int:
    """How many chat (or generate) requests ``fake`` has received, on either API."""
    paths = ("/api/chat", "/api/generate", "/v1/chat/completions")
    return sum(1 for request in fake.requests if request.path in paths)
