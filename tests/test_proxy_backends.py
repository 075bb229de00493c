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


def test_the_ollama_backend_reads_lines_however_the_body_is_cut() -> None:
    """The Ollama backend splits the stream into lines itself (the proxy pays for every
    chunk): a line cut anywhere, a character cut in two, CRLF and a last line without its
    newline are read as the ``ollama`` client reads them."""
    import json

    import httpx

    lines = [
        {"model": "m", "message": {"role": "assistant", "content": "Café "}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": "au lait"}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True,
         "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 2},
    ]  # fmt: skip
    body = b"\n".join(json.dumps(line, ensure_ascii=False).encode() for line in lines)
    body = body.replace(b"\n", b"\r\n", 1)  # CRLF once; no newline after the last line
    cut = body.index("é".encode()) + 1  # inside the two bytes of é
    pieces = [body[:3], body[3:cut], body[cut : cut + 40], body[cut + 40 :]]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter(pieces))

    backend = OllamaBackend(
        host="http://x", timeout_seconds=5, transport=httpx.MockTransport(handler)
    )
    seen: list[str] = []
    request = ChatRequest(
        model="m", messages=[{"role": "user", "content": "?"}], on_delta=seen.append
    )
    completion = backend.chat(request)
    assert seen == ["Café ", "au lait"] and completion.content == "Café au lait"
    assert (completion.tokens_in, completion.tokens_out, completion.done_reason) == (3, 2, "stop")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"message": {"role": "assistant", "content": "a"}}\n\n', "a stream line is not JSON"),
        (b"[1]\n", "a stream line is JSON but not an object (a list)"),
        (b'{"message": 5}\n', "a stream line is not a chunk: ValidationError"),
        (b'{"error": "out of memory"}\n', "mid-stream: out of memory"),
    ],
)
def test_the_ollama_backend_names_a_bad_stream_line(body: bytes, says: str) -> None:
    import re

    import httpx

    from pytest_llm.errors import BackendResponseError

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=iter([body])))
    backend = OllamaBackend(host="http://x", timeout_seconds=5, transport=transport)
    request = ChatRequest(model="m", messages=[{"role": "user", "content": "?"}])
    with pytest.raises(BackendResponseError, match=re.escape(says)):
        backend.chat(request)
