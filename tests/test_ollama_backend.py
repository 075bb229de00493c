"""The Ollama backend against FakeOllama over real HTTP: the wire format and every mapped error."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_llm.backends import BackendPool, ChatRequest
from pytest_llm.backends.ollama import OllamaBackend
from pytest_llm.errors import (
    BackendAuthError,
    BackendBusy,
    BackendResponseError,
    BackendTimeout,
    BackendUnreachable,
    ModelNotFound,
)
from pytest_llm.testing import FakeOllama, Reply

from .conftest import StallingServer


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(models=["llama3.2", "embedder"]) as server:
        yield server


@pytest.fixture
def backend(fake: FakeOllama) -> Iterator[OllamaBackend]:
    b = OllamaBackend(host=fake.url, timeout_seconds=2)
    yield b
    b.close()


def request(**kw: object) -> ChatRequest:
    fields: dict[str, object] = {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "hi"}],
    }
    return ChatRequest(**{**fields, **kw})  # type: ignore[arg-type]


def test_streamed_answer_with_metrics(fake: FakeOllama, backend: OllamaBackend) -> None:
    fake.script(Reply(content="Paris is the capital", tokens_in=12, tokens_out=4, load_ms=80))
    c = backend.chat(request())
    assert c.content == "Paris is the capital"
    assert (c.tokens_in, c.tokens_out, c.done_reason) == (12, 4, "stop")
    assert c.load_ms == pytest.approx(80, abs=1)
    assert c.ttft_ms is not None and 0 < c.ttft_ms <= c.duration_ms
    assert fake.requests[-1].stream is True


def test_missing_metrics_do_not_break_the_result(fake: FakeOllama, backend: OllamaBackend) -> None:
    fake.script(Reply(content="x", load_ms=0))  # zero metrics are omitted on the wire
    assert backend.chat(request()).load_ms == 0.0


def test_options_go_where_ollama_expects_them(fake: FakeOllama, backend: OllamaBackend) -> None:
    schema = {"type": "object"}
    backend.chat(
        request(format=schema, temperature=0.3, seed=7, max_tokens=50, keep_alive="5m",
                options={"top_p": 0.9})
    )  # fmt: skip
    body = fake.requests[-1].body
    assert body["format"] == schema
    assert body["keep_alive"] == "5m"
    assert body["options"] == {"temperature": 0.3, "seed": 7, "num_predict": 50, "top_p": 0.9}


def test_length_done_reason(fake: FakeOllama, backend: OllamaBackend) -> None:
    fake.script("one two three four")
    c = backend.chat(request(max_tokens=2))
    assert c.truncated and c.content == "one two"


def test_thinking_counts_for_time_to_first_token(fake: FakeOllama, backend: OllamaBackend) -> None:
    fake.script(Reply(thinking="hmm", content="yes", token_delay=0.5))
    c = backend.chat(request())
    assert c.content == "yes"
    assert c.ttft_ms is not None and c.ttft_ms < 400  # the thinking chunk came 0.5 s earlier


def test_model_not_found(backend: OllamaBackend) -> None:
    with pytest.raises(ModelNotFound, match="run `ollama pull nope`") as info:
        backend.chat(request(model="nope"))
    assert not info.value.retryable


@pytest.mark.parametrize(
    ("reply", "error", "retryable"),
    [
        (Reply(status=503), BackendBusy, True),
        (Reply(status=429, error="slow down"), BackendBusy, True),
        (Reply(status=500, error="boom"), BackendResponseError, True),
        (Reply(status=400, error="bad request"), BackendResponseError, False),
        (Reply(status=401, error="unauthorized"), BackendAuthError, False),
        (
            Reply(content="a b c d", error_after=2, error="out of memory"),
            BackendResponseError,
            True,
        ),
        (Reply(content="a b c d", drop_after=2), BackendResponseError, True),
    ],
)
def test_faults_are_mapped(
    fake: FakeOllama,
    backend: OllamaBackend,
    reply: Reply,
    error: type[Exception],
    retryable: bool,
) -> None:
    fake.script(reply)
    with pytest.raises(error) as info:
        backend.chat(request())
    assert info.value.retryable is retryable  # type: ignore[attr-defined]
    assert fake.url in str(info.value)


def test_mid_stream_error_names_it(fake: FakeOllama, backend: OllamaBackend) -> None:
    fake.script(Reply(content="a b c", error_after=1, error="CUDA out of memory"))
    with pytest.raises(BackendResponseError, match="mid-stream: CUDA out of memory"):
        backend.chat(request())


def test_hang_times_out(fake: FakeOllama) -> None:
    fake.script(Reply(hang=True))
    backend = OllamaBackend(host=fake.url, timeout_seconds=0.3)
    with pytest.raises(BackendTimeout, match=r"timeout_seconds=0\.3"):
        backend.chat(request())
    backend.close()


def test_a_slow_stream_hits_the_total_deadline(fake: FakeOllama) -> None:
    # each token arrives within the read timeout, but the whole answer takes too long
    fake.script(Reply(content=" ".join(["w"] * 50), token_delay=0.05))
    backend = OllamaBackend(host=fake.url, timeout_seconds=0.5)
    with pytest.raises(BackendTimeout):
        backend.chat(request())
    backend.close()


def test_unreachable_names_the_host() -> None:
    with FakeOllama() as stopped:
        url = stopped.url
    backend = OllamaBackend(host=url, timeout_seconds=2)
    with pytest.raises(BackendUnreachable, match=f"not reachable at {url}: start it with"):
        backend.chat(request())
    with pytest.raises(BackendUnreachable):
        backend.embed("embedder", ["x"])


def test_embed_and_digest(fake: FakeOllama, backend: OllamaBackend) -> None:
    vectors = backend.embed("embedder", ["the cat sat", "the cat sat down", "quantum physics"])
    assert len(vectors) == 3 and all(len(v) == len(vectors[0]) > 0 for v in vectors)
    digest = backend.digest("llama3.2")
    assert digest is not None and len(digest) == 64
    assert backend.digest("llama3.2:latest") == digest
    assert backend.digest("absent") is None
    with pytest.raises(ModelNotFound):
        backend.embed("absent", ["x"])


def test_pool_reuses_one_backend_per_server(fake: FakeOllama) -> None:
    pool = BackendPool()
    a = pool.get("ollama", fake.url, timeout_seconds=5)
    assert pool.get("ollama", fake.url, timeout_seconds=5) is a
    assert pool.get("ollama", fake.url, timeout_seconds=9) is not a
    pool.close()


def test_credentials_in_the_host_reach_no_message(fake: FakeOllama) -> None:
    with FakeOllama() as stopped:
        down = stopped.url
    for url, error in ((fake.url, ModelNotFound), (down, BackendUnreachable)):
        backend = OllamaBackend(host=url.replace("://", "://user:secret@"), timeout_seconds=2)
        assert backend.host == url
        with pytest.raises(error) as info:
            backend.chat(request(model="nope"))
        assert url in str(info.value) and "secret" not in str(info.value)
        backend.close()


def test_a_failed_model_listing_is_not_asked_for_again() -> None:
    # a wedged server costs one timeout per session, not one per test (new_episodes asks often)
    with StallingServer() as server:
        backend = OllamaBackend(host=server.url, timeout_seconds=0.5)
        with pytest.raises(BackendTimeout):
            backend.digest("llama3.2")
        assert backend.digest("llama3.2") is None
        assert backend.digest("other") is None
        backend.close()
    assert server.accepted == 1
