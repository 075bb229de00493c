"""What the application did through the proxy: one :class:`ProxyCall` per request.

``llm_proxy.calls`` is a :class:`ProxyCalls`, a list with the checks people make of an
application's model calls (how many, which models, that a system prompt or a tool
definition was sent, that no answer exceeded N tokens). Each check fails with a
:class:`~pytest_llm.QualityFailure` that says what was expected and lists the calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._text import shorten
from ..errors import QualityFailure

__all__ = ["ProxyCall", "ProxyCalls"]

_SHOWN = 80


@dataclass(frozen=True, kw_only=True)
class ProxyCall:
    """One request the application sent through the proxy, and its answer.

    ``api`` is the client's API (``"openai"`` or ``"ollama"``) and ``endpoint`` its route
    (``"chat"``, ``"generate"``, ``"completions"``, ``"embed"``); ``model`` is the model the
    client asked for and ``upstream_model`` the one that answered (``llm_proxy.models``
    maps one to the other). ``parameters`` holds every setting the client sent beside the
    messages (``temperature``, ``max_tokens``, ``response_format``, ``top_p``, ``stop``
    ...), as it sent them. ``output`` is the answer's text (``""`` for an embedding or a
    failed call, whose ``error`` says why). Times are milliseconds; ``cached`` says the
    answer was replayed from the test's cassette.
    """

    api: str
    endpoint: str
    model: str
    upstream_model: str
    messages: tuple[Mapping[str, Any], ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)
    stream: bool = False
    output: str = ""
    error: str | None = None
    status: int = 200
    tokens_in: int = 0
    tokens_out: int = 0
    duration_ms: float = 0.0
    ttft_ms: float | None = None
    load_ms: float = 0.0
    done_reason: str | None = None
    cached: bool = False
    model_identity: str | None = None
    inputs: tuple[str, ...] = ()
    """The texts of an embedding request."""
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    """The tools the model called, each ``{"name": ..., "arguments": {...}}``."""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def system(self) -> str | None:
        """The system prompt (every ``system`` message, joined), ``None`` without one."""
        parts = [_text(m.get("content")) for m in self.messages if m.get("role") == "system"]
        return "\n".join(parts) if parts else None

    @property
    def prompt(self) -> str:
        """The last user message (the input of an embedding request, joined)."""
        if self.inputs:
            return "\n".join(self.inputs)
        users = [m for m in self.messages if m.get("role") == "user"]
        return _text(users[-1].get("content")) if users else ""

    @property
    def tools(self) -> list[str]:
        """The names of the tools (functions) the request offered the model."""
        names = []
        for tool in self.parameters.get("tools") or ():
            function = tool.get("function", tool) if isinstance(tool, Mapping) else None
            if isinstance(function, Mapping) and isinstance(function.get("name"), str):
                names.append(function["name"])
        return names

    def line(self) -> str:
        """``openai chat gpt-4o -> llama3.2: 'prompt' -> 'answer' (12 tokens, 80 ms)``."""
        model = (
            self.model
            if self.model == self.upstream_model
            else (f"{self.model} -> {self.upstream_model}")
        )
        what = f"error {self.error}" if self.error else shorten(self.output, _SHOWN)
        figures = f"{self.tokens_out} tokens, {self.duration_ms:.0f} ms"
        return (
            f"{self.api} {self.endpoint} {model}: {shorten(self.prompt, _SHOWN)} -> {what} "
            f"({figures}{', replayed' if self.cached else ''})"
        )


class ProxyCalls(list[ProxyCall]):
    """The calls of one test, in the order they ended, with checks of what was sent."""

    @property
    def models(self) -> list[str]:
        """The model of each call, as the client named it, in order."""
        return [c.model for c in self]

    @property
    def last(self) -> ProxyCall:
        """The call that ended last (``IndexError`` names the problem when there is none)."""
        if not self:
            raise IndexError("the application made no model call through llm_proxy")
        return self[-1]

    def assert_count(self, expected: int | None = None, *, at_least: int | None = None,
                     at_most: int | None = None) -> None:  # fmt: skip
        """Exactly ``expected`` calls, or between ``at_least`` and ``at_most``."""
        __tracebackhide__ = True
        n = len(self)
        wanted = []
        if expected is not None and n != expected:
            wanted.append(f"exactly {expected}")
        if at_least is not None and n < at_least:
            wanted.append(f"at least {at_least}")
        if at_most is not None and n > at_most:
            wanted.append(f"at most {at_most}")
        if wanted:
            self._fail(f"expected {' and '.join(wanted)} model call(s), the application made {n}")

    def assert_models(self, *allowed: str) -> None:
        """Every call asked for one of ``allowed`` (as the client named the model)."""
        __tracebackhide__ = True
        others = [c for c in self if c.model not in allowed]
        if others:
            names = ", ".join(sorted({c.model for c in others}))
            self._fail(
                f"expected calls to {', '.join(map(repr, allowed))} only; "
                f"{len(others)} call(s) asked for {names}",
                others,
            )

    def assert_system_prompt(self, *fragments: str, every: bool = True) -> None:
        """Each chat call (``every=False``: some call) sent a system prompt containing every
        one of ``fragments`` (any system prompt when none are given)."""
        __tracebackhide__ = True
        chats = [c for c in self if not c.inputs]

        def fits(call: ProxyCall) -> bool:
            return call.system is not None and all(f in call.system for f in fragments)

        wanted = f"containing {', '.join(map(repr, fragments))}" if fragments else ""
        bad = [c for c in chats if not fits(c)]
        if not chats or (bad if every else len(bad) == len(chats)):
            who = "every chat call" if every else "some chat call"
            self._fail(f"expected {who} to send a system prompt {wanted}".rstrip(), bad or chats)

    def assert_tool_sent(self, name: str) -> None:
        """Some call offered the model a tool (function) called ``name``."""
        __tracebackhide__ = True
        if not any(name in c.tools for c in self):
            sent = sorted({t for c in self for t in c.tools})
            self._fail(
                f"expected a call offering the tool {name!r}; tools offered: "
                f"{', '.join(sent) if sent else 'none'}"
            )

    def assert_max_tokens(self, limit: int) -> None:
        """No answer was longer than ``limit`` tokens."""
        __tracebackhide__ = True
        over = [c for c in self if c.tokens_out > limit]
        if over:
            self._fail(f"expected no answer over {limit} tokens; {len(over)} went over", over)

    def _fail(self, message: str, calls: Iterable[ProxyCall] | None = None) -> None:
        __tracebackhide__ = True
        shown = list(self if calls is None else calls)
        listing = "\n".join(f"  {n}. {c.line()}" for n, c in enumerate(shown, 1))
        raise QualityFailure(f"{message}" + (f":\n{listing}" if listing else ""))


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of OpenAI's list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return "" if content is None else str(content)
