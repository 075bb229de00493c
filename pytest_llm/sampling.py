"""Sampling: one prompt, n independent calls, a pass rate with its 95% Wilson interval.

:meth:`pytest_llm.Harness.sample` runs the calls (each with its own seed and cassette
key) through :func:`run_samples`, which stops as soon as the verdict "at least
``min_pass_rate`` of n pass" can no longer change, and wraps them in a
:class:`SampleResult`. The run report (:mod:`pytest_llm.report`) prints the rates at
the end of the run, in its ``llm sampling`` section.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from . import properties
from .config import HarnessConfig
from .result import LLMResult

__all__ = [
    "Sample",
    "SampleResult",
    "describe",
    "ignored_settings",
    "required_passes",
    "run_samples",
    "verdict",
    "wilson_interval",
]

#: The two-sided 95% normal quantile.
Z_95 = 1.959963984540054
#: The ``user_properties`` name under which a test's sampling summaries travel.
PROPERTY = properties.SAMPLES


def wilson_interval(passes: int, runs: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a pass rate (95% by default); ``(0, 1)`` with no runs.

    Unlike ``p ± z·sqrt(p(1-p)/n)`` it stays inside [0, 1] and does not collapse to a
    point at 0/n or n/n, which matters for the handful of samples a test can afford.
    """
    if not 0 <= passes <= runs:
        raise ValueError(f"passes must lie in [0, runs], got {passes}/{runs}")
    if runs == 0:
        return 0.0, 1.0
    p = passes / runs
    z2 = z * z
    denominator = 1 + z2 / runs
    centre = (p + z2 / (2 * runs)) / denominator
    half = z * math.sqrt(p * (1 - p) / runs + z2 / (4 * runs * runs)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def required_passes(n: int, min_pass_rate: float) -> int:
    """How many of ``n`` samples must pass for a pass rate of at least ``min_pass_rate``."""
    return math.ceil(n * min_pass_rate - 1e-9)  # 0.6 * 5 is 3.0000000000000004


def verdict(passes: int, failures: int, n: int, min_pass_rate: float) -> bool | None:
    """The verdict over ``n`` if ``passes`` and ``failures`` already settle it, else None."""
    need = required_passes(n, min_pass_rate)
    if passes >= need:
        return True
    if failures > n - need:
        return False
    return None


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One sampled call: its result, whether it passed, and why not."""

    index: int
    result: LLMResult
    passed: bool
    reason: str | None = None


def run_samples(
    n: int,
    run_one: Callable[[int], Sample],
    *,
    concurrency: int,
    min_pass_rate: float,
    stop_early: bool = True,
) -> list[Sample]:
    """Run ``run_one(0) … run_one(n-1)``, at most ``concurrency`` at once, in index order.

    Which samples run depends on their answers only, never on timing, so a recording
    replays exactly: sample ``i`` starts once samples ``0 … i-concurrency`` have ended,
    and, with ``stop_early``, only while the verdict over that prefix is still open.
    (Deciding by the order in which samples *finish* would make a replay ask for
    samples the recording never made.) Samples already running when the verdict
    becomes certain finish and count: the same ones, live or replayed. The exception
    of the lowest-numbered failing sample propagates after the running samples end.
    Returns the samples sorted by index.
    """
    finished: dict[int, Sample] = {}
    errors: dict[int, BaseException] = {}
    started = prefix = 0  # prefix: samples 0 … prefix-1 have all ended
    decided_at: int | None = None  # the shortest prefix whose verdict is certain
    with ThreadPoolExecutor(
        max_workers=min(concurrency, n), thread_name_prefix="llm-sample"
    ) as pool:
        running: dict[Future[Sample], int] = {}
        while True:
            while (
                started < n
                and started < prefix + concurrency
                and (decided_at is None or started < decided_at + concurrency - 1)
                and not errors
            ):
                # the caller's context travels along (the active harness, for model scorers)
                future = pool.submit(contextvars.copy_context().run, run_one, started)
                running[future] = started
                started += 1
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                index = running.pop(future)
                error = future.exception()
                if error is None:
                    finished[index] = future.result()
                else:
                    errors[index] = error
            while prefix in finished:
                prefix += 1
                passes = sum(finished[i].passed for i in range(prefix))
                certain = verdict(passes, prefix - passes, n, min_pass_rate) is not None
                if stop_early and decided_at is None and certain:
                    decided_at = prefix
    if errors:
        raise errors[min(errors)]
    return [finished[i] for i in sorted(finished)]


@dataclass(frozen=True, kw_only=True)
class SampleResult:
    """What :meth:`pytest_llm.Harness.sample` found: every sample run and the verdict.

    ``rate`` and ``interval`` are over the samples that ran (``runs``), which is fewer
    than ``n`` when sampling stopped early; ``passed`` is the verdict over ``n``,
    which early stopping never changes.
    """

    samples: tuple[Sample, ...]
    n: int
    min_pass_rate: float

    @property
    def results(self) -> tuple[LLMResult, ...]:
        return tuple(s.result for s in self.samples)

    @property
    def runs(self) -> int:
        return len(self.samples)

    @property
    def passes(self) -> int:
        return sum(s.passed for s in self.samples)

    @property
    def failures(self) -> tuple[Sample, ...]:
        return tuple(s for s in self.samples if not s.passed)

    @property
    def rate(self) -> float:
        return self.passes / self.runs if self.runs else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        """The 95% Wilson interval of the pass rate."""
        return wilson_interval(self.passes, self.runs)

    @property
    def stopped_early(self) -> bool:
        return self.runs < self.n

    @property
    def passed(self) -> bool:
        return self.passes >= required_passes(self.n, self.min_pass_rate)

    @property
    def scores(self) -> list[float | None]:
        return [s.result.score for s in self.samples]

    def summary(self) -> dict[str, Any]:
        """The JSON-friendly record carried in the test report (``llm_samples``)."""
        low, high = self.interval
        return {
            "model": self.samples[0].result.model if self.samples else None,
            "n": self.n,
            "runs": self.runs,
            "passes": self.passes,
            "rate": round(self.rate, 6),
            "interval": [round(low, 6), round(high, 6)],
            "min_pass_rate": self.min_pass_rate,
            "passed": self.passed,
            "stopped_early": self.stopped_early,
            "scores": self.scores,
        }

    def __str__(self) -> str:
        return describe(self.summary())


def describe(summary: Mapping[str, Any]) -> str:
    """``3/5 samples passed: pass rate 60% (95% CI 23%-88%), min_pass_rate 80%``."""
    runs, n = summary["runs"], summary["n"]
    low, high = summary["interval"]
    early = f" (stopped early: {runs} of n={n} ran, the verdict was certain)" if runs < n else ""
    return (
        f"{summary['passes']}/{runs} samples passed{early}: pass rate {summary['rate']:.0%} "
        f"(95% CI {low:.0%}-{high:.0%}), min_pass_rate {summary['min_pass_rate']:.0%}"
    )


def ignored_settings(config: HarnessConfig, *, called: bool, sampled: bool) -> str | None:
    """Why a test's ``samples``/``min_pass_rate`` went unused, or ``None`` if they did not.

    They shape ``llm.sample`` only: a test that sets them and then calls ``llm.chat`` alone
    gets one answer per call and no pass rate, which must not pass for a sampled verdict.
    """
    if sampled or not called or (config.samples == 1 and config.min_pass_rate == 1.0):
        return None
    return (
        f"this test sets samples={config.samples}, min_pass_rate={config.min_pass_rate:g}, "
        "but it only called llm.chat(), which makes one call and ignores both: no pass rate "
        "was measured. Call llm.sample(prompt, check=...) (it makes `samples` calls and "
        "requires `min_pass_rate` of them to pass), or remove samples/min_pass_rate from "
        "the test's @pytest.mark.llm"
    )
