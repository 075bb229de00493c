"""The proxy's two APIs: every route, the translation into a ``ChatRequest`` (and so the
cassette key), and errors in each API's own format."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from pytest_llm import CassetteError, QualityFailure
from pytest_llm.proxy import LLMProxy
from pytest_llm.proxy.server import ProxyServer
from pytest_llm.testing import FakeOllama, RecordedRequest, Reply

from .test_proxy_clients import QUESTION, proxied, server

__all__ = ["server"]  # the module's fixture, shared


def post(url: str, body: object) -> httpx.Response:
    return httpx.post(url, json=body, timeout=5)


def test_ollama_routes(server: ProxyServer, tmp_path: Path) -> None:
    with FakeOllama("Lyon is big", models=["llama3.2", "nomic-embed-text"]) as fake:  # noqa: SIM117 (the server outlives the proxy)
        with proxied(server, fake.url, tmp_path, "off") as proxy:
            proxy.models["tiny"] = "llama3.2"
            client = ollama.Client(timeout=5)
            try:
                answer = client.generate(model="tiny", prompt="Lyon?", system="Be brief.")
                assert answer.response == "Lyon is big" and answer.done
                streamed = "".join(
                    c.response for c in client.generate("tiny", "Lyon?", stream=True)
                )
                assert streamed == "Lyon is big"
                assert client.generate(model="tiny", prompt="").done_reason == "load"
                vectors = client.embed(model="nomic-embed-text", input=["a", "b"]).embeddings
                assert len(vectors) == 2 and len(vectors[0]) > 8
                names = [m.model for m in client.list().models]
                assert names[:2] == ["llama3.2", "tiny"]
                assert client.show("tiny").capabilities == ["completion"]
            finally:
                client._client.close()
            assert httpx.get(f"{proxy.url}/api/version").json()["version"]
            assert httpx.get(f"{proxy.url}/").text == "Ollama is running"
    generate = next(r for r in fake.requests if r.path == "/api/chat")
    assert generate.model == "llama3.2"  # mapped from "tiny"
    assert generate.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Lyon?"},
    ]
    first = proxy.calls[0]
    assert (first.model, first.upstream_model, first.endpoint) == ("tiny", "llama3.2", "generate")
    assert first.system == "Be brief." and first.prompt == "Lyon?"
    assert [c.endpoint for c in proxy.calls] == ["generate", "generate", "embed"]
    assert proxy.calls[2].inputs == ("a", "b")


def test_openai_routes(server: ProxyServer, tmp_path: Path) -> None:
    with FakeOllama("Lyon is big", models=["llama3.2", "nomic-embed-text"]) as fake:  # noqa: SIM117 (the server outlives the proxy)
        with proxied(server, fake.url, tmp_path, "off") as proxy:
            with openai.OpenAI(timeout=5, max_retries=0) as client:
                text = client.completions.create(model="llama3.2", prompt="Lyon?")
                assert text.choices[0].text == "Lyon is big"
                streamed = client.completions.create(model="llama3.2", prompt="x", stream=True)
                assert "".join(c.choices[0].text for c in streamed) == "Lyon is big"
                # the client asks for base64 unless told otherwise
                vectors = client.embeddings.create(model="nomic-embed-text", input=["a", "b"])
                floats = client.embeddings.create(
                    model="nomic-embed-text", input="a", encoding_format="float"
                )
                assert vectors.data[0].embedding == pytest.approx(floats.data[0].embedding)
                # the test's model, then those the application asked for
                assert [m.id for m in client.models.list()] == ["llama3.2", "nomic-embed-text"]
    assert [c.endpoint for c in proxy.calls] == ["completions", "completions", "embed", "embed"]
    raw = post(
        f"{server.url}/v1/embeddings", {"model": "m", "input": "a", "encoding_format": "base64"}
    )
    assert raw.status_code == 503  # no test is using the proxy now


def test_parameters_go_upstream_and_into_the_cassette_key(
    server: ProxyServer, tmp_path: Path
) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    body = {
        "model": "llama3.2",
        "messages": QUESTION,
        "top_p": 0.5,
        "stop": ["\n"],
        "max_tokens": 20,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    }
    with FakeOllama('{"city": "Paris"}') as fake:  # noqa: SIM117 (the server outlives the proxy)
        with proxied(server, fake.url, tmp_path, "once") as proxy:
            reply = post(f"{proxy.openai_base_url}/chat/completions", body).json()
    assert reply["choices"][0]["message"]["content"] == '{"city": "Paris"}'
    (sent,) = [r.body for r in fake.requests if r.path == "/api/chat"]
    assert sent["format"] == schema
    # the client's settings, the test's deterministic defaults for what it left out
    assert sent["options"] == {
        "temperature": 0.0, "seed": 42, "num_predict": 20, "top_p": 0.5, "stop": ["\n"]
    }  # fmt: skip
    (recorded,) = json.loads((tmp_path / "test_client.json").read_text())["interactions"]
    assert recorded["request"]["options"] == {"top_p": 0.5, "stop": ["\n"]}
    assert recorded["request"]["format"] == schema
    assert proxy.calls.last.parameters["top_p"] == 0.5
    # another top_p is another request: a miss, not the recorded answer
    with proxied(server, fake.url, tmp_path, "none") as replay:
        missed = post(f"{replay.openai_base_url}/chat/completions", {**body, "top_p": 0.9})
    assert missed.status_code == 404
    assert "closest differs in options" in missed.json()["error"]["message"]
    assert isinstance(replay.fault, CassetteError)


def test_errors_in_each_api_format(server: ProxyServer, tmp_path: Path) -> None:
    with FakeOllama("ok") as fake, proxied(server, fake.url, tmp_path, "off") as proxy:
        v1, api = proxy.openai_base_url, f"{proxy.url}/api"
        legacy = {"model": "m", "messages": QUESTION, "functions": [{"name": "f"}]}
        refused = post(f"{v1}/chat/completions", legacy)
        assert refused.status_code == 400
        assert "'functions'" in refused.json()["error"]["message"]
        assert refused.json()["error"]["type"] == "invalid_request_error"
        thinking = {"model": "m", "messages": QUESTION, "think": True, "stream": False}
        assert (
            post(f"{api}/chat", thinking)
            .json()["error"]
            .startswith("the pytest-llm proxy does not serve 'think'")
        )
        unknown = httpx.get(f"{v1}/files")
        assert unknown.status_code == 404 and "/v1/chat/completions" in unknown.text
        assert httpx.get(f"{v1}/chat/completions").status_code == 405
        malformed = httpx.post(f"{api}/chat", content=b"{not json", timeout=5)
        assert malformed.status_code == 400 and "not JSON" in malformed.json()["error"]
        no_messages = post(f"{v1}/chat/completions", {"model": "m"})
        assert "'messages'" in no_messages.json()["error"]["message"]
        assert (
            post(f"{v1}/chat/completions", {**legacy, "functions": None, "n": 3}).status_code == 400
        )
        assert (
            post(f"{api}/chat", {"model": "m", "messages": QUESTION, "bogus": 1}).status_code == 400
        )
        assert proxy.fault is None  # the application's mistakes are not the test's infrastructure


def test_a_server_down_is_a_502_and_the_tests_fault(server: ProxyServer, tmp_path: Path) -> None:
    with FakeOllama("ok") as fake:
        url = fake.url
    with proxied(server, url, tmp_path, "off") as proxy:  # noqa: SIM117 (the server outlives the proxy)
        with openai.OpenAI(timeout=5, max_retries=3) as client:
            with pytest.raises(openai.APIStatusError, match="not reachable") as info:
                client.chat.completions.create(model="llama3.2", messages=QUESTION)
    assert info.value.status_code == 502
    assert len(proxy.calls) == 1  # x-should-retry: the client did not ask again
    assert proxy.calls.last.error and proxy.calls.last.status == 502
    assert proxy.fault is not None and "ollama serve" in str(proxy.fault)


@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_an_error_mid_stream_reaches_the_client(
    server: ProxyServer, tmp_path: Path, api: str
) -> None:
    reply = Reply(content="one two three four", error_after=2, error="runner crashed")
    with FakeOllama(reply) as fake, proxied(server, fake.url, tmp_path, "off") as proxy:
        if api == "openai":
            with (
                openai.OpenAI(timeout=5, max_retries=0) as client,
                pytest.raises(openai.APIError, match="runner crashed"),
            ):
                stream = client.chat.completions.create(
                    model="llama3.2", messages=QUESTION, stream=True
                )
                seen = [c.choices[0].delta.content for c in stream if c.choices]
        else:
            client = ollama.Client(timeout=5)
            seen = []
            try:
                with pytest.raises(ollama.ResponseError, match="runner crashed"):
                    for chunk in client.chat("llama3.2", QUESTION, stream=True):
                        seen.append(chunk.message.content)
            finally:
                client._client.close()
            assert seen == ["one", " two"]  # what came before the error, as it came
    assert proxy.fault is not None


def test_checks_of_what_the_application_sent(server: ProxyServer, tmp_path: Path) -> None:
    with FakeOllama(Reply(content="a b c d e", tokens_out=5)) as fake:  # noqa: SIM117 (the server outlives the proxy)
        with proxied(server, fake.url, tmp_path, "off") as proxy:
            body = {"model": "llama3.2", "messages": [{"role": "system", "content": "Be terse."},
                                                    *QUESTION]}  # fmt: skip
            post(f"{proxy.openai_base_url}/chat/completions", body)
            post(f"{proxy.openai_base_url}/chat/completions", {**body, "messages": QUESTION})
    calls = proxy.calls
    calls.assert_count(2)
    calls.assert_models("llama3.2")
    calls.assert_system_prompt("terse", every=False)
    calls.assert_max_tokens(5)
    with pytest.raises(QualityFailure, match=r"exactly 3 model call\(s\), the application made 2"):
        calls.assert_count(3)
    with pytest.raises(QualityFailure, match=r"every chat call to send a system prompt") as info:
        calls.assert_system_prompt()
    assert "1. openai chat llama3.2: 'Capital of France?' -> 'a b c d e'" in str(info.value)
    with pytest.raises(QualityFailure, match="over 4 tokens; 2 went over"):
        calls.assert_max_tokens(4)
    with pytest.raises(QualityFailure, match="'gpt-4o' only; 2 call"):
        calls.assert_models("gpt-4o")


def test_base64_embeddings_are_little_endian_float32(server: ProxyServer, tmp_path: Path) -> None:
    with FakeOllama("ok", models=["e"]) as fake, proxied(server, fake.url, tmp_path, "off") as p:
        body = {"model": "e", "input": "a"}
        floats = post(f"{p.openai_base_url}/embeddings", body).json()["data"][0]["embedding"]
        packed = post(f"{p.openai_base_url}/embeddings", {**body, "encoding_format": "base64"})
    raw = base64.b64decode(packed.json()["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(floats)}f", raw)) == pytest.approx(floats)


def test_the_environment_points_at_the_proxy_and_is_restored(
    server: ProxyServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "http://elsewhere:11434")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with proxied(server, "http://127.0.0.1:9", tmp_path, "off") as proxy:
        assert os.environ["OLLAMA_HOST"] == os.environ["OLLAMA_API_BASE"] == proxy.url
        assert os.environ["OPENAI_BASE_URL"] == os.environ["OPENAI_API_BASE"]
        assert os.environ["OPENAI_BASE_URL"] == proxy.openai_base_url == proxy.url + "/v1"
        assert os.environ["OPENAI_API_KEY"] == "pytest-llm-proxy"  # the client needs one
    assert os.environ["OLLAMA_HOST"] == "http://elsewhere:11434"
    assert "OPENAI_BASE_URL" not in os.environ and "OPENAI_API_KEY" not in os.environ
    monkeypatch.setenv("OPENAI_API_KEY", "sk-mine")
    with proxied(server, "http://127.0.0.1:9", tmp_path, "off"):
        assert os.environ["OPENAI_API_KEY"] == "sk-mine"  # a key that is set stays


def test_stopping_is_bounded_with_a_client_connection_open(tmp_path: Path) -> None:
    running = ProxyServer().start()
    with proxied(running, "http://127.0.0.1:9", tmp_path, "off"):
        idle = socket.create_connection(("127.0.0.1", int(running.url.rsplit(":", 1)[1])))
        idle.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(0.2)  # the handler waits for the rest of the body
        started = time.monotonic()
        running.stop()
        assert time.monotonic() - started < 5
    idle.settimeout(5)
    assert idle.recv(100) == b""  # the connection was shut, nothing answered
    idle.close()


def test_a_hung_server_is_a_504_within_the_test_s_timeout(
    server: ProxyServer, tmp_path: Path
) -> None:
    with FakeOllama(Reply(hang=True)) as fake:  # noqa: SIM117 (the server outlives the proxy)
        with proxied(server, fake.url, tmp_path, "off", timeout=1) as proxy:
            started = time.monotonic()
            answer = post(f"{proxy.openai_base_url}/chat/completions", {"model": "llama3.2",
                          "messages": QUESTION})  # fmt: skip
            waited = time.monotonic() - started
    assert answer.status_code == 504 and "timeout_seconds=1" in answer.json()["error"]["message"]
    assert 1 <= waited < 4.5  # bounded by the backend's deadline, not the client's timeout
    assert proxy.fault is not None


def test_concurrent_calls_of_one_test_are_recorded_and_replayed(
    server: ProxyServer, tmp_path: Path
) -> None:
    def echo(request: RecordedRequest) -> str:
        return str(request.messages[-1]["content"]).upper()

    def ask(proxy: LLMProxy) -> list[str]:
        bodies = [{"model": "llama3.2", "messages": [{"role": "user", "content": f"n {i}"}]}
                  for i in range(6)]  # fmt: skip
        url = f"{proxy.openai_base_url}/chat/completions"
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda b: post(url, b).json(), bodies))
        return [a["choices"][0]["message"]["content"] for a in answers]

    with FakeOllama(echo, token_delay=0.02) as fake:
        with proxied(server, fake.url, tmp_path, "once") as live:
            assert ask(live) == [f"N {i}" for i in range(6)]
        assert fake.max_in_flight > 1  # they were in flight together
    with proxied(server, fake.url, tmp_path, "none") as replay:
        assert ask(replay) == [f"N {i}" for i in range(6)]
    assert len(replay.calls) == 6 and all(c.cached for c in replay.calls)


def test_an_empty_answer_streams_as_one_with_its_role(server: ProxyServer, tmp_path: Path) -> None:
    with FakeOllama("") as fake, proxied(server, fake.url, tmp_path, "off"):  # noqa: SIM117
        with openai.OpenAI(timeout=5, max_retries=0) as client:
            events = client.chat.completions.stream(model="llama3.2", messages=QUESTION)
            with events as stream:
                final = stream.get_final_completion()
    assert final.choices[0].message.role == "assistant"
    assert final.choices[0].message.content in ("", None)
    assert final.choices[0].finish_reason == "stop"


# --- the handler reads a request's headers itself (no email parser) -------------------------


def _raw(server: ProxyServer, data: bytes, *, reads: int = 1) -> bytes:
    """What the server answers ``data`` with on one raw connection, until it closes or
    ``reads`` answers (each whole, by its Content-Length) have come."""
    port = int(server.url.rsplit(":", 1)[1])
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        while got.count(b"HTTP/1.") < reads or not _complete(got):
            part = sock.recv(65536)
            if not part:
                break
            got += part
    return got


def _complete(data: bytes) -> bool:
    head, _, body = data.rpartition(b"HTTP/1.")[2].partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return bool(_)


def _chat_request(version: bytes = b"HTTP/1.1", headers: bytes = b"") -> bytes:
    body = json.dumps({"model": "llama3.2", "messages": QUESTION, "stream": False}).encode()
    return (
        b"POST /api/chat " + version + b"\r\nhost: x\r\ncontent-TYPE: application/json\r\n"
        + headers + b"CONTENT-LENGTH: %d\r\n\r\n" % len(body) + body
    )  # fmt: skip


def test_raw_requests_headers_in_any_case_keep_alive_and_http_1_0(
    server: ProxyServer, tmp_path: Path
) -> None:
    with FakeOllama("Paris.") as fake, proxied(server, fake.url, tmp_path, "off") as proxy:
        two = _raw(server, _chat_request() * 2, reads=2)  # one connection, two answers
        assert two.count(b"HTTP/1.1 200 OK") == 2 and two.count(b"Paris.") == 2
        # HTTP/1.0: answered, then closed (unless it asks to keep the connection)
        old = _raw(server, _chat_request(b"HTTP/1.0"), reads=2)
        assert old.count(b"HTTP/1.1 200 OK") == 1 and b"Paris." in old
        # a folded header continues the one above; Expect: 100-continue is answered first
        folded = _raw(
            server,
            _chat_request(headers=b"X-Note: one\r\n two\r\nExpect: 100-continue\r\n"),
            reads=2,
        )
        assert folded.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
        assert b"Paris." in folded
        assert len(proxy.calls) == 4


def test_raw_requests_with_bad_headers_are_refused(server: ProxyServer, tmp_path: Path) -> None:
    with proxied(server, "http://127.0.0.1:9", tmp_path, "off"):
        no_colon = _raw(server, b"POST /api/chat HTTP/1.1\r\nHost x\r\n\r\n")
        assert no_colon.startswith(b"HTTP/1.1 400 ") and b"Bad header line" in no_colon
        many = b"".join(b"X-%d: v\r\n" % n for n in range(101))
        too_many = _raw(server, b"GET / HTTP/1.1\r\n" + many + b"\r\n")
        assert too_many.startswith(b"HTTP/1.1 431 ")
        long_line = _raw(server, b"GET / HTTP/1.1\r\nX-Long: " + b"v" * 70000 + b"\r\n\r\n")
        assert long_line.startswith(b"HTTP/1.1 431 ")
        # a request line the handler does not read itself: the base class answers it
        assert b"Error code: 505" in _raw(server, b"GET / HTTP/2.0\r\n\r\n")
        assert b"Error code: 400" in _raw(server, b"GET / HTTP/1.1 extra\r\n\r\n")
        root = _raw(server, b"GET //api/version HTTP/1.1\r\nHost: x\r\n\r\n")
        assert root.startswith(b"HTTP/1.1 200 ") and b'"version"' in root
