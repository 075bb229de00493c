"""Real clients through the proxy: each works live against FakeOllama, then replayed from
the cassette it recorded with the server stopped.

The proxy here is the fixture's own parts (server, backend, cassette, ``LLMProxy``) put
together by hand, so that one test drives a live run and a replay; the pytester sessions
of ``test_proxy.py`` run the fixture itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from pytest_llm import HarnessConfig
from pytest_llm.backends.ollama import OllamaBackend
from pytest_llm.backends.openai import OpenAIBackend
from pytest_llm.cassettes import Cassette, CassetteSettings
from pytest_llm.proxy import LLMProxy
from pytest_llm.proxy.server import ProxyServer
from pytest_llm.testing import FakeOllama, Reply

QUESTION = [{"role": "user", "content": "Capital of France?"}]
ANSWER = "The capital of France is Paris."


@pytest.fixture(scope="module")
def server() -> Iterator[ProxyServer]:
    with ProxyServer() as running:
        yield running


@contextmanager
def proxied(
    server: ProxyServer,
    host: str,
    folder: Path,
    mode: str,
    *,
    backend: str = "ollama",
    timeout: float = 5,
) -> Iterator[LLMProxy]:
    """One test's proxy: the test's backend through its cassette, as the fixture builds it."""
    settings = CassetteSettings(mode=mode, directory=folder, rootpath=folder)
    cassette = Cassette(folder / "test_client.json", settings, test="test_client")
    inner = (
        OllamaBackend(host=host, timeout_seconds=timeout)
        if backend == "ollama"
        else OpenAIBackend(host=host, timeout_seconds=timeout)
    )
    config = HarnessConfig(model="llama3.2", host=host, backend=backend)
    wrapped = inner if mode == "off" else cassette.wrap(inner)
    proxy = LLMProxy(url=server.url, backend=wrapped, config=config, test="t")
    try:
        with server.serving(proxy), proxy.environment():
            yield proxy
        cassette.save(complete=True)
    finally:
        inner.close()


def live_then_replayed(
    server: ProxyServer, tmp_path: Path, client: Callable[[LLMProxy], str], *, stream: bool
) -> tuple[LLMProxy, LLMProxy]:
    with FakeOllama(ANSWER) as fake:
        with proxied(server, fake.url, tmp_path, "once") as live:
            assert client(live) == ANSWER
        chats = [r for r in fake.requests if r.path == "/api/chat"]
    assert len(chats) == 1 and chats[0].messages == QUESTION  # one upstream call, streamed
    assert live.calls.last.cached is False and live.calls.last.stream is stream
    with proxied(server, fake.url, tmp_path, "none") as replay:  # the server is stopped
        assert client(replay) == ANSWER
    assert replay.calls.last.cached is True
    assert replay.calls.last.output == live.calls.last.output == ANSWER
    return live, replay


@pytest.mark.parametrize("stream", [False, True])
def test_the_openai_client(server: ProxyServer, tmp_path: Path, stream: bool) -> None:
    def app(proxy: LLMProxy) -> str:
        with openai.OpenAI(timeout=5, max_retries=0) as client:  # OPENAI_BASE_URL: the proxy
            if not stream:
                answer = client.chat.completions.create(model="llama3.2", messages=QUESTION)
                assert answer.usage is not None and answer.usage.completion_tokens == 6
                return answer.choices[0].message.content or ""
            chunks = client.chat.completions.create(
                model="llama3.2",
                messages=QUESTION,
                stream=True,
                stream_options={"include_usage": True},
            )
            parts = [c.choices[0].delta.content or "" for c in chunks if c.choices]
            assert len(parts) > 2  # streamed in pieces, a replay too
            return "".join(parts)

    live, replay = live_then_replayed(server, tmp_path, app, stream=stream)
    assert live.calls.last.api == "openai" and live.calls.last.tokens_out == 6
    assert replay.calls.last.tokens_out == 6  # the recorded figures


@pytest.mark.parametrize("stream", [False, True])
def test_the_ollama_client(server: ProxyServer, tmp_path: Path, stream: bool) -> None:
    def app(proxy: LLMProxy) -> str:
        client = ollama.Client(timeout=5)  # OLLAMA_HOST: the proxy
        try:
            if not stream:
                answer = client.chat(model="llama3.2", messages=QUESTION)
                assert answer.eval_count == 6 and answer.done_reason == "stop"
                return answer.message.content or ""
            parts = [
                c.message.content or "" for c in client.chat("llama3.2", QUESTION, stream=True)
            ]
            assert len(parts) > 2
            return "".join(parts)
        finally:
            client._client.close()

    live, _ = live_then_replayed(server, tmp_path, app, stream=stream)
    assert live.calls.last.api == "ollama" and live.calls.last.endpoint == "chat"


def test_raw_httpx_streaming(server: ProxyServer, tmp_path: Path) -> None:
    def app(proxy: LLMProxy) -> str:
        body = {"model": "llama3.2", "messages": QUESTION, "stream": True}
        parts = []
        with (
            httpx.Client(timeout=5) as client,
            client.stream(
                "POST", f"{proxy.openai_base_url}/chat/completions", json=body
            ) as response,
        ):
            assert response.headers["content-type"] == "text/event-stream"
            for line in response.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    choices = json.loads(line[6:])["choices"]
                    parts += [c["delta"].get("content", "") for c in choices]
        return "".join(parts)

    live_then_replayed(server, tmp_path, app, stream=True)


def test_a_subprocess_inherits_the_proxy(server: ProxyServer, tmp_path: Path) -> None:
    code = (
        "import openai; c = openai.OpenAI(timeout=5, max_retries=0); "
        "print(c.chat.completions.create(model='llama3.2', "
        "messages=[{'role': 'user', 'content': 'Capital of France?'}]).choices[0].message.content)"
    )

    def app(proxy: LLMProxy) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    live_then_replayed(server, tmp_path, app, stream=False)


def test_an_ollama_app_on_an_openai_compatible_server(server: ProxyServer, tmp_path: Path) -> None:
    """The client's API and the upstream server's need not be the same."""
    with (
        FakeOllama(ANSWER) as fake,
        proxied(server, fake.url + "/v1", tmp_path, "off", backend="openai"),
    ):
        client = ollama.Client(timeout=5)
        try:
            assert client.chat(model="llama3.2", messages=QUESTION).message.content == ANSWER
        finally:
            client._client.close()
        assert [r.path for r in fake.requests if "chat" in r.path] == ["/v1/chat/completions"]


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
CALLED = Reply(content="", tool_calls=({"name": "weather", "arguments": {"city": "Lyon"}},))


@pytest.mark.parametrize("upstream", ["ollama", "openai"])
@pytest.mark.parametrize("client_api", ["openai", "ollama"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_tool_calls_come_back_live_and_replayed(
    server: ProxyServer, tmp_path: Path, upstream: str, client_api: str, stream: bool
) -> None:
    question = [{"role": "user", "content": "Weather in Lyon?"}]

    def app() -> tuple[str, dict[str, object]]:
        if client_api == "openai":
            with openai.OpenAI(timeout=5, max_retries=0) as client:
                if not stream:
                    answer = client.chat.completions.create(
                        model="llama3.2",
                        messages=question,
                        tools=TOOLS,
                    )
                    assert answer.choices[0].finish_reason == "tool_calls"
                    call = answer.choices[0].message.tool_calls[0]
                    return call.function.name, json.loads(call.function.arguments)
                with client.chat.completions.stream(
                    model="llama3.2",
                    messages=question,
                    tools=TOOLS,
                ) as events:
                    final = events.get_final_completion()
                call = final.choices[0].message.tool_calls[0]
                return call.function.name, json.loads(call.function.arguments)
        ollama_client = ollama.Client(timeout=5)
        try:
            if not stream:
                message = ollama_client.chat("llama3.2", question, tools=TOOLS).message
            else:
                chunks = list(ollama_client.chat("llama3.2", question, tools=TOOLS, stream=True))
                message = next(c.message for c in chunks if c.message.tool_calls)
            (called,) = message.tool_calls or []
            return called.function.name, dict(called.function.arguments)
        finally:
            ollama_client._client.close()

    host_of = {"ollama": lambda url: url, "openai": lambda url: url + "/v1"}
    with FakeOllama(CALLED) as fake:
        with proxied(
            server, host_of[upstream](fake.url), tmp_path, "once", backend=upstream
        ) as live:
            assert app() == ("weather", {"city": "Lyon"})
        (sent,) = [r.body for r in fake.requests if "chat" in r.path]
        url = fake.url
    assert sent["tools"] == TOOLS  # offered upstream as the client offered them
    live.calls.assert_tool_sent("weather")
    assert live.calls.last.tool_calls == ({"name": "weather", "arguments": {"city": "Lyon"}},)
    with proxied(server, host_of[upstream](url), tmp_path, "none", backend=upstream) as replay:
        assert app() == ("weather", {"city": "Lyon"})  # replayed, the server stopped
    assert replay.calls.last.cached
