"""What the side-by-side benchmarks share: a FakeOllama in its own process, and a loop that
alternates the compared calls one by one so machine noise hits every side alike."""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pytest_llm.testing import FakeOllama


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
        yield parent.recv()
    finally:
        parent.send("stop")
        server.join(10)


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
