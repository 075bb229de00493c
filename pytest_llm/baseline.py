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

* **capability** (the model ladder, :mod:`pytest_llm.ladder`): a test whose smallest
  passing model moved *up* the ladder ("needed smollm2:135m, now needs qwen2.5:3b"), or
  that passes on no model now. A failing rung is judged here, not as "now failing";
* **pass rate drop**: a sampled test (``llm.sample``) whose pass rate's 95% Wilson
  interval now lies wholly under the baseline's: noise moves a rate inside its
  interval, so only intervals that no longer overlap count;
* **verbosity** (only with ``max_token_factor``): a model's output tokens per call grew
  by more than that factor;
* **now flagged** (only with ``fail_on_new_flags``): a test that passed and is now
  flagged (``on_low_quality="flag"``); without it the test is listed, not failed.

Tests that are new or gone, and tests whose smallest passing model moved *down*
(improvements), are listed, never failed; a test this run did not select (``-k``,
``-m``, ``::``, ``--lf``, a shard) is "not run", not gone. Runs that are not comparable
(other workers, hosts or ``--dist``) are compared all the same, with a warning.
Both sides are report documents as :mod:`pytest_llm.report` writes them. This module is the
whole gate: :func:`load_report` reads and validates the baseline (a missing, unreadable or
damaged file is a ``ConfigError`` naming the fix; a ``pytest-llm-report/1`` file is read as
well, since the figures compared here did not change in version 2), :class:`Limits` holds
the limits and :func:`compare` compares; the report package renders the verdict.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = [
    "DEFAULT_LIMITS",
    "LATENCY_BASES",
    "Comparison",
    "Limits",
    "Regression",
    "compare",
    "load_report",
]

_FAILING = ("failed", "error")
#: The order regressions are listed in.
_KINDS = (
    "now failing",
    "capability",
    "score drop",
    "pass rate drop",
    "now flagged",
    "latency",
    "verbosity",
)
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
    fail_on_new_flags: bool = False
    """A test that passed in the baseline and is flagged now fails the gate."""
    max_token_factor: float | None = None
    """A model's output tokens per call may grow by this factor at most (``None``: any)."""

    def __post_init__(self) -> None:
        floor = self.latency_floor_ms
        if math.isnan(floor) or math.isinf(floor) or floor < 0:
            raise ValueError(f"latency_floor_ms={floor!r}: expected a number of ms >= 0, e.g. 50")
        drop, factor = self.max_score_drop, self.max_latency_factor
        if math.isnan(drop) or not 0.0 <= drop <= 1.0:
            raise ValueError(f"max_score_drop={drop!r}: expected a number in [0, 1], e.g. 0.1")
        if math.isnan(factor) or factor < 1.0:
            raise ValueError(f"max_latency_factor={factor!r}: expected a number >= 1, e.g. 2")
        tokens = self.max_token_factor
        if tokens is not None and (math.isnan(tokens) or tokens < 1.0):
            raise ValueError(f"max_token_factor={tokens!r}: expected a number >= 1, e.g. 1.5")


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
    improved: tuple[str, ...] = ()
    """Tests whose smallest passing model moved down the ladder, as sentences."""
    flagged: tuple[str, ...] = ()
    """Tests that passed in the baseline and are flagged now (failed only by option)."""
    not_run: tuple[str, ...] = ()
    """Baseline tests this run did not select (``-k``, shards ...): not compared, not gone."""
    warnings: tuple[str, ...] = ()
    """Why the two runs may not be comparable (other workers, hosts, ``--dist``)."""
    tests: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """The baseline's test records by node id (the HTML report shows them side by side)."""
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """The baseline's per-model figures."""

    @property
    def failed(self) -> bool:
        return bool(self.regressions)

    def listed(self) -> list[tuple[str, tuple[str, ...]]]:
        """What the gate shows but does not fail: ``(title, entries)``, empty ones left out."""
        flagged = () if self.limits.fail_on_new_flags else self.flagged
        entries = (
            ("not comparable", self.warnings),
            ("new tests", self.new),
            ("removed tests", self.removed),
            ("not run in this run", self.not_run),
            ("improved on the ladder", self.improved),
            ("newly flagged", flagged),
        )
        return [(title, ids) for title, ids in entries if ids]


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
    flagged: list[str] = []
    for nodeid, test in now.items():
        old = before.get(nodeid)
        if old is None:
            continue
        if old["outcome"] == "passed" and test["outcome"] == "flagged":
            flagged.append(nodeid)
            if limits.fail_on_new_flags:
                regressions.append(
                    Regression(
                        kind="now flagged",
                        subject=nodeid,
                        before="passed",
                        now=f"flagged: {test.get('flag') or ''}".rstrip(": "),
                        limit="no new flags",
                    )
                )
        rung = test.get("rung_failed")  # a failing rung of the ladder: the capability check
        if old["outcome"] == "passed" and test["outcome"] in _FAILING and not rung:
            regressions.append(
                Regression(
                    kind="now failing",
                    subject=nodeid,
                    before="passed",
                    now=test["outcome"],
                    limit="must pass",
                )
            )
        drop = _pass_rate_drop(old, test)
        if drop is not None:
            regressions.append(
                Regression(
                    kind="pass rate drop",
                    subject=nodeid,
                    before=drop[0],
                    now=drop[1],
                    limit="95% intervals overlap",
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
        regressions += _verbosity(model, old_models.get(model, {}), figures, limits)
    moved_up, improved = _ladder_moves(baseline.get("ladder"), current.get("ladder"))
    regressions += moved_up
    absent = tuple(sorted(set(before) - set(now)))
    partial = bool(current.get("run", {}).get("filtered") or current.get("run", {}).get("split"))
    return Comparison(
        baseline=source,
        limits=limits,
        regressions=tuple(sorted(regressions, key=lambda r: (_KINDS.index(r.kind), r.subject))),
        new=tuple(sorted(set(now) - set(before))),
        removed=() if partial else absent,
        not_run=absent if partial else (),
        warnings=tuple(_not_comparable(baseline.get("run", {}), current.get("run", {}))),
        improved=tuple(improved),
        flagged=tuple(sorted(flagged)),
        tests=before,
        models=old_models,
    )


def _ladder_moves(
    before: Mapping[str, Any] | None, now: Mapping[str, Any] | None
) -> tuple[list[Regression], list[str]]:
    """Tests whose smallest passing model moved up (regressions) or down (improvements)."""
    if not before or not now:
        return [], []
    order = list(now.get("models") or [])
    order += [m for m in before.get("models") or [] if m not in order]

    def rank(model: str | None) -> int:
        return order.index(model) if model in order else len(order)  # None: passes on none

    up: list[Regression] = []
    down: list[str] = []
    old_tests = before.get("tests") or {}
    for test, entry in sorted((now.get("tests") or {}).items()):
        old = old_tests.get(test)
        if old is None:
            continue
        was, is_now = old.get("smallest_passing"), entry.get("smallest_passing")
        rungs = entry.get("rungs") or []
        if is_now is None and rungs and all(r.get("outcome") == "flagged" for r in rungs):
            continue  # flagged on every model: a flag, gated as flags are (fail_on_new_flags)
        if rungs and len(rungs) < len(rungs[0].get("ladder") or ()):
            continue  # part of its ladder ran (a shard, -k): not run, as other tests are
        if rank(is_now) > rank(was):
            up.append(
                Regression(
                    kind="capability",
                    subject=test,
                    before=f"needed {was}" if was else "passed on none",
                    now=f"needs {is_now}" if is_now else "passes on no model",
                    limit="smallest passing model must not move up",
                )
            )
        elif rank(is_now) < rank(was):
            down.append(f"{test}: needed {was or 'a model beyond the ladder'}, now needs {is_now}")
    return up, down


def _pass_rate_drop(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(before, now)`` when a sampled test's pass-rate interval fell wholly under the
    baseline's (95% Wilson intervals over all its samples), else ``None``."""
    from .sampling import wilson_interval

    def interval(test: Mapping[str, Any]) -> tuple[float, float, float] | None:
        samples = test.get("samples") or []
        runs = sum(int(s.get("runs") or 0) for s in samples)
        if not runs:
            return None
        passes = sum(int(s.get("passes") or 0) for s in samples)
        low, high = wilson_interval(passes, runs)
        return passes / runs, low, high

    was, now = interval(old), interval(new)
    if was is None or now is None or now[2] >= was[1]:
        return None
    return tuple(f"{r:.0%} (95% CI {lo:.0%}-{hi:.0%})" for r, lo, hi in (was, now))  # type: ignore[return-value]


def _verbosity(
    model: str, before: Mapping[str, Any], now: Mapping[str, Any], limits: Limits
) -> list[Regression]:
    """A model that answers with more tokens per call than ``max_token_factor`` allows."""
    factor = limits.max_token_factor
    if factor is None or not before.get("calls") or not now.get("calls"):
        return []
    old = (before.get("tokens_out") or 0) / before["calls"]
    new = (now.get("tokens_out") or 0) / now["calls"]
    if not old or new / old <= factor:
        return []
    return [
        Regression(
            kind="verbosity",
            subject=f"{model} tokens out per call",
            before=f"{old:.0f}",
            now=f"{new:.0f} (x{new / old:.1f})",
            limit=f"x{factor:g}",
        )
    ]


def _not_comparable(before: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """Differences between the runs that change the figures: workers, hosts, ``--dist``."""
    out = []
    workers = (len(before.get("workers") or []), len(now.get("workers") or []))
    if workers[0] != workers[1]:
        out.append(
            f"the baseline ran on {workers[0] or 1} process(es), this run on "
            f"{workers[1] or 1}: latency under more parallel load is not the same figure"
        )
    if sorted(before.get("hosts") or []) != sorted(now.get("hosts") or []):
        out.append(
            f"other hosts: {', '.join(before.get('hosts') or []) or '-'} then, "
            f"{', '.join(now.get('hosts') or []) or '-'} now"
        )
    if before.get("dist") != now.get("dist"):
        out.append(f"--dist {before.get('dist') or 'no'} then, {now.get('dist') or 'no'} now")
    return out


# --- loading a baseline ---------------------------------------------------------------------


def load_report(path: Path, *, source: str = "--llm-baseline") -> dict[str, Any]:
    """Read a JSON report written by ``--llm-report`` (this version's, or an earlier one
    whose compared figures are the same); a bad file is a ``ConfigError`` naming the fix."""
    from .report.document import COMPATIBLE, SCHEMA  # here: the report package imports this

    fix = "write one with --llm-report PATH (for example on your main branch)"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{source}={str(path)!r}: no such file; {fix}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{source}={str(path)!r} is not a readable JSON report: {exc}") from None
    found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
    if not isinstance(doc, dict) or found not in (SCHEMA, *COMPATIBLE):
        if isinstance(found, str) and found.startswith("pytest-llm-report/"):
            raise ConfigError(
                f"{source}={str(path)!r} was written by another pytest-llm (schema {found!r}; "
                f"this one reads {SCHEMA!r} and {', '.join(map(repr, COMPATIBLE))}): "
                f"upgrade pytest-llm to the version that wrote it, or {fix} with this one"
            )
        raise ConfigError(
            f"{source}={str(path)!r} is not a pytest-llm report (schema {found!r}, "
            f"expected {SCHEMA!r}); {fix}"
        )
    problem = _damage(doc)
    if problem is not None:
        raise ConfigError(f"{source}={str(path)!r} is damaged: {problem}; {fix}")
    return doc


def _damage(doc: Mapping[str, Any]) -> str | None:
    """What is wrong with a report document in the fields a baseline is read for, if anything."""
    tests, models = doc.get("tests"), doc.get("models")
    if not isinstance(tests, list) or not all(
        isinstance(t, dict) and "nodeid" in t and "outcome" in t for t in tests
    ):
        return "'tests' must be a list of test records"
    for test in tests:
        for key in ("nodeid", "outcome"):
            if not isinstance(test[key], str):
                return f"a test's {key!r} must be a string, got {test[key]!r}"
        if not _number_or_null(test.get("score")):
            return f"{test['nodeid']}: 'score' must be a number or null, got {test['score']!r}"
    if not isinstance(models, dict) or not all(isinstance(f, dict) for f in models.values()):
        return f"'models' must be an object of per-model figures, got {models!r:.80}"
    for model, figures in models.items():
        for key in ("p50_ms", "p50_server_ms", "p50_decode_ms", "pass_rate"):
            if not _number_or_null(figures.get(key)):
                return f"model {model}: {key!r} must be a number or null, got {figures[key]!r}"
    return None


def _number_or_null(value: Any) -> bool:
    """``None`` or a finite number: a NaN or infinite figure would switch its check off."""
    if value is None:
        return True
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
