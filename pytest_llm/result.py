"""What a call hands back: ``LLMResult``, with one ``Attempt`` per backend call."""

from __future__ import annotations

from collections.abc import Mapping
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
    ``tokens_in`` is ``None`` when the server reported no usage (llama.cpp while
    streaming). ``server_ms`` is the model's own time as the server measured it (prompt
    evaluation and generation, Ollama's ``prompt_eval_duration + eval_duration``) and
    ``queue_ms`` the time the request waited for a slot there (``total_duration`` less
    loading, prompt evaluation and generation); both ``None`` when the server tells none.
    """

    model: str
    output: str
    error: str | None = None
    rejected: str | None = None
    tokens_in: int | None = 0
    tokens_out: int = 0
    duration_ms: float = 0.0
    ttft_ms: float | None = None
    load_ms: float = 0.0
    done_reason: str | None = None
    score: float | None = None
    cached: bool = False
    server_ms: float | None = None
    queue_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.rejected is None

    @property
    def decode_ms(self) -> float | None:
        """Time from the first token to the last, measured here: generation without the
        wait for a slot or the prompt (``None`` without a first token)."""
        if self.ttft_ms is None or self.rejected == "transport":
            return None
        return max(self.duration_ms - self.ttft_ms, 0.0)

    def figures(self) -> dict[str, Any]:
        """The attempt's figures without its text (the ``tries`` of ``LLMResult.summary()``)."""
        return {
            "model": self.model,
            "rejected": self.rejected,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "duration_ms": round(self.duration_ms, 3),
            "ttft_ms": _rounded(self.ttft_ms),
            "server_ms": _rounded(self.server_ms),
            "queue_ms": _rounded(self.queue_ms),
            "load_ms": round(self.load_ms, 3),
            "score": self.score,
            "cached": self.cached,
        }

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, kw_only=True)
class LLMResult:
    """The structured outcome of ``Harness.chat``: the accepted answer and how it was reached.

    ``tokens_*``, ``ttft_ms``, ``load_ms`` and ``duration_ms`` describe the accepted
    (last) attempt; ``attempts`` holds every call, ``route`` the models tried in order,
    ``messages`` the request as first sent (system prompt and prompt). What every attempt
    cost together is in ``total_tokens_in``, ``total_tokens_out`` and ``total_duration_ms``.
    ``tokens_in`` is 0 when the server reported no usage (``metadata["usage_reported"]``
    is then False and ``total_tokens_in`` None).
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
    messages: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)

    def __str__(self) -> str:
        return self.content

    @property
    def total_duration_ms(self) -> float:
        """Model time over every attempt, retries included."""
        return sum(a.duration_ms for a in self.attempts)

    @property
    def total_tokens_in(self) -> int | None:
        """Prompt tokens over every attempt, retries and escalations included; ``None``
        when the server reported no usage for some answer."""
        counts = [a.tokens_in for a in self.attempts]
        if not counts:
            return self.tokens_in
        return None if None in counts else sum(c or 0 for c in counts)

    @property
    def total_tokens_out(self) -> int:
        """Generated tokens over every attempt, retries and escalations included."""
        if not self.attempts:
            return self.tokens_out
        return sum(a.tokens_out for a in self.attempts)

    @property
    def reasks(self) -> int:
        """How many answers were asked for because the one before was rejected (invalid or
        scored too low), escalations included; transport retries are not re-asks. A result
        with ``reasks > 0`` was not accepted at the first answer."""
        answers = sum(1 for a in self.attempts if a.rejected != "transport")
        return max(answers - 1, 0)

    def summary(self) -> dict[str, Any]:
        """The small, JSON-friendly record the plugin attaches to the test report: the
        accepted answer's figures, the totals over every attempt, ``answer``, its first
        ``ANSWER_CHARS`` characters, and ``tries``, the figures of each attempt (no text:
        see :func:`pytest_llm.transcript.transcript`); ``role`` ``"judge"`` for a judge
        harness's call (``Harness.for_judge``)."""
        return {
            "model": self.model,
            "route": list(self.route),
            "success": self.success,
            "tokens_in": self.attempts[-1].tokens_in if self.attempts else self.tokens_in,
            "tokens_out": self.tokens_out,
            "total_tokens_in": self.total_tokens_in,
            "total_tokens_out": self.total_tokens_out,
            "duration_ms": round(self.duration_ms, 3),
            "total_duration_ms": round(self.total_duration_ms, 3),
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 3),
            "load_ms": round(self.load_ms, 3),
            "retries": self.retries,
            "reasks": self.reasks,
            "attempts": len(self.attempts),
            "score": self.score,
            "cached": self.cached,
            "answer": _excerpt(self.content),
            "tries": [a.figures() for a in self.attempts],
            **({"role": self.metadata["role"]} if self.metadata.get("role") else {}),
        }


#: How much of an answer a call's record keeps (the baseline gate shows it beside the new one).
ANSWER_CHARS = 500


def _excerpt(text: str) -> str:
    return text if len(text) <= ANSWER_CHARS else f"{text[:ANSWER_CHARS]}... ({len(text)} chars)"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
