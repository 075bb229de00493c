"""What both API modules share: refusing a request, reading its fields, and answering a
chat (whole, or streamed as the upstream server streams it)."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import LLMError
from .core import Incoming, status_of

if TYPE_CHECKING:
    from ..result import Completion
    from .server import Exchange

__all__ = ["BadRequest", "Renderer", "answer_chat", "bad_request", "pieces", "tool_calls"]

_PIECE = re.compile(r"\s*\S+|\s+")


class BadRequest(Exception):
    """A request the proxy cannot serve; the client gets ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str, status: int = 400) -> BadRequest:
    return BadRequest(status, message)


class Renderer(Protocol):
    """How one API answers one kind of request (a chat, a completion)."""

    content_type: str

    def piece(self, text: str) -> bytes:
        """A stream's chunk carrying ``text``."""
        ...

    def last(self, completion: Completion) -> bytes:
        """What ends a stream: the final chunk(s), usage, the end marker."""
        ...

    def whole(self, completion: Completion) -> dict[str, Any]:
        """The body of an answer that is not streamed."""
        ...


def tool_calls(completion: Completion) -> list[dict[str, Any]]:
    """The tools the answer called, ``[{"name": ..., "arguments": {...}}]`` (the backends'
    form; a replay holds what was recorded)."""
    calls = completion.metadata.get("tool_calls") or []
    return [dict(c) for c in calls if isinstance(c, Mapping)]


def pieces(text: str) -> list[str]:
    """``text`` in word-sized pieces, each with its leading whitespace (a replayed answer
    is streamed so, as a server streams tokens)."""
    return _PIECE.findall(text)


def answer_chat(exchange: Exchange, incoming: Incoming, renderer: Renderer) -> None:
    """Answer ``incoming`` through the test's proxy in the client's format.

    A stream starts with the first piece the upstream server sends, so that the client
    sees the tokens as they arrive (and an error before it, a cassette miss say, is an
    error status); whatever was not streamed live (a replayed answer) follows in pieces.
    """
    proxy = exchange.test_proxy
    if not incoming.stream:
        try:
            completion = proxy.chat(incoming)
        except LLMError as exc:
            exchange.error(status_of(exc), f"pytest-llm proxy: {exc}")
            return
        exchange.send_json(200, renderer.whole(completion))
        return
    sent: list[str] = []
    lock = threading.Lock()
    gone = False

    def relay(text: str) -> None:  # called by the backend for each streamed piece
        nonlocal gone
        with lock:
            if gone:
                return
            try:
                exchange.start_stream(renderer.content_type)
                exchange.write(renderer.piece(text))
                sent.append(text)
            except OSError:  # the client went away: the answer is still read and recorded
                gone = True

    try:
        completion = proxy.chat(incoming, relay)
    except LLMError as exc:
        exchange.error(status_of(exc), f"pytest-llm proxy: {exc}")
        return
    if gone:
        raise ConnectionResetError("the client closed the stream")
    streamed = "".join(sent)
    rest = completion.content[len(streamed) :] if completion.content.startswith(streamed) else ""
    exchange.start_stream(renderer.content_type)
    for piece in pieces(rest):
        exchange.write(renderer.piece(piece))
    exchange.write(renderer.last(completion))
    exchange.end_stream()


# --- reading fields -------------------------------------------------------------------------


def text_field(body: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise bad_request(f"the field {name!r} must be a non-empty string, got {value!r}")
    return value


def number_field(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"the field {name!r} must be a number, got {value!r}")
    return float(value)


def int_field(body: Mapping[str, Any], name: str, *, low: int = 0) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise bad_request(f"the field {name!r} must be an integer >= {low}, got {value!r}")
    return value


def messages_field(body: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("the field 'messages' must be a non-empty list of messages")
    for n, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise bad_request(f"messages[{n}] must be an object with a 'role', got {message!r}")
    return tuple(messages)


def inputs_field(body: Mapping[str, Any], name: str) -> list[str]:
    value = body.get(name)
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise bad_request(
            f"the field {name!r} must be a string or a non-empty list of strings "
            "(token arrays are not served)"
        )
    return texts


def refuse(body: Mapping[str, Any], refused: Mapping[str, str]) -> None:
    """A 400 for the first field of ``refused`` sent with a value that matters."""
    for name, why in refused.items():
        if body.get(name) not in (None, False, [], {}, "", "none"):
            raise bad_request(f"the pytest-llm proxy does not serve {name!r}: {why}")
