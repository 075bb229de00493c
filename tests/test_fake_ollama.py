"""Tests of pytest_llm.testing.FakeOllama against the official ollama client and httpx."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import ollama
import pytest

from pytest_llm.testing import FakeOllama, RecordedRequest, Reply
from pytest_llm.testing._fake_ollama import EMBEDDING_DIM, fake_embedding

USER = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama("The capital of France is Paris.") as server:
        yield server


def client(fake: FakeOllama, timeout: float = 5) -> ollama.Client:
    return ollama.Client(host=fake.url, timeout=timeout)


def raw_lines(fake: FakeOllama, path: str, body: dict[str, object]) -> list[dict[str, object]]:
    with httpx.Client(base_url=fake.url, timeout=5) as http:
        response = http.post(path, json=body)
        assert response.status_code == 200
        return [json.loads(line) for line in response.text.splitlines()]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


# ---------------------------------------------------------------------------- chat / generate


def test_chat_non_streaming(fake: FakeOllama) -> None:
    with client(fake) as c:
        response = c.chat(model="llama3.2", messages=USER, options={"temperature": 0})
    assert response.message.role == "assistant"
    assert response.message.content == "The capital of France is Paris."
    assert response.done is True
    assert response.done_reason == "stop"
    assert response.model == "llama3.2"
    assert response.eval_count == 6  # one per word-sized chunk
    assert response.prompt_eval_count == 6  # words in the messages
    assert isinstance(response.total_duration, int) and response.total_duration > 0
    assert response.load_duration is None  # zero metrics are omitted
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/api/chat")
    assert request.model == "llama3.2"
    assert request.messages == USER
    assert request.stream is False
    assert request.body["options"] == {"temperature": 0}
    assert request.headers["content-type"] == "application/json"


def test_chat_streaming(fake: FakeOllama) -> None:
    with client(fake) as c:
        chunks = list(c.chat(model="llama3.2", messages=USER, stream=True))
    assert len(chunks) == 7
    assert [ch.done for ch in chunks] == [False] * 6 + [True]
    assert chunks[1].message.content == " capital"
    assert "".join(ch.message.content or "" for ch in chunks) == "The capital of France is Paris."
    final = chunks[-1]
    assert final.message.content == ""
    assert final.done_reason == "stop"
    assert final.eval_count == 6
    assert all(ch.done_reason is None and ch.eval_count is None for ch in chunks[:-1])
    assert fake.requests[0].stream is True


def test_generate_streaming_and_not() -> None:
    with FakeOllama("Once upon a time") as fake, client(fake) as c:
        response = c.generate(model="llama3.2", prompt="Tell me a story", system="Be brief")
        assert response.response == "Once upon a time"
        assert response.done_reason == "stop"
        assert response.prompt_eval_count == 6
        assert response.eval_count == 4
        assert response.context
        chunks = list(c.generate(model="llama3.2", prompt="Tell me a story", stream=True))
    assert [ch.response for ch in chunks] == ["Once", " upon", " a", " time", ""]
    assert chunks[-1].done is True
    assert fake.requests[0].path == "/api/generate"
    assert fake.requests[0].prompt == "Tell me a story"
    assert fake.requests[0].messages == []


def test_async_client_streams() -> None:
    async def main(url: str) -> list[str]:
        async with ollama.AsyncClient(host=url, timeout=5) as c:
            stream = await c.chat(model="llama3.2", messages=USER, stream=True)
            return [chunk.message.content or "" async for chunk in stream]

    with FakeOllama("hello async world") as fake:
        assert asyncio.run(main(fake.url)) == ["hello", " async", " world", ""]


def test_thinking_is_streamed_before_content_unless_disabled() -> None:
    reply = Reply(content="42.", thinking="Let me compute.")
    with FakeOllama(reply) as fake, client(fake) as c:
        chunks = list(c.chat(model="llama3.2", messages=USER, stream=True, think=True))
        thinking = [ch.message.thinking for ch in chunks if ch.message.thinking]
        assert thinking == ["Let", " me", " compute."]
        assert chunks[3].message.content == "42."
        assert chunks[-1].eval_count == 4
        whole = c.chat(model="llama3.2", messages=USER, think=True)
        assert (whole.message.thinking, whole.message.content) == ("Let me compute.", "42.")
        off = c.chat(model="llama3.2", messages=USER, think=False)
        assert off.message.thinking is None
        assert off.message.content == "42."
        generated = c.generate(model="llama3.2", prompt="x")
        assert (generated.thinking, generated.response) == ("Let me compute.", "42.")


def test_metrics_are_integer_nanoseconds_and_zero_ones_are_omitted() -> None:
    replies = [Reply(content="a b c", load_ms=12.5, tokens_in=7, tokens_out=9), Reply(tokens_in=0)]
    with FakeOllama(replies, first_token_delay=0.02) as fake:
        lines = raw_lines(fake, "/api/chat", {"model": "llama3.2", "messages": USER})
        final = lines[-1]
        assert final["done"] is True
        assert final["load_duration"] == 12_500_000
        assert (final["prompt_eval_count"], final["eval_count"]) == (7, 9)
        for key in ("total_duration", "prompt_eval_duration", "eval_duration"):
            assert isinstance(final[key], int)
        assert isinstance(final["prompt_eval_duration"], int)
        assert final["prompt_eval_duration"] >= 20_000_000  # the first-token delay, in ns
        assert isinstance(final["total_duration"], int)
        assert final["total_duration"] >= 12_500_000 + 20_000_000
        assert list(final)[:5] == ["model", "created_at", "message", "done", "done_reason"]
        assert lines[0] == {
            "model": "llama3.2",
            "created_at": lines[0]["created_at"],
            "message": {"role": "assistant", "content": "a"},
            "done": False,
        }
        # empty content and no prompt tokens: eval_count, prompt_eval_count, load_duration omitted
        [final] = raw_lines(
            fake, "/api/chat", {"model": "llama3.2", "messages": USER, "stream": False}
        )
    assert final["message"] == {"role": "assistant", "content": ""}
    assert "load_duration" not in final
    assert "prompt_eval_count" not in final
    assert "eval_count" not in final
    assert "eval_duration" not in final
    assert isinstance(final["total_duration"], int)


def test_wire_format_headers() -> None:
    with FakeOllama("hi there") as fake, httpx.Client(base_url=fake.url, timeout=5) as http:
        streamed = http.post("/api/chat", json={"model": "llama3.2", "messages": USER})
        assert streamed.headers["content-type"] == "application/x-ndjson"
        assert streamed.headers["transfer-encoding"] == "chunked"
        whole = http.post(
            "/api/chat", json={"model": "llama3.2", "messages": USER, "stream": False}
        )
        assert whole.headers["content-type"].startswith("application/json")
        assert int(whole.headers["content-length"]) == len(whole.content)
        assert whole.http_version == "HTTP/1.1"
        # keep-alive: all of that went over one connection
        pool = http._transport._pool  # type: ignore[attr-defined]
        assert len(pool.connections) == 1


def test_unknown_model_is_404(fake: FakeOllama) -> None:
    with client(fake) as c:
        with pytest.raises(ollama.ResponseError) as info:
            c.chat(model="mistral", messages=USER)
        assert info.value.status_code == 404
        assert info.value.error == 'model "mistral" not found, try pulling it first'
        with pytest.raises(ollama.ResponseError, match="try pulling it") as info:
            list(c.generate(model="mistral", prompt="x", stream=True))
        assert info.value.status_code == 404
        # "llama3.2:latest" is the same model as "llama3.2"
        assert c.chat(model="llama3.2:latest", messages=USER).message.content


def test_models_can_be_added_later(fake: FakeOllama) -> None:
    fake.models.append("qwen3:8b")
    with client(fake) as c:
        assert c.chat(model="qwen3:8b", messages=USER).message.content
        assert [m.model for m in c.list().models] == ["llama3.2:latest", "qwen3:8b"]


def test_sequence_is_consumed_in_order_and_the_last_repeats() -> None:
    with FakeOllama(["one", Reply(content="two"), "three"]) as fake, client(fake) as c:
        answers = [c.chat(model="llama3.2", messages=USER).message.content for _ in range(3)]
        answers += [c.generate(model="llama3.2", prompt="x").response for _ in range(2)]
        c.embed(model="llama3.2", input="not a chat request")  # consumes nothing
        c.list()
        answers.append(c.chat(model="llama3.2", messages=USER).message.content)
    assert answers == ["one", "two", "three", "three", "three", "three"]


def test_mapping_per_model() -> None:
    replies = {"llama3.2": ["a1", "a2"], "qwen3": "q", "*": "fallback"}
    with FakeOllama(replies, models=["llama3.2", "gemma3"]) as fake, client(fake) as c:
        assert fake.models == ["llama3.2", "gemma3", "qwen3"]  # mapping keys are added
        assert c.chat(model="qwen3", messages=USER).message.content == "q"
        assert c.chat(model="llama3.2", messages=USER).message.content == "a1"
        assert c.chat(model="qwen3:latest", messages=USER).message.content == "q"
        assert c.chat(model="llama3.2", messages=USER).message.content == "a2"
        assert c.chat(model="llama3.2", messages=USER).message.content == "a2"
        assert c.chat(model="gemma3", messages=USER).message.content == "fallback"


def test_mapping_without_a_reply_for_the_model_is_a_500() -> None:
    with FakeOllama({"qwen3": "q"}) as fake, client(fake) as c:
        with pytest.raises(ollama.ResponseError, match="no reply scripted") as info:
            c.chat(model="llama3.2", messages=USER)
        assert info.value.status_code == 500


def test_callable_replies_see_the_request() -> None:
    def echo(request: RecordedRequest) -> str | Reply:
        if request.path == "/api/generate":
            return f"generated: {request.prompt}"
        last = request.messages[-1]["content"]
        return Reply(content=f"you said: {last}", done_reason="length")

    with FakeOllama(echo) as fake, client(fake) as c:
        response = c.chat(model="llama3.2", messages=[{"role": "user", "content": "hello"}])
        assert response.message.content == "you said: hello"
        assert response.done_reason == "length"
        assert c.generate(model="llama3.2", prompt="p").response == "generated: p"


def test_script_replaces_the_replies(fake: FakeOllama) -> None:
    with client(fake) as c:
        fake.script(["x", "y"])
        assert c.chat(model="llama3.2", messages=USER).message.content == "x"
        fake.script(Reply(content="z"))
        assert c.chat(model="llama3.2", messages=USER).message.content == "z"


def test_empty_messages_only_load_the_model(fake: FakeOllama) -> None:
    with client(fake) as c:
        loaded = c.chat(model="llama3.2", messages=[])
        assert (loaded.done, loaded.done_reason, loaded.message.content) == (True, "load", "")
        assert [m.model for m in c.ps().models] == ["llama3.2:latest"]
        unloaded = c.generate(model="llama3.2", keep_alive=0)
        assert unloaded.done_reason == "unload"
        assert c.ps().models == []


def test_num_predict_truncates_with_done_reason_length(fake: FakeOllama) -> None:
    with client(fake) as c:
        response = c.chat(model="llama3.2", messages=USER, options={"num_predict": 2})
    assert response.message.content == "The capital"
    assert response.done_reason == "length"
    assert response.eval_count == 2


# ---------------------------------------------------------------------------- faults


def test_status_fault() -> None:
    replies: list[str | Reply] = [Reply(status=503), Reply(status=500, error="boom"), "fine"]
    with FakeOllama(replies) as fake, client(fake) as c:
        with pytest.raises(ollama.ResponseError) as info:
            c.chat(model="llama3.2", messages=USER)
        assert info.value.status_code == 503
        assert info.value.error == (
            "server busy, please try again.  maximum pending requests exceeded"
        )
        with pytest.raises(ollama.ResponseError) as info:
            list(c.chat(model="llama3.2", messages=USER, stream=True))
        assert (info.value.status_code, info.value.error) == (500, "boom")
        assert c.chat(model="llama3.2", messages=USER).message.content == "fine"


def test_error_line_in_the_middle_of_a_stream() -> None:
    reply = Reply(content="one two three four", error_after=2, error="runner crashed")
    with FakeOllama(reply) as fake, client(fake) as c:
        received: list[str] = []
        with pytest.raises(ollama.ResponseError) as info:
            for chunk in c.chat(model="llama3.2", messages=USER, stream=True):
                received.append(chunk.message.content or "")
        assert received == ["one", " two"]
        assert info.value.status_code == -1
        assert info.value.error == "runner crashed"
        # not streamed: a 500 with the error
        with pytest.raises(ollama.ResponseError) as info:
            c.chat(model="llama3.2", messages=USER)
        assert info.value.status_code == 500
        # the connection is still usable afterwards
        fake.script("ok")
        assert c.chat(model="llama3.2", messages=USER).message.content == "ok"
        fake.script(Reply(content="a b", error_after=0))
        lines = raw_lines(fake, "/api/generate", {"model": "llama3.2", "prompt": "x"})
    assert lines == [{"error": "an error was encountered while running the model: unexpected EOF"}]


def test_dropped_connection_is_an_error_not_a_clean_end() -> None:
    reply = Reply(content="one two three four", drop_after=2)
    with FakeOllama(reply) as fake, client(fake) as c:
        received: list[str] = []
        with pytest.raises(httpx.RemoteProtocolError):
            for chunk in c.chat(model="llama3.2", messages=USER, stream=True):
                received.append(chunk.message.content or "")
        assert received == ["one", " two"]
        with pytest.raises(httpx.RemoteProtocolError):
            c.generate(model="llama3.2", prompt="x")
        fake.script("ok")
        assert c.chat(model="llama3.2", messages=USER).message.content == "ok"


def test_hang_times_out_the_client_and_stop_is_fast() -> None:
    fake = FakeOllama(Reply(hang=True)).start()
    try:
        with client(fake, timeout=0.3) as c:
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                c.chat(model="llama3.2", messages=USER)
            assert 0.25 < time.monotonic() - started < 5  # the client's 0.3 s, not a hang

        # a hung request without a client timeout is released by stop()
        errors: list[BaseException] = []

        def call() -> None:
            with client(fake) as c:
                try:
                    list(c.chat(model="llama3.2", messages=USER, stream=True))
                except Exception as exc:
                    errors.append(exc)

        thread = threading.Thread(target=call)
        thread.start()
        deadline = time.monotonic() + 2
        while len(fake.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fake.in_flight == 1
    finally:
        started = time.monotonic()
        fake.stop()
        assert time.monotonic() - started < 1.9  # threads ended, under stop()'s own 2 s limit
    thread.join(2)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], httpx.HTTPError)


def test_stop_is_fast_with_a_stream_in_flight() -> None:
    fake = FakeOllama(" ".join(["word"] * 100), token_delay=0.2).start()
    received: list[str] = []
    errors: list[BaseException] = []

    def call() -> None:
        with client(fake) as c:
            try:
                for chunk in c.chat(model="llama3.2", messages=USER, stream=True):
                    received.append(chunk.message.content or "")
            except Exception as exc:
                errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 2
    while not received and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    fake.stop()
    fake.stop()  # idempotent
    assert time.monotonic() - started < 1.9  # threads ended, under stop()'s own 2 s limit
    thread.join(2)
    assert received and len(received) < 100
    assert len(errors) == 1 and isinstance(errors[0], httpx.RemoteProtocolError)


# ---------------------------------------------------------------------------- timing / slots


def test_first_token_delay_and_token_delay() -> None:
    # Only the server's sleeps are bounded from below, measured from before the request
    # was sent (a loaded client may read every chunk at once, late); upper bounds are
    # generous, and the override is told from a delay far longer than any of them.
    content = " ".join(["tok"] * 10)
    with FakeOllama(content, first_token_delay=0.3, token_delay=0.05) as fake, client(fake) as c:
        started = time.perf_counter()
        ttft: float | None = None
        for chunk in c.chat(model="llama3.2", messages=USER, stream=True):
            if ttft is None and chunk.message.content:
                ttft = time.perf_counter() - started
        total = time.perf_counter() - started
        assert ttft is not None and 0.3 <= ttft < 5
        assert 0.3 + 9 * 0.05 <= total < 10  # the nine later tokens were sent 0.05 s apart
    with FakeOllama(content, first_token_delay=10, token_delay=1) as fake, client(fake) as c:
        fake.script(Reply(content="a b", first_token_delay=0.0, token_delay=0.0))  # per reply
        started = time.perf_counter()
        assert c.chat(model="llama3.2", messages=USER).message.content == "a b"
        assert time.perf_counter() - started < 5  # not the server's 10 s


def chat_together(fake: FakeOllama, n: int) -> list[str]:
    """Send n chat requests at (nearly) the same moment, from n threads."""
    clients = [client(fake) for _ in range(n)]
    barrier = threading.Barrier(n)

    def call(c: ollama.Client) -> str:
        with c:
            barrier.wait()
            return c.chat(model="llama3.2", messages=USER).message.content or ""

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(call, clients))


def test_parallel_slots_queue_requests() -> None:
    # Lower bounds only come from the server's sleeps (a loaded machine may start the
    # requests late, so they need not overlap: how many run at once is tested below).
    with FakeOllama("a b", first_token_delay=0.15, parallel=2) as fake:
        started = time.monotonic()
        answers = chat_together(fake, 4)
        elapsed = time.monotonic() - started
    assert answers == ["a b"] * 4
    assert 1 <= fake.max_in_flight <= 2
    assert elapsed >= 0.3  # at least two waves of 0.15 s


def hold_slots(fake: FakeOllama, n: int, until: Callable[[], bool]) -> list[BaseException]:
    """Send n hanging chat requests from n threads, wait (at most 10 s) for ``until``, then
    stop the fake; the errors the clients saw."""
    errors: list[BaseException] = []

    def call() -> None:
        with client(fake, timeout=30) as c:
            try:
                c.chat(model="llama3.2", messages=USER)
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(n)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while not until() and time.monotonic() < deadline:
        time.sleep(0.01)
    held = until()
    fake.stop()
    for thread in threads:
        thread.join(5)
    assert held, f"in flight: {fake.in_flight}, requests: {len(fake.requests)}"
    return errors


def test_parallel_slots_hold_the_others_back() -> None:
    # hung replies hold their slots, so how many run at once does not depend on timing
    fake = FakeOllama(Reply(hang=True), parallel=2).start()
    errors = hold_slots(fake, 4, until=lambda: len(fake.requests) == 4 and fake.in_flight == 2)
    assert fake.max_in_flight == 2
    assert len(errors) == 4  # two hung, two waiting for a slot: all ended by stop()


def test_a_burst_of_connections_is_taken_at_once() -> None:
    # With socketserver's listen backlog of 5, the kernel dropped the SYNs of a burst and
    # the clients retried them after 1 s (the first retransmission): 64 connects took 1.03 s.
    # A connection is the kernel's work, not a thread's: under load they take milliseconds.
    n = 64
    barrier = threading.Barrier(n)
    took: list[float] = []

    def connect(port: int) -> None:
        barrier.wait()
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            took.append(time.monotonic() - started)
            time.sleep(0.3)  # held open while the others connect

    with FakeOllama() as fake:
        threads = [threading.Thread(target=connect, args=(fake.port,)) for _ in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert len(took) == n
    assert max(took) < 0.9  # no SYN had to be sent again


def test_without_parallel_limit_requests_run_together() -> None:
    fake = FakeOllama(Reply(hang=True)).start()
    errors = hold_slots(fake, 3, until=lambda: fake.in_flight == 3)
    assert fake.max_in_flight == 3
    assert len(errors) == 3


# ---------------------------------------------------------------------------- other endpoints


def test_tags_show_version_and_root() -> None:
    with FakeOllama(models=["llama3.2", "nomic-embed-text"]) as fake, client(fake) as c:
        models = c.list().models
        assert [m.model for m in models] == ["llama3.2:latest", "nomic-embed-text:latest"]
        assert models[0].digest is not None and len(models[0].digest) == 64
        assert models[0].details is not None and models[0].details.family == "llama"
        shown = c.show("llama3.2")
        assert shown.details is not None and shown.details.format == "gguf"
        assert shown.modelinfo is not None
        assert shown.capabilities == ["completion"]
        assert c.show("nomic-embed-text").capabilities == ["embedding"]
        with pytest.raises(ollama.ResponseError) as info:
            c.show("mistral")
        assert info.value.status_code == 404
        with httpx.Client(base_url=fake.url, timeout=5) as http:
            assert http.get("/api/version").json() == {"version": "0.12.0"}
            root = http.get("/")
            assert (root.status_code, root.text) == (200, "Ollama is running")
            head = http.head("/")
            assert (head.status_code, head.content) == (200, b"")
            missing = http.post("/api/nope", json={})
            assert missing.status_code == 404 and "error" in missing.json()
            bad = http.post("/api/chat", content=b"{not json")
            assert bad.status_code == 400 and "error" in bad.json()
            no_model = http.post("/api/chat", json={"messages": USER})
            assert no_model.status_code == 400
    paths = [(r.method, r.path) for r in fake.requests]
    assert ("GET", "/api/tags") in paths
    assert ("POST", "/api/show") in paths
    assert ("HEAD", "/") in paths
    assert ("POST", "/api/nope") in paths
    assert fake.requests[-2].body == {}  # the malformed one


def test_digest_can_be_left_out() -> None:
    with FakeOllama(digest=False) as fake, httpx.Client(base_url=fake.url) as http:
        [entry] = http.get("/api/tags").json()["models"]
    assert "digest" not in entry
    assert entry["name"] == entry["model"] == "llama3.2:latest"


def test_embed_is_deterministic_and_similarity_aware(fake: FakeOllama) -> None:
    texts = [
        "The cat sat on the mat.",
        "the cat sat on a mat",
        "Quarterly revenue grew by twelve percent.",
    ]
    with client(fake) as c:
        response = c.embed(model="llama3.2", input=texts)
        single = c.embed(model="llama3.2", input=texts[0])
        with pytest.raises(ollama.ResponseError) as info:
            c.embed(model="mistral", input="x")
        assert info.value.status_code == 404
        legacy = c.embeddings(model="llama3.2", prompt=texts[0])
    vectors = [list(v) for v in response.embeddings]
    assert len(vectors) == 3 and all(len(v) == EMBEDDING_DIM for v in vectors)
    assert all(abs(math.fsum(x * x for x in v) - 1) < 1e-9 for v in vectors)
    assert list(single.embeddings[0]) == vectors[0] == fake_embedding(texts[0])
    assert list(legacy.embedding) == vectors[0]
    assert cosine(vectors[0], vectors[1]) > 0.8
    assert abs(cosine(vectors[0], vectors[2])) < 0.4
    assert response.model == "llama3.2"
    assert isinstance(response.total_duration, int)
    assert response.prompt_eval_count == 6 + 6 + 6
    assert fake.requests[0].body["input"] == texts


def test_refused_connection_after_stop() -> None:
    fake = FakeOllama().start()
    url = fake.url
    fake.stop()
    with ollama.Client(host=url, timeout=2) as c, pytest.raises(ConnectionError):
        c.chat(model="llama3.2", messages=USER)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", fake.port)) != 0


def test_lifecycle_and_validation() -> None:
    fake = FakeOllama()
    with pytest.raises(RuntimeError):
        _ = fake.url
    fake.stop()  # stopping a fake that never started is fine
    assert fake.start() is fake.start()
    assert fake.host == fake.url == f"http://127.0.0.1:{fake.port}"
    fake.stop()
    with pytest.raises(ValueError):
        FakeOllama([])
    with pytest.raises(ValueError):
        FakeOllama(parallel=0)
    with pytest.raises(ValueError):
        Reply(status=200)
    with pytest.raises(ValueError):
        Reply(drop_after=-1)
    with pytest.raises(TypeError):
        FakeOllama([1])  # type: ignore[list-item]


FAKE_MODULES = ("_fake_ollama", "_engine", "_http", "_ollama_routes", "_openai_routes")


@pytest.mark.parametrize("module", FAKE_MODULES)
def test_module_imports_only_the_standard_library(module: str) -> None:
    # each module of the fake imports the standard library and its sibling modules only
    import ast
    import importlib

    path = importlib.import_module(f"pytest_llm.testing.{module}").__file__
    assert path is not None
    with open(path, encoding="utf-8") as source:
        tree = ast.parse(source.read())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 0
    }
    siblings = {
        name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level > 0
        for name in ([node.module] if node.module else [a.name for a in node.names])
    }
    assert {name.split(".")[0] for name in imported} <= sys.stdlib_module_names
    assert siblings <= set(FAKE_MODULES)
