"""Every benchmark ``python -m bench`` runs, in table order: one line each.

An entry names a module of this package and its function ``rows(settings) -> list[Row]``
(``bench._report.Settings`` in, ``bench._report.Row`` out, verdicts ``None`` in smoke
mode). Adding a benchmark is writing that function and adding its line here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Benchmark:
    name: str
    """What ``--only`` selects."""
    target: str
    """``module:function`` in this package."""


BENCHMARKS: list[Benchmark] = [
    Benchmark("dataset", "bench.dataset:rows"),
    Benchmark("parallel", "bench.parallel:rows"),
    Benchmark("overhead", "bench.overhead:rows"),
    Benchmark("proxy", "bench.proxy_overhead:rows"),
    Benchmark("replay", "bench.replay:rows"),
    Benchmark("startup", "bench.import_time:rows"),
    Benchmark("memory", "bench.replay:memory_rows"),
]
