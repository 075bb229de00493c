"""FakeOllama's OpenAI-compatible ``/v1`` routes, read with plain httpx (the wire format itself)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pytest_llm.testing import FakeOllama, Reply
from pytest_llm.testing._fake_ollama import fake_embedding

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(models=["llama3.2", "big"]) as server:
        yield server


@pytest.fixture
def client(fake: FakeOllama) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, timeout=5) as c:
        yield c


def chat(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": "llama3.2", **body})


def events(response: httpx.Response) -> list[Any]:
    """The ``data`` of every server-sent event: parsed JSON, or the raw text (``[DONE]``)."""
    assert response.headers["content-type"] == "text/event-stream"
    blocks = [b for b in response.text.split("\n\n") if b.strip()]
    out = []
    for block in blocks:
        assert block.startswith("data: "), block
        data = block[len("data: ") :]
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_streamed_chat_is_server_sent_events_ending_in_done(
    fake: FakeOllama, client: httpx.Client
) -> None:
    fake.script("Paris is the capital")
    got = events(chat(client, messages=QUESTION, stream=True))
    assert got[-1] == "[DONE]"
    chunks = got[:-1]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"]["content"] for c in chunks)
    assert text == "Paris is the capital"
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 4 + ["stop"]
    assert all("usage" not in c for c in chunks)  # not asked for


def test_usage_chunk_when_asked(fake: FakeOllama, client: httpx.Client) -> None:
    fake.script(Reply(content="Paris", tokens_in=12, tokens_out=3))
    got = events(
        chat(client, messages=QUESTION, stream=True, stream_options={"include_usage": True})
    )
    usage_chunk = got[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}


def test_not_streamed_by_default_as_in_openai(fake: FakeOllama, client: httpx.Client) -> None:
    fake.script(Reply(content="Paris.", thinking="easy one"))
    response = chat(client, messages=QUESTION)
    body = response.json()
    assert response.headers["content-type"].startswith("application/json")
    assert body["object"] == "chat.completion"
    (choice,) = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": "Paris.", "reasoning": "easy one"}
    assert choice["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == 6  # words of the prompt
    assert fake.requests[-1].stream is False


def test_thinking_streams_as_reasoning(fake: FakeOllama, client: httpx.Client) -> None:
    fake.script(Reply(content="Paris", thinking="let me think"))
    deltas = [
        e["choices"][0]["delta"] for e in events(chat(client, messages=QUESTION, stream=True))[:-2]
    ]
    assert [d.get("reasoning") for d in deltas] == ["let", " me", " think", None]
    assert [d["content"] for d in deltas] == ["", "", "", "Paris"]


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_caps_the_answer(fake: FakeOllama, client: httpx.Client, field: str) -> None:
    fake.script("one two three four")
    body = chat(client, messages=QUESTION, **{field: 2}).json()
    assert body["choices"][0]["message"]["content"] == "one two"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize(
    ("reply", "status", "kind", "message"),
    [
        (Reply(status=401, error="bad key"), 401, "api_error", "bad key"),
        (Reply(status=429), 429, "api_error", "too many requests"),
        (Reply(status=503), 503, "api_error", "server busy"),
        (Reply(status=400, error="no"), 400, "invalid_request_error", "no"),
    ],
)
def test_scripted_statuses_have_openai_error_bodies(
    fake: FakeOllama,
    client: httpx.Client,
    reply: Reply,
    status: int,
    kind: str,
    message: str,
) -> None:
    fake.script(reply)
    response = chat(client, messages=QUESTION, stream=True)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == kind
    assert message in error["message"]


def test_unknown_model_missing_model_and_no_messages(client: httpx.Client) -> None:
    missing = client.post("/v1/chat/completions", json={"model": "nope", "messages": QUESTION})
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    assert 'model "nope" not found' in missing.json()["error"]["message"]
    no_model = client.post("/v1/chat/completions", json={"messages": QUESTION})
    assert no_model.status_code == 400
    assert no_model.json()["error"]["message"] == "model is required"
    assert chat(client, messages=[]).status_code == 400


def test_unknown_v1_route_is_openai_shaped_and_ollama_routes_are_not(
    client: httpx.Client,
) -> None:
    response = client.post("/v1/completions", json={})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
    ollama_style = client.post("/api/chat", json={"model": "nope", "messages": QUESTION})
    assert isinstance(ollama_style.json()["error"], str)


def test_error_mid_stream_is_an_error_event_without_done(
    fake: FakeOllama, client: httpx.Client
) -> None:
    fake.script(Reply(content="Lyon is big", error_after=1, error="runner crashed"))
    got = events(chat(client, messages=QUESTION, stream=True))
    assert got[0]["choices"][0]["delta"]["content"] == "Lyon"
    assert got[1] == {
        "error": {"message": "runner crashed", "type": "api_error", "param": None, "code": None}
    }
    assert len(got) == 2


def test_error_without_stream_is_a_500(fake: FakeOllama, client: httpx.Client) -> None:
    fake.script(Reply(content="Lyon is big", error_after=1))
    response = chat(client, messages=QUESTION)
    assert response.status_code == 500
    assert "unexpected EOF" in response.json()["error"]["message"]


def test_drop_closes_the_connection_mid_stream(fake: FakeOllama, client: httpx.Client) -> None:
    fake.script(Reply(content="one two three", drop_after=1))
    received: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        client.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "llama3.2", "messages": QUESTION, "stream": True},
        ) as response,
    ):
        received.extend(line for line in response.iter_lines() if line)
    assert len(received) == 1 and '"one"' in received[0]


def test_hang_never_answers(fake: FakeOllama) -> None:
    fake.script(Reply(hang=True))
    with httpx.Client(base_url=fake.url, timeout=0.3) as c, pytest.raises(httpx.ReadTimeout):
        chat(c, messages=QUESTION, stream=True)


def test_first_token_delay_holds_back_the_first_event(fake: FakeOllama) -> None:
    fake.script(Reply(content="late answer", first_token_delay=0.2))
    with httpx.Client(base_url=fake.url, timeout=5) as c:
        start = time.perf_counter()
        with c.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "llama3.2", "messages": QUESTION, "stream": True},
        ) as response:
            first = next(line for line in response.iter_lines() if line)
            waited = time.perf_counter() - start
            assert '"late"' in first
            assert waited >= 0.2  # a lower bound only: the fake sleeps before the first token


def test_models_lists_every_model(fake: FakeOllama, client: httpx.Client) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["llama3.2:latest", "big:latest"]
    assert {m["object"] for m in body["data"]} == {"model"}
    assert client.head("/v1/models").status_code == 200


def test_embeddings_in_order_with_usage(client: httpx.Client) -> None:
    texts = ["The cat sat.", "Stock prices fell"]
    body = client.post("/v1/embeddings", json={"model": "llama3.2", "input": texts}).json()
    assert [row["index"] for row in body["data"]] == [0, 1]
    assert [row["embedding"] for row in body["data"]] == [fake_embedding(t) for t in texts]
    assert body["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
    one = client.post("/v1/embeddings", json={"model": "llama3.2", "input": "The cat sat."})
    assert one.json()["data"][0]["embedding"] == fake_embedding("The cat sat.")


def test_embeddings_errors_are_openai_shaped(client: httpx.Client) -> None:
    bad = client.post("/v1/embeddings", json={"model": "llama3.2", "input": [1, 2]})
    assert bad.status_code == 400
    assert bad.json()["error"]["message"] == "invalid input type"
    missing = client.post("/v1/embeddings", json={"model": "nope", "input": "x"})
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"


def test_requests_are_recorded_with_their_headers(fake: FakeOllama, client: httpx.Client) -> None:
    client.post(
        "/v1/chat/completions",
        json={"model": "llama3.2", "messages": QUESTION},
        headers={"Authorization": "Bearer abc"},
    )
    (request,) = fake.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer abc"
    assert request.messages == QUESTION
