"""What a test asked its models and what came back, as bounded text for people.

The ``llm`` fixture keeps the results of a test's calls while it runs; when the test
fails or errors, :func:`transcript` turns them into the ``llm calls`` section pytest
shows beside captured output, and the run report carries the same text. With
``--llm-live``, :class:`LiveLog` prints each call the same way as soon as it ends. Texts
are cut as in failure messages (:func:`pytest_llm._text.shorten`), and so is the number
of calls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from ._text import shorten
from .result import Attempt, LLMResult

__all__ = ["SECTION", "LiveLog", "transcript"]

#: The report section's title (pytest prints it as ``----- llm calls -----``).
SECTION = "llm calls"
_SHOWN = 300
_MAX_CALLS = 20


class LiveLog:
    """``--llm-live``: each call of a test printed when it ends (``write`` takes a line),
    under the test's node id; calls from ``llm.map`` threads do not interleave."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._lock = threading.Lock()

    def __call__(self, nodeid: str, number: int, result: LLMResult) -> None:
        text = transcript([result], first=number)
        with self._lock:
            self._write(f"[llm] {nodeid}")
            for line in text.splitlines():
                self._write(f"[llm]   {line}")


def transcript(results: Sequence[LLMResult], *, max_calls: int = _MAX_CALLS, first: int = 1) -> str:
    """Every call of ``results`` (at most ``max_calls``, the last ones; the first is call
    number ``first``): model, timings and tokens, system prompt, prompt, each rejected
    attempt with its output and reason, then the answer."""
    shown = list(results)[-max_calls:]
    lines: list[str] = []
    if len(results) > len(shown):
        lines.append(f"({len(results) - len(shown)} earlier call(s) not shown)")
    first += len(results) - len(shown)
    for number, result in enumerate(shown, first):
        lines.append(_heading(number, result))
        for message in result.messages:
            role = str(message.get("role", "?"))
            lines.append(f"  {role}: {shorten(str(message.get('content', '')), _SHOWN)}")
        for i, attempt in enumerate(result.attempts, 1):
            if attempt.rejected is None:
                continue
            lines.append(f"  attempt {i} {_figures(attempt)} rejected ({attempt.rejected}):")
            lines += [f"    {line}" for line in _cut(attempt.error or "", 2 * _SHOWN)]
            if attempt.rejected != "transport":
                lines.append(f"    output: {shorten(attempt.output, _SHOWN)}")
        verdict = "answer" if result.success else "last answer (not accepted)"
        lines.append(f"  {verdict}: {shorten(result.content, _SHOWN)}")
    return "\n".join(lines)


def _cut(text: str, limit: int) -> list[str]:
    """The lines of ``text``, cut after ``limit`` characters (saying how long it was)."""
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text)} chars)"
    return text.splitlines() or [""]


def _heading(number: int, result: LLMResult) -> str:
    last = result.attempts[-1] if result.attempts else None
    route = " -> ".join(result.route) if len(result.route) > 1 else result.model
    parts = [
        f"call {number}: {route}" + ("" if last is None else f" {_figures(last, model=False)}")
    ]
    tokens_in = result.total_tokens_in
    parts.append(
        f"tokens {'?' if tokens_in is None else tokens_in} in / {result.total_tokens_out} out"
    )
    if len(result.attempts) > 1:
        parts.append(f"{len(result.attempts)} attempts, {result.total_duration_ms:.0f} ms in all")
    if result.score is not None:
        parts.append(f"score {result.score:.2f}")
    if result.cached:
        parts.append("replayed")
    return ", ".join(parts)


def _figures(attempt: Attempt, *, model: bool = True) -> str:
    """``[llama3.2, 251 ms, ttft 120 ms, server 230 ms, queued 12 ms]``."""
    parts = [attempt.model] if model else []
    parts.append(f"{attempt.duration_ms:.0f} ms")
    if attempt.ttft_ms is not None:
        parts.append(f"ttft {attempt.ttft_ms:.0f} ms")
    if attempt.server_ms is not None:
        parts.append(f"server {attempt.server_ms:.0f} ms")
    if attempt.queue_ms is not None and attempt.queue_ms >= 1:
        parts.append(f"queued {attempt.queue_ms:.0f} ms")
    return f"[{', '.join(parts)}]"
