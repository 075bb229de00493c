"""``Score`` and the ``Scorer`` protocol: how good an accepted output is, in [0, 1]."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .result import LLMResult

if TYPE_CHECKING:
    from .harness import Harness

__all__ = [
    "Score",
    "Scorer",
    "activated",
    "active_harness",
    "as_result",
    "run_scorer",
    "scorer_name",
    "text_of",
]

_SHOWN_REASON = 300


@dataclass(frozen=True, kw_only=True)
class Score:
    """A quality measurement. ``passed`` is decided against ``threshold`` when there is one."""

    value: float
    name: str = "score"
    reason: str = ""
    threshold: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        value = float(self.value)
        if math.isnan(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"scorer {self.name} returned {self.value!r}; scores lie in [0, 1]")
        object.__setattr__(self, "value", value)

    @property
    def passed(self) -> bool:
        return self.threshold is None or self.value >= self.threshold

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly record (the report's ``llm_scores`` entries); long reasons shortened."""
        reason = self.reason
        if len(reason) > _SHOWN_REASON:
            reason = reason[: _SHOWN_REASON - 3] + "..."
        return {
            "scorer": self.name,
            "value": round(self.value, 6),
            "threshold": self.threshold,
            "passed": self.passed,
            "reason": reason,
            "details": self.details,
        }

    def __float__(self) -> float:
        return self.value

    def __str__(self) -> str:
        verdict = "" if self.threshold is None else f" (min {self.threshold:g})"
        reason = f": {self.reason}" if self.reason else ""
        return f"{self.name}={self.value:.3f}{verdict}{reason}"


@runtime_checkable
class Scorer(Protocol):
    """Anything callable on an ``LLMResult`` returning a ``Score`` (or a bare float)."""

    def __call__(self, result: LLMResult, /) -> Score | float: ...


def scorer_name(scorer: object) -> str:
    return str(getattr(scorer, "name", None) or getattr(scorer, "__name__", type(scorer).__name__))


def run_scorer(scorer: Scorer, result: LLMResult, threshold: float | None = None) -> Score:
    """Call ``scorer`` and normalise what it returns to a ``Score`` with ``threshold``."""
    raw = scorer(result)
    if isinstance(raw, Score):
        return dataclasses.replace(raw, threshold=raw.threshold if threshold is None else threshold)
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise TypeError(
            f"scorer {scorer_name(scorer)} returned {type(raw).__name__}; "
            "return a pytest_llm.Score or a float in [0, 1]"
        )
    return Score(value=float(raw), name=scorer_name(scorer), threshold=threshold)


def text_of(output: LLMResult | str) -> str:
    """The text a scorer looks at: an ``LLMResult``'s content, or the string itself."""
    return output if isinstance(output, str) else output.content


def as_result(output: LLMResult | str) -> LLMResult:
    """``output`` as an ``LLMResult`` (plain text gets an empty ``model``), for any scorer."""
    return output if isinstance(output, LLMResult) else LLMResult(content=str(output), model="")


# --- the harness in use --------------------------------------------------------------------
# Scorers that need a model (embedding similarity, the judge) and the assertions that run
# them find their server through the harness in use: the one scoring right now, or the
# test's ``llm`` fixture, which activates itself for the test.

_ACTIVE: ContextVar[Harness | None] = ContextVar("pytest_llm_active_harness", default=None)


def active_harness() -> Harness | None:
    """The harness scoring right now, else the current test's ``llm``; ``None`` outside both."""
    return _ACTIVE.get()


@contextmanager
def activated(harness: Harness) -> Iterator[Harness]:
    """Make ``harness`` the one :func:`active_harness` returns, for the ``with`` block."""
    token = _ACTIVE.set(harness)
    try:
        yield harness
    finally:
        _ACTIVE.reset(token)
