"""The OpenAI-compatible backend: against FakeOllama's ``/v1`` over real HTTP, edge cases of the
wire through ``httpx.MockTransport``, and whole pytest sessions with ``--llm-backend=openai``."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator

import httpx
import pytest

from pytest_llm.backends import BackendPool, ChatRequest, create_backend
from pytest_llm.backends.ollama import OllamaBackend
from pytest_llm.backends.openai import SCHEMA_STYLES, OpenAIBackend
from pytest_llm.errors import (
    BackendAuthError,
    BackendBusy,
    BackendResponseError,
    BackendTimeout,
    BackendUnreachable,
    ModelNotFound,
)
from pytest_llm.testing import FakeOllama, RecordedRequest, Reply
from pytest_llm.testing._fake_ollama import fake_embedding

from .conftest import StallingServer, free_port

CITY = {
    "title": "City",
    "type": "object",
    "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["name", "population"],
}


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(models=["llama3.2", "small", "big"]) as server:
        yield server


@pytest.fixture
def backend(fake: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIBackend]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    b = OpenAIBackend(host=fake.url, timeout_seconds=2)
    yield b
    b.close()


def request(**kw: object) -> ChatRequest:
    fields: dict[str, object] = {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "hi"}],
    }
    return ChatRequest(**{**fields, **kw})  # type: ignore[arg-type]


def chat_bodies(fake: FakeOllama) -> list[dict[str, object]]:
    return [r.body for r in fake.requests if r.path == "/v1/chat/completions"]


# --- the wire, against FakeOllama ------------------------------------------------------------


def test_streamed_answer_with_usage_and_ttft(fake: FakeOllama, backend: OpenAIBackend) -> None:
    fake.script(Reply(content="Paris is the capital", tokens_in=12, tokens_out=4))
    c = backend.chat(request())
    assert c.content == "Paris is the capital"
    assert (c.tokens_in, c.tokens_out, c.done_reason) == (12, 4, "stop")
    assert c.metadata == {"usage_reported": True}
    assert c.ttft_ms is not None and 0 < c.ttft_ms <= c.duration_ms
    assert fake.requests[-1].stream is True


def test_calls_reuse_one_connection(fake: FakeOllama, backend: OpenAIBackend) -> None:
    """A streamed answer is read to its end, past ``[DONE]``, so the next call takes the same
    connection (httpx drops one whose response was left unread: a new connect per call)."""
    for _ in range(5):
        assert backend.chat(request()).content == "ok"
    assert fake.connections_accepted == 1


def test_the_request_maps_every_setting(fake: FakeOllama, backend: OpenAIBackend) -> None:
    backend.chat(
        request(temperature=0.3, seed=7, max_tokens=50, keep_alive="5m", options={"top_p": 0.9})
    )
    (body,) = chat_bodies(fake)
    assert body == {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.3,
        "seed": 7,
        "max_tokens": 50,
        "top_p": 0.9,
        "stream": True,
        "stream_options": {"include_usage": True},
    }  # keep_alive is Ollama's own: the OpenAI API has no such field
    assert "authorization" not in fake.requests[-1].headers


def test_base_url_gets_v1_unless_it_has_a_path() -> None:
    assert OpenAIBackend(host="http://h:8000", timeout_seconds=1).host == "http://h:8000/v1"
    assert OpenAIBackend(host="http://h:8000/", timeout_seconds=1).host == "http://h:8000/v1"
    assert OpenAIBackend(host="https://h/api/v2/", timeout_seconds=1).host == "https://h/api/v2"


def test_length_is_the_done_reason(fake: FakeOllama, backend: OpenAIBackend) -> None:
    fake.script("one two three four")
    c = backend.chat(request(max_tokens=2))
    assert (c.content, c.done_reason, c.truncated) == ("one two", "length", True)


def test_reasoning_counts_for_time_to_first_token(fake: FakeOllama, backend: OpenAIBackend) -> None:
    fake.script(Reply(content="Paris", thinking="let me think", first_token_delay=0.05))
    c = backend.chat(request())
    assert c.content == "Paris"  # reasoning is not part of the answer
    assert c.ttft_ms is not None and c.ttft_ms < c.duration_ms


def test_without_a_usage_chunk_chunks_are_counted(fake: FakeOllama, backend: OpenAIBackend) -> None:
    fake.script(Reply(content="one two three", tokens_in=9))
    # a server that ignores stream_options (llama-cpp-python) sends no usage chunk
    c = backend.chat(request(options={"stream_options": {"include_usage": False}}))
    assert (c.tokens_in, c.tokens_out) == (0, 3)
    assert c.metadata == {"usage_reported": False}


def test_schema_is_sent_as_strict_json_schema(fake: FakeOllama, backend: OpenAIBackend) -> None:
    backend.chat(request(format=CITY))
    backend.chat(request(format={"type": "object", "title": "a city / town"}))
    backend.chat(request(format="json"))
    first, odd_title, json_mode = (b["response_format"] for b in chat_bodies(fake))
    assert first == {
        "type": "json_schema",
        "json_schema": {"name": "City", "schema": CITY, "strict": True},
    }
    assert odd_title["json_schema"]["name"] == "a_city_town"  # type: ignore[index]
    assert json_mode == {"type": "json_object"}


def reject(*styles: str) -> Callable[[RecordedRequest], Reply]:
    """A server that answers 500 to the given response_format styles, as llama-cpp-python does."""

    def reply(r: RecordedRequest) -> Reply:
        rf = r.body.get("response_format") or {}
        style = rf.get("type", "") + (
            "_schema" if rf.get("type") == "json_object" and "schema" in rf else ""
        )
        if style in styles:
            return Reply(
                status=500, error=f"response_format: Input should be 'text', not {style!r}"
            )
        return Reply(content='{"name": "Lyon", "population": 500000}')

    return reply  # fmt: skip


def test_rejected_json_schema_falls_back_and_is_remembered(
    fake: FakeOllama, backend: OpenAIBackend
) -> None:
    fake.script(reject("json_schema"))
    c = backend.chat(request(format=CITY))
    assert c.content.startswith('{"name"')
    formats = [b["response_format"] for b in chat_bodies(fake)]
    assert formats == [
        {"type": "json_schema", "json_schema": {"name": "City", "schema": CITY, "strict": True}},
        {"type": "json_object", "schema": CITY},
    ]
    assert backend.schema_style == "json_object_schema"
    backend.chat(request(format=CITY))  # straight to what worked
    assert len(chat_bodies(fake)) == 3
    assert chat_bodies(fake)[-1]["response_format"] == {"type": "json_object", "schema": CITY}


def test_fallback_goes_down_to_plain_json_object(fake: FakeOllama, backend: OpenAIBackend) -> None:
    fake.script(reject("json_schema", "json_object_schema"))
    backend.chat(request(format=CITY))
    assert chat_bodies(fake)[-1]["response_format"] == {"type": "json_object"}
    assert backend.schema_style == SCHEMA_STYLES[-1]


def test_a_server_rejecting_every_style_raises_the_last_error(
    fake: FakeOllama, backend: OpenAIBackend
) -> None:
    fake.script(Reply(status=400, error="response_format is not supported"))
    with pytest.raises(BackendResponseError, match=r"\(400\): response_format is not supp"):
        backend.chat(request(format=CITY))
    assert len(chat_bodies(fake)) == len(SCHEMA_STYLES)
    assert backend.schema_style == "json_schema"  # nothing worked: nothing remembered


def test_other_errors_do_not_fall_back(fake: FakeOllama, backend: OpenAIBackend) -> None:
    fake.script(Reply(status=400, error="the prompt is too long"))
    with pytest.raises(BackendResponseError) as info:
        backend.chat(request(format=CITY))
    assert info.value.retryable is False  # a 4xx will not get better by asking again
    assert len(chat_bodies(fake)) == 1


# --- errors ---------------------------------------------------------------------------------


def test_auth_errors_name_the_variable_not_the_key(
    fake: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_LLM_KEY", "sk-secret-123")
    b = OpenAIBackend(host=fake.url, timeout_seconds=2, api_key_env="MY_LLM_KEY")
    fake.script(Reply(status=401, error="invalid api key"))
    with pytest.raises(BackendAuthError) as info:
        b.chat(request())
    message = str(info.value)
    assert "the API key comes from $MY_LLM_KEY: check its value" in message
    assert "sk-secret" not in message
    assert fake.requests[-1].headers["authorization"] == "Bearer sk-secret-123"
    b.close()


def test_forbidden_without_a_key_says_it_is_not_set(
    fake: FakeOllama, backend: OpenAIBackend
) -> None:
    fake.script(Reply(status=403, error="forbidden"))
    with pytest.raises(BackendAuthError, match=r"\$OPENAI_API_KEY, which is not set: set it, or"):
        backend.chat(request())


def test_unknown_model_names_it_and_the_models_route(backend: OpenAIBackend) -> None:
    with pytest.raises(ModelNotFound) as info:
        backend.chat(request(model="nope"))
    message = str(info.value)
    assert "model 'nope' is not served at http://127.0.0.1:" in message
    assert "/v1/models" in message and 'model "nope" not found' in message


@pytest.mark.parametrize(
    ("reply", "error", "retryable"),
    [
        (Reply(status=429), BackendBusy, True),
        (Reply(status=503), BackendBusy, True),
        (Reply(status=500, error="oops"), BackendResponseError, True),
        (Reply(status=422, error="bad request"), BackendResponseError, False),
        (Reply(content="a b c", error_after=1), BackendResponseError, True),
        (Reply(content="a b c", drop_after=1), BackendResponseError, True),
    ],
)
def test_faults_are_mapped(
    fake: FakeOllama,
    backend: OpenAIBackend,
    reply: Reply,
    error: type[Exception],
    retryable: bool,
) -> None:
    fake.script(reply)
    with pytest.raises(error) as info:
        backend.chat(request())
    assert type(info.value) is error
    assert info.value.retryable is retryable  # type: ignore[attr-defined]


def test_busy_keeps_the_status(fake: FakeOllama, backend: OpenAIBackend) -> None:
    fake.script(Reply(status=429, error="slow down"))
    with pytest.raises(BackendBusy, match=r"is busy \(429\): slow down") as info:
        backend.chat(request())
    assert info.value.status_code == 429


def test_mid_stream_error_names_it(fake: FakeOllama, backend: OpenAIBackend) -> None:
    fake.script(Reply(content="a b c", error_after=2, error="CUDA out of memory"))
    with pytest.raises(BackendResponseError, match="mid-stream: CUDA out of memory"):
        backend.chat(request())


def test_hang_times_out(fake: FakeOllama) -> None:
    fake.script(Reply(hang=True))
    b = OpenAIBackend(host=fake.url, timeout_seconds=0.3)
    with pytest.raises(BackendTimeout, match=r"timeout_seconds=0\.3; raise it"):
        b.chat(request())
    b.close()


def test_a_slow_stream_hits_the_total_deadline(fake: FakeOllama) -> None:
    # every chunk arrives within the read timeout, but the whole answer does not
    fake.script(Reply(content=" ".join(["word"] * 40), token_delay=0.02))
    b = OpenAIBackend(host=fake.url, timeout_seconds=0.25)
    with pytest.raises(BackendTimeout):
        b.chat(request())
    b.close()


def test_keep_alive_comments_do_not_extend_the_deadline() -> None:
    # a server pinging forever would otherwise hold the call: the read timeout never fires
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"
    with StallingServer(head=head, tick=b": ping\n\n", interval=0.05, limit=5) as server:
        b = OpenAIBackend(host=server.url, timeout_seconds=0.3)
        with pytest.raises(BackendTimeout, match=r"timeout_seconds=0\.3; raise it"):
            b.chat(request())
        b.close()


def test_credentials_in_the_host_reach_no_message(fake: FakeOllama) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    for url, error in ((fake.url, ModelNotFound), (down, BackendUnreachable)):
        b = OpenAIBackend(host=url.replace("://", "://user:secret@"), timeout_seconds=2)
        assert b.host == url + "/v1"
        with pytest.raises(error) as info:
            b.chat(request(model="nope"))
        assert f"{url}/v1" in str(info.value) and "secret" not in str(info.value)
        b.close()
    # the client still sends them: user:secret as basic auth
    assert fake.requests[-1].headers["authorization"] == "Basic dXNlcjpzZWNyZXQ="


def test_unreachable_names_the_base_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    b = OpenAIBackend(host=url, timeout_seconds=2)
    with pytest.raises(BackendUnreachable, match=f"nothing answers at {url}/v1: start"):
        b.chat(request())
    with pytest.raises(BackendUnreachable):
        b.embed("llama3.2", ["x"])
    b.close()


# --- embeddings, digest, the pool ------------------------------------------------------------


def test_embed_in_order(fake: FakeOllama, backend: OpenAIBackend) -> None:
    texts = ["The cat sat.", "Stock prices fell"]
    assert backend.embed("llama3.2", texts) == [fake_embedding(t) for t in texts]
    assert backend.embed("llama3.2", []) == []
    assert [r.path for r in fake.requests] == ["/v1/embeddings"]  # the empty call sent nothing
    with pytest.raises(ModelNotFound):
        backend.embed("nope", ["x"])


def test_identity_is_assembled_from_the_models_listing(
    backend: OpenAIBackend, fake: FakeOllama
) -> None:
    from pytest_llm.backends.openai import _identity

    first = backend.digest("llama3.2")  # Ollama's /v1 lists it as llama3.2:latest
    assert first is not None and first.startswith("created=")
    assert first.endswith(" id=llama3.2:latest owned_by=library")
    assert backend.digest("not-served") is None
    listed = [r for r in fake.requests if r.path == "/v1/models"]
    assert len(listed) == 1  # asked once per backend
    # vLLM and llama.cpp send the time of the response as `created`: it is left out
    row = {"id": "m", "object": "model", "created": 1_800_000_000, "root": "/w/m", "meta": {"n": 1}}
    assert _identity(row, clock=1_800_000_001) == 'id=m meta={"n":1} root=/w/m'
    assert _identity(row, clock=1_700_000_000).startswith("created=1800000000 id=m")


def test_factory_and_pool_pass_the_key_variable(fake: FakeOllama) -> None:
    b = create_backend("openai", fake.url, timeout_seconds=3, api_key_env="VLLM_KEY")
    assert isinstance(b, OpenAIBackend)
    assert (b.name, b.api_key_env, b.timeout_seconds) == ("openai", "VLLM_KEY", 3)
    b.close()
    pool = BackendPool()
    one = pool.get("openai", fake.url, timeout_seconds=3)
    assert pool.get("openai", fake.url, timeout_seconds=3) is one
    assert pool.get("openai", fake.url, timeout_seconds=3, api_key_env="OTHER") is not one
    assert one.api_key_env == "OPENAI_API_KEY"  # type: ignore[attr-defined]
    pool.close()


def test_ollama_backend_sends_a_key_from_the_named_variable(
    fake: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_PROXY_TOKEN", "tok-1")
    b = OllamaBackend(host=fake.url, timeout_seconds=2, api_key_env="OLLAMA_PROXY_TOKEN")
    b.chat(request())
    assert fake.requests[-1].headers["authorization"] == "Bearer tok-1"
    fake.script(Reply(status=401))
    with pytest.raises(BackendAuthError, match=r"\$OLLAMA_PROXY_TOKEN: check its value"):
        b.chat(request())
    b.close()


# --- edge cases of the wire (httpx.MockTransport) -------------------------------------------


def mocked(
    body: bytes, status: int = 200, content_type: str = "text/event-stream"
) -> OpenAIBackend:
    """A backend whose server always answers ``body``."""

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": content_type})

    return OpenAIBackend(
        host="http://mock/v1", timeout_seconds=2, transport=httpx.MockTransport(handler)
    )


def sse(*events: object) -> bytes:
    return b"".join(
        b"data: " + (e if isinstance(e, str) else json.dumps(e)).encode() + b"\n\n" for e in events
    )


def delta(text: str, finish: str | None = None) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


def test_sse_comments_crlf_and_no_space_after_the_colon() -> None:
    body = (
        b": keep-alive comment\r\n\r\n"
        b"event: message\r\ndata:" + json.dumps(delta("Hel")).encode() + b"\r\n\r\n"
        b"data: " + json.dumps(delta("lo", "stop")).encode() + b"\r\n\r\n"
        b"data: [DONE]\r\n\r\n"
    )
    c = mocked(body).chat(request())
    assert (c.content, c.done_reason) == ("Hello", "stop")


def test_a_multi_line_data_field_is_one_event() -> None:
    event = json.dumps(delta("Hi", "stop"), indent=1).encode().replace(b"\n", b"\ndata: ")
    c = mocked(b"data: " + event + b"\n\ndata: [DONE]\n\n").chat(request())
    assert c.content == "Hi"


def test_finish_reason_without_done_is_complete() -> None:
    assert mocked(sse(delta("ok", "stop"))).chat(request()).content == "ok"


def test_a_stream_that_just_ends_is_an_error() -> None:
    with pytest.raises(BackendResponseError, match="without a finish_reason or \\[DONE\\]"):
        mocked(sse(delta("half an"))).chat(request())


def test_done_without_a_finish_reason_is_an_interrupted_answer() -> None:
    # llama.cpp's server ends a request it interrupts with [DONE] and no finish_reason
    with pytest.raises(BackendResponseError, match="interrupted it") as info:
        mocked(sse(delta(""), "[DONE]")).chat(request())
    assert info.value.retryable


@pytest.mark.parametrize(
    "event",
    [
        {"choices": [{"delta": "hi"}]},
        {"choices": [None]},
        {"choices": "hi"},
        {**delta("hi", "stop"), "usage": [1]},
    ],
)
def test_a_badly_shaped_event_is_a_response_error(event: dict[str, object]) -> None:
    with pytest.raises(BackendResponseError, match=r"is not an (object|array) in the stream"):
        mocked(sse(event, "[DONE]")).chat(request())


def test_garbled_stream_is_a_response_error() -> None:
    with pytest.raises(BackendResponseError, match=r"sent a malformed answer.*it is not JSON"):
        mocked(b"data: {not json\n\n").chat(request())


@pytest.mark.parametrize(
    ("body", "content_type", "shown"),
    [
        (b'{"detail": "Not Found"}', "application/json", "Not Found"),  # FastAPI
        (b'{"error": "model not loaded"}', "application/json", "model not loaded"),
        (b"<html>bad gateway</html>", "text/html", "<html>bad gateway</html>"),
        (b"", "text/plain", "Bad Gateway"),
    ],
)
def test_any_error_body_gives_a_readable_message(
    body: bytes, content_type: str, shown: str
) -> None:
    with pytest.raises(BackendResponseError, match=r"\(502\): " + shown):
        mocked(body, status=502, content_type=content_type).chat(request())


# --- whole sessions ------------------------------------------------------------------------

TEST_FILE = """
import pytest
from pydantic import BaseModel
from pytest_llm import assert_schema

class City(BaseModel):
    name: str
    population: int

@pytest.mark.llm(model="small", max_retries=1, escalate_to=["big"], retry_delay_seconds=0)
def test_city(llm):
    result = llm.chat("Name a city as JSON", schema=City)
    city = assert_schema(result, City)
    assert city.name == "Lyon"
    print("ROUTE", result.route, "RETRIES", result.retries, "TOKENS", result.tokens_in,
          result.tokens_out, "TTFT_OK", 0 < result.ttft_ms <= result.duration_ms)
"""
VALID = '{"name": "Lyon", "population": 500000}'


def run(pytester: pytest.Pytester, fake: FakeOllama, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        "--llm-backend=openai", f"--llm-host={fake.url}/v1", "-p", "no:cacheprovider", *args
    )


def test_session_success_through_the_openai_route(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(TEST_FILE)
    fake.script(Reply(content=VALID, tokens_in=20, tokens_out=9))
    result = run(pytester, fake, "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["llm: model=llama3.2 backend=openai host=http://127.0.0.1:*/v1 seed=42",
         "*ROUTE ('small',) RETRIES 0 TOKENS 20 9 TTFT_OK True*"]
    )  # fmt: skip
    (body,) = chat_bodies(fake)
    assert body["response_format"]["json_schema"]["name"] == "City"  # type: ignore[index]
    assert {r.path for r in fake.requests} == {"/v1/chat/completions", "/v1/models"}


def test_session_retry_then_escalation(pytester: pytest.Pytester, fake: FakeOllama) -> None:
    pytester.makepyfile(TEST_FILE)
    fake.script({"small": "not json at all", "big": VALID})
    result = run(pytester, fake, "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*ROUTE ('small', 'big') RETRIES 2*"])
    retry = chat_bodies(fake)[1]["messages"]
    assert "not valid JSON" in retry[2]["content"]  # type: ignore[index]
    assert [b["model"] for b in chat_bodies(fake)] == ["small", "small", "big"]


def test_session_busy_server_is_retried_with_backoff(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(TEST_FILE)
    fake.script({"small": [Reply(status=503), VALID]})
    result = run(pytester, fake, "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*ROUTE ('small',) RETRIES 1*"])
    assert len(chat_bodies(fake)) == 2


def test_session_invalid_everywhere_is_a_failure_with_transcript(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(TEST_FILE)
    fake.script("{}")
    result = run(pytester, fake)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*OutputInvalid*small -> big*was rejected in all 4 attempt(s)*"])


def test_session_auth_error_names_the_variable_and_never_the_key(
    pytester: pytest.Pytester, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAM_LLM_KEY", "sk-do-not-print-me")
    pytester.makepyfile(TEST_FILE)
    fake.script(Reply(status=401, error="Incorrect API key provided"))
    result = run(pytester, fake, "--llm-api-key-env=TEAM_LLM_KEY", "--junitxml=out.xml")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*BackendAuthError: http://127.0.0.1:*/v1 refused the request (401): Incorrect API key "
         "provided; the API key comes from $TEAM_LLM_KEY: check its value, or name another "
         "variable with --llm-api-key-env*"]
    )  # fmt: skip
    assert "sk-do-not-print-me" not in result.stdout.str()
    assert "sk-do-not-print-me" not in (pytester.path / "out.xml").read_text()
    assert fake.requests[0].headers["authorization"] == "Bearer sk-do-not-print-me"


def test_session_api_key_env_from_ini(
    pytester: pytest.Pytester, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INI_KEY", "from-ini")
    pytester.makeini("[pytest]\nllm_api_key_env = INI_KEY\n")
    pytester.makepyfile(
        """
        def test_it(llm, llm_config):
            assert llm_config.api_key_env == "INI_KEY"
            llm.chat("hi")
        """
    )
    result = run(pytester, fake)
    result.assert_outcomes(passed=1)
    assert fake.requests[0].headers["authorization"] == "Bearer from-ini"


def test_session_bad_api_key_env_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--llm-api-key-env=sk-live-abc")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*api_key_env must be the NAME of an environment variable*"])
    assert "sk-live-abc" not in result.stderr.str()


def test_session_server_down_names_the_base_url(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(TEST_FILE)
    url = f"http://127.0.0.1:{free_port()}"
    result = pytester.runpytest(
        "--llm-backend=openai", f"--llm-host={url}", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*BackendUnreachable: nothing answers at {url}/v1: start*"])


def test_session_results_in_junit_xml(pytester: pytest.Pytester, fake: FakeOllama) -> None:
    pytester.makepyfile(TEST_FILE)
    fake.script(Reply(content=VALID, tokens_in=20, tokens_out=9))
    junit = pytester.path / "junit.xml"
    # per-testcase properties are xunit1's (pytest's default xunit2 has none)
    run(pytester, fake, f"--junitxml={junit}", "-o", "junit_family=xunit1").assert_outcomes(
        passed=1
    )
    prop = ET.parse(junit).find(".//property[@name='llm']")
    assert prop is not None
    (record,) = json.loads(prop.attrib["value"])
    assert (record["model"], record["tokens_in"], record["tokens_out"]) == ("small", 20, 9)
    assert 0 < record["ttft_ms"] <= record["duration_ms"]
