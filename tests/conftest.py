from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence

import pytest

from pytest_llm.backends import ChatRequest
from pytest_llm.errors import BackendError
from pytest_llm.result import Completion

pytest_plugins = ["pytester"]

#: tests/real/ needs a real model server: scripts/real-model.sh starts one and sets this
#: variable; a plain `pytest` does not collect it at all (so nothing there shows as skipped).
REAL_MODEL_ENV = "PYTEST_LLM_REAL_MODEL"
collect_ignore = [] if os.environ.get(REAL_MODEL_ENV) == "1" else ["real"]

Script = str | BackendError | Callable[[ChatRequest], str]


class ScriptedBackend:
    """An in-memory backend for unit tests of the harness loop (HTTP is tested elsewhere)."""

    name = "scripted"
    host = "memory://"

    def __init__(self, replies: Sequence[Script] | dict[str, Sequence[Script]]) -> None:
        self.replies = replies
        self.requests: list[ChatRequest] = []
        self._cursor: dict[str, int] = {}
        self._lock = threading.Lock()

    def chat(self, request: ChatRequest) -> Completion:
        with self._lock:
            self.requests.append(request)
            script = self.replies[request.model] if isinstance(self.replies, dict) else self.replies
            i = self._cursor.get(request.model, 0)
            self._cursor[request.model] = i + 1
        reply = script[min(i, len(script) - 1)]
        if isinstance(reply, BackendError):
            raise reply
        text = reply(request) if callable(reply) else reply
        return Completion(
            content=text, model=request.model, tokens_in=3, tokens_out=len(text.split()),
            duration_ms=5.0, ttft_ms=1.0, done_reason="stop",
        )  # fmt: skip

    def close(self) -> None:
        pass


@pytest.fixture
def scripted() -> type[ScriptedBackend]:
    return ScriptedBackend
