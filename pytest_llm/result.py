"""What a call hands back: ``LLMResult``, with one ``Attempt`` per backend call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Attempt", "Completion", "LLMResult"]


@dataclass(frozen=True, kw_only=True)
class Completion:
    """One answer from a backend, before validation. Times are milliseconds."""

    content: str
    model: str
    tokens_in: int = 0
    tokens_out: int = 0
    duration_ms: float = 0.0
    ttft_ms: float | None = None
    load_ms: float = 0.0
    done_reason: str | None = None
    cached: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def truncated(self) -> bool:
        """The answer stopped at ``max_tokens`` rather than where the model meant to stop."""
        return self.done_reason == "length"


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """One backend call of a ``chat`` and what became of it.

    ``rejected`` says why the output was not accepted: ``"transport"`` (the call
    itself failed), ``"validation"``, ``"score"``, or ``None`` for the accepted one.
    """

    model: str
    output: str
    error: str | None = None
    rejected: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    duration_ms: float = 0.0
    ttft_ms: float | None = None
    load_ms: float = 0.0
    done_reason: str | None = None
    score: float | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.rejected is None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, kw_only=True)
class LLMResult:
    """The structured outcome of ``Harness.chat``: the accepted answer and how it was reached.

    ``tokens_*``, ``ttft_ms``, ``load_ms`` and ``duration_ms`` describe the accepted
    (last) attempt; ``attempts`` holds every call, ``route`` the models tried in order.
    """

    content: str
    model: str
    tokens_in: int = 0
    tokens_out: int = 0
    duration_ms: float = 0.0
    ttft_ms: float | None = None
    success: bool = True
    retries: int = 0
    score: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    parsed: Any = None
    attempts: tuple[Attempt, ...] = ()
    route: tuple[str, ...] = ()
    load_ms: float = 0.0
    cached: bool = False

    def __str__(self) -> str:
        return self.content

    @property
    def total_duration_ms(self) -> float:
        """Model time over every attempt, retries included."""
        return sum(a.duration_ms for a in self.attempts)

    @property
    def reasks(self) -> int:
        """How many answers were asked for because the one before was rejected (invalid or
        scored too low), escalations included; transport retries are not re-asks. A result
        with ``reasks > 0`` was not accepted at the first answer."""
        answers = sum(1 for a in self.attempts if a.rejected != "transport")
        return max(answers - 1, 0)

    def summary(self) -> dict[str, Any]:
        """The small, JSON-friendly record the plugin attaches to the test report."""
        return {
            "model": self.model,
            "route": list(self.route),
            "success": self.success,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "duration_ms": round(self.duration_ms, 3),
            "total_duration_ms": round(self.total_duration_ms, 3),
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 3),
            "load_ms": round(self.load_ms, 3),
            "retries": self.retries,
            "reasks": self.reasks,
            "attempts": len(self.attempts),
            "score": self.score,
            "cached": self.cached,
        }
