"""``ChatRequest.on_delta``: both backends hand each streamed piece over as it arrives."""

from __future__ import annotations

import time

import pytest

from pytest_llm.backends import ChatRequest
from pytest_llm.backends.ollama import OllamaBackend
from pytest_llm.backends.openai import OpenAIBackend
from pytest_llm.testing import FakeOllama, Reply


@pytest.mark.parametrize("kind", ["ollama", "openai"])
def test_each_piece_arrives_before_the_answer_ends(kind: str) -> None:
    with FakeOllama("one two three", token_delay=0.1) as fake:
        backend = (
            OllamaBackend(host=fake.url, timeout_seconds=10)
            if kind == "ollama"
            else OpenAIBackend(host=fake.url, timeout_seconds=10)
        )
        seen: list[tuple[str, float]] = []
        started = time.perf_counter()
        request = ChatRequest(
            model="llama3.2",
            messages=[{"role": "user", "content": "count"}],
            on_delta=lambda text: seen.append((text, time.perf_counter())),
        )
        try:
            completion = backend.chat(request)
        finally:
            backend.close()
        ended = time.perf_counter()
    assert "".join(text for text, _ in seen) == completion.content == "one two three"
    assert len(seen) == 3
    # the first piece was handed over while the server still had two tokens to send
    assert seen[0][1] < ended - 0.15
    assert (seen[0][1] - started) * 1000 <= completion.duration_ms


def test_the_callback_is_not_part_of_the_request() -> None:
    plain = ChatRequest(model="m", messages=[{"role": "user", "content": "x"}])
    relayed = ChatRequest(model="m", messages=plain.messages, on_delta=lambda _: None)
    assert plain == relayed and "on_delta" not in repr(relayed)


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.mark.parametrize("kind", ["ollama", "openai"])
def test_tools_go_upstream_and_tool_calls_come_back(kind: str) -> None:
    reply = Reply(content="", tool_calls=({"name": "weather", "arguments": {"city": "Lyon"}},))
    with FakeOllama(reply) as fake:
        backend = (
            OllamaBackend(host=fake.url, timeout_seconds=10)
            if kind == "ollama"
            else OpenAIBackend(host=fake.url, timeout_seconds=10)
        )
        request = ChatRequest(
            model="llama3.2",
            messages=[{"role": "user", "content": "Weather in Lyon?"}],
            options={"tools": TOOLS},
        )
        try:
            completion = backend.chat(request)
        finally:
            backend.close()
        (sent,) = [r.body for r in fake.requests if "chat" in r.path]
    assert sent["tools"] == TOOLS and "tools" not in (sent.get("options") or {})
    assert completion.metadata["tool_calls"] == [{"name": "weather", "arguments": {"city": "Lyon"}}]
    assert completion.content == "" and completion.ttft_ms is not None  # the call is output
