"""``ScriptedBackend``: an in-memory backend, the harness's equivalent of httpx's MockTransport.

It answers from a script without any HTTP, so a unit test of code built on the harness
(the retry loop, a scorer, a check) runs in microseconds::

    from pytest_llm import Harness, HarnessConfig
    from pytest_llm.testing import ScriptedBackend

    backend = ScriptedBackend(["not json", '{"ok": true}'])
    result = Harness(HarnessConfig(model="m"), backend=backend).chat("JSON?", json_mode=True)
    assert result.retries == 1 and len(backend.requests) == 2

A script is a list of replies used in order (the last one repeats), or a mapping from a
model name to such a list. A reply is the answer's text, a ``BackendError`` to raise (a
transport fault), or a callable that receives the ``ChatRequest`` and returns the text.
The wire formats themselves are tested with :class:`~pytest_llm.testing.FakeOllama`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from ..backends import ChatRequest
from ..errors import BackendError
from ..result import Completion
from ._fake_ollama import fake_embedding

__all__ = ["Script", "ScriptedBackend"]

#: One scripted reply: the text, a fault to raise, or a function of the request.
Script = str | BackendError | Callable[[ChatRequest], str]


class ScriptedBackend:
    """A ``Backend`` answering from a script; ``requests`` holds every request it got."""

    name = "scripted"
    host = "memory://"

    def __init__(self, replies: Sequence[Script] | Mapping[str, Sequence[Script]]) -> None:
        self.replies = replies
        self.requests: list[ChatRequest] = []
        self._cursor: dict[str, int] = {}
        self._lock = threading.Lock()

    def chat(self, request: ChatRequest) -> Completion:
        with self._lock:
            self.requests.append(request)
            replies = self.replies
            script = replies[request.model] if isinstance(replies, Mapping) else replies
            i = self._cursor.get(request.model, 0)
            self._cursor[request.model] = i + 1
        reply = script[min(i, len(script) - 1)]
        if isinstance(reply, BackendError):
            raise reply
        text = reply(request) if callable(reply) else reply
        return Completion(
            content=text,
            model=request.model,
            tokens_in=3,
            tokens_out=len(text.split()),
            duration_ms=5.0,
            ttft_ms=1.0,
            done_reason="stop",
        )

    def embed(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        """The same deterministic vectors as FakeOllama's ``/api/embed``."""
        return [fake_embedding(text) for text in texts]

    def digest(self, model: str) -> str | None:
        """No identity: an in-memory script is no model."""
        return None

    def close(self) -> None:
        """Nothing to release."""
