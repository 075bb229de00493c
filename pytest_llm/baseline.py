"""The baseline gate: this run's JSON report against an earlier one (say, main's).

A *regression* fails the session:

* **now failing**: a test that passed in the baseline now fails or errors;
* **score drop**: a test's mean score fell by more than ``max_score_drop``
  (an absolute amount on the [0, 1] scale: 0.1 allows 0.90 → 0.80);
* **latency**: a model's p50 latency grew by more than ``max_latency_factor``
  (a ratio: 2.0 allows 250 ms → 500 ms) *and* by more than ``latency_floor_ms``
  (an absolute amount: 1 ms → 5 ms is noise, not a regression). Latency is compared
  per model, over all of its calls, because one call is too noisy to judge, and on
  the model's own time where both runs have it (:data:`LATENCY_BASES`): the server's
  durations (Ollama's prompt evaluation and generation, which leave out the wait for
  a free slot), else the time from the first token to the last measured here
  (queueing and the prompt happen before the first token), else the whole call.
  The regression names the figure it used.

Tests that are new or gone are listed, never failed. Both sides are report
documents as :mod:`pytest_llm.report` writes them; this module only compares,
the report module renders.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_LIMITS", "LATENCY_BASES", "Comparison", "Limits", "Regression", "compare"]

_FAILING = ("failed", "error")
_KINDS = ("now failing", "score drop", "latency")  # the order regressions are listed in
#: The per-model latency figures the gate can compare, best first: (figure, name shown).
LATENCY_BASES = (
    ("p50_server_ms", "server time"),
    ("p50_decode_ms", "first to last token"),
    ("p50_ms", "whole call"),
)


@dataclass(frozen=True, kw_only=True)
class Limits:
    """How much worse than the baseline a run may be before the gate fails it."""

    max_score_drop: float = 0.1
    max_latency_factor: float = 2.0
    latency_floor_ms: float = 50.0

    def __post_init__(self) -> None:
        floor = self.latency_floor_ms
        if math.isnan(floor) or math.isinf(floor) or floor < 0:
            raise ValueError(f"latency_floor_ms={floor!r}: expected a number of ms >= 0, e.g. 50")
        drop, factor = self.max_score_drop, self.max_latency_factor
        if math.isnan(drop) or not 0.0 <= drop <= 1.0:
            raise ValueError(f"max_score_drop={drop!r}: expected a number in [0, 1], e.g. 0.1")
        if math.isnan(factor) or factor < 1.0:
            raise ValueError(f"max_latency_factor={factor!r}: expected a number >= 1, e.g. 2")


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, kw_only=True)
class Regression:
    """One reason the gate fails. ``subject`` is a test node id, or a model for latency."""

    kind: str
    subject: str
    before: str
    now: str
    limit: str


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """The outcome of :func:`compare`."""

    baseline: str
    """Where the baseline came from (a path), for messages."""
    limits: Limits
    regressions: tuple[Regression, ...] = ()
    new: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    tests: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """The baseline's test records by node id (the HTML report shows them side by side)."""
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """The baseline's per-model figures."""

    @property
    def failed(self) -> bool:
        return bool(self.regressions)


def _latencies(
    before: Mapping[str, Any], now: Mapping[str, Any]
) -> tuple[str, float | None, float | None]:
    """The best latency figure both runs have for a model: (its name, before, now)."""
    for key, name in LATENCY_BASES:
        if before.get(key) and now.get(key) is not None:  # 0 ms before: nothing to scale
            return name, before[key], now[key]
    return LATENCY_BASES[-1][1], before.get("p50_ms"), now.get("p50_ms")


def compare(
    baseline: Mapping[str, Any],
    current: Mapping[str, Any],
    limits: Limits = DEFAULT_LIMITS,
    *,
    source: str = "baseline",
) -> Comparison:
    """Compare two report documents (``baseline`` first) under ``limits``."""
    before = {t["nodeid"]: t for t in baseline["tests"]}
    now = {t["nodeid"]: t for t in current["tests"]}
    regressions: list[Regression] = []
    for nodeid, test in now.items():
        old = before.get(nodeid)
        if old is None:
            continue
        if old["outcome"] == "passed" and test["outcome"] in _FAILING:
            regressions.append(
                Regression(
                    kind="now failing",
                    subject=nodeid,
                    before="passed",
                    now=test["outcome"],
                    limit="must pass",
                )
            )
        old_score, new_score = old.get("score"), test.get("score")
        if old_score is not None and new_score is not None:
            drop = old_score - new_score
            if drop > limits.max_score_drop + 1e-9:
                regressions.append(
                    Regression(
                        kind="score drop",
                        subject=nodeid,
                        before=f"{old_score:.2f}",
                        now=f"{new_score:.2f} (-{drop:.2f})",
                        limit=f"drop <= {limits.max_score_drop:g}",
                    )
                )
    old_models, new_models = baseline.get("models", {}), current.get("models", {})
    for model, figures in sorted(new_models.items()):
        basis, old_p50, new_p50 = _latencies(old_models.get(model, {}), figures)
        if (
            old_p50
            and new_p50 is not None
            and new_p50 / old_p50 > limits.max_latency_factor
            and new_p50 - old_p50 > limits.latency_floor_ms
        ):
            regressions.append(
                Regression(
                    kind="latency",
                    subject=f"{model} p50 {basis}",
                    before=f"{old_p50:.0f} ms",
                    now=f"{new_p50:.0f} ms (x{new_p50 / old_p50:.1f})",
                    limit=f"x{limits.max_latency_factor:g} and +{limits.latency_floor_ms:g} ms",
                )
            )
    return Comparison(
        baseline=source,
        limits=limits,
        regressions=tuple(sorted(regressions, key=lambda r: (_KINDS.index(r.kind), r.subject))),
        new=tuple(sorted(set(now) - set(before))),
        removed=tuple(sorted(set(before) - set(now))),
        tests=before,
        models=old_models,
    )
