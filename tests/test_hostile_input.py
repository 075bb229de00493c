"""Hostile input and malformed answers (issue 10, items 3-5), run for real against FakeOllama.

Every case runs a pytester session through both backends and asserts the outcome, the
first line of the message, the number of requests the server saw and a wall-time bound.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_llm.testing import FakeOllama, RecordedRequest, Reply

BACKENDS = ["ollama", "openai"]
#: Generous: a loaded CI machine runs several sessions at once; each case takes ~1 s.
WALL_SECONDS = 30


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


def run(pytester: pytest.Pytester, backend: str, host: str, *args: str) -> pytest.RunResult:
    started = time.monotonic()
    result = pytester.runpytest(
        f"--llm-host={host}", f"--llm-backend={backend}", "-p", "no:cacheprovider", *args
    )
    assert time.monotonic() - started < WALL_SECONDS
    return result


def chats(fake: FakeOllama) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.path in ("/api/chat", "/v1/chat/completions")]


def first_line(text: str) -> str:
    """An fnmatch pattern for a message that starts with ``text`` (brackets taken literally)."""
    return text.replace("[", "[[]") + "*"


def server_name(fake: FakeOllama, backend: str) -> str:
    return f"Ollama at {fake.url}" if backend == "ollama" else f"{fake.url}/v1"


# --- the fault: a raw stream line -------------------------------------------------------------


def test_a_raw_line_goes_out_verbatim_in_both_wire_formats(fake: FakeOllama) -> None:
    import httpx

    fake.script(Reply(content="a b", raw_line="[1, 2]", raw_after=1))
    question = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=fake.url, timeout=5) as client:
        ndjson = client.post("/api/chat", json=question).text.splitlines()
        sse = client.post("/v1/chat/completions", json={**question, "stream": True}).text
    assert ndjson[1] == "[1, 2]" and json.loads(ndjson[0])["message"]["content"] == "a"
    assert json.loads(ndjson[-1])["done"] is True  # the stream goes on as scripted
    events = [e for e in sse.split("\n\n") if e]
    assert events[1] == "data: [1, 2]" and events[-1] == "data: [DONE]"
    fake.script(Reply(content="a b", raw_line="[DONE]", raw_after=9))  # past the end: last
    with httpx.Client(base_url=fake.url, timeout=5) as client:
        sse = client.post("/v1/chat/completions", json={**question, "stream": True}).text
    assert [e for e in sse.split("\n\n") if e][2] == "data: [DONE]"  # after the 2 chunks
    with pytest.raises(ValueError, match="raw_after must be >= 0"):
        Reply(raw_line="x", raw_after=-1)


def test_an_interrupting_fake_cuts_the_running_answer_when_another_arrives() -> None:
    import httpx

    question = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
    body = {**question, "stream": True}
    with (
        FakeOllama(Reply(content="one two three", token_delay=0.3), interrupting=True) as llama,
        httpx.Client(base_url=llama.url, timeout=10) as first,
        httpx.Client(base_url=llama.url, timeout=10) as second,
        first.stream("POST", "/v1/chat/completions", json=body) as running,
    ):
        lines = running.iter_lines()
        assert '"content":"one"' in next(line for line in lines if line)
        assert "finish_reason" in second.post("/v1/chat/completions", json=body).text
        rest = [line for line in lines if line]
    assert rest == ["data: [DONE]"]  # cut short: no more chunks, no finish_reason


# --- item 4: bad input stops before the first call --------------------------------------------

BAD_INPUT = """
import pytest

def test_empty_prompt(llm):
    llm.chat("")

def test_unknown_role(llm):
    llm.chat([{"role": "wizard", "content": "hi"}])

def test_content_not_a_string(llm):
    llm.chat([{"role": "user", "content": 5}])

def test_invalid_schema(llm):
    llm.chat("a city as JSON", schema={"type": "object", "properties": {"name": {"type": "strin"}}})

def test_no_messages(llm):
    llm.chat([])

def test_map_with_one_bad_prompt(llm):
    llm.map(["fine", "  "])
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_is_a_config_error_before_any_request(
    pytester: pytest.Pytester, fake: FakeOllama, backend: str
) -> None:
    pytester.makepyfile(BAD_INPUT)
    result = run(pytester, backend, fake.url)
    result.assert_outcomes(errors=6)
    result.stdout.fnmatch_lines(
        [
            first_line(
                "ConfigError: the prompt is empty (''): pass the text to send, e.g. "
                "llm.chat('Name a city')"
            ),
            first_line(
                "ConfigError: messages[0]['role']='wizard' is not a chat role: use one of "
                "'system', 'user', 'assistant', 'tool'"
            ),
            first_line("ConfigError: messages[0]['content'] is an int (5): it must be a string"),
            first_line(
                "ConfigError: schema= is not a valid JSON Schema (Draft 2020-12): at "
                "properties.name.type: 'strin' is not valid"
            ),
            first_line("ConfigError: the list of messages is empty: pass at least one"),
            first_line("ConfigError: the prompt is empty ('  ')"),
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*gave up after*")
    assert chats(fake) == []  # not one request: not even the good prompt of the map


def test_a_marker_host_that_is_no_url_fails_at_collection(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm(host="not a url")
        def test_x(llm):
            llm.chat("hi")
        """
    )
    started = time.monotonic()
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert time.monotonic() - started < WALL_SECONDS
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error: nothing ran
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*"
            + first_line(
                "test_x: llm host 'not a url' is not a valid URL: 'not a url' is not a host "
                "name; expected http(s)://HOST[:PORT], e.g. http://127.0.0.1:11434"
            )
        ]
    )


SHOW_CONFIG = """
def test_config(llm_config):
    c = llm_config
    print("CONFIG", c.timeout_seconds, c.max_retries, c.seed, c.min_score, c.model)
"""


def test_native_toml_config_takes_typed_values(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(
        """
        [tool.pytest]
        llm_timeout = 30
        llm_retries = 1
        llm_seed = 7
        llm_min_score = 0.5
        llm_model = "small"
        llm_max_score_drop = 0.2
        llm_snapshot_threshold = 0.95
        """
    )
    pytester.makepyfile(
        SHOW_CONFIG
        + "\ndef test_snapshot_threshold(pytestconfig):\n"
        + "    print('THRESHOLD', pytestconfig.getini('llm_snapshot_threshold'))\n"
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*CONFIG 30 1 7 0.5 small*", "*THRESHOLD 0.95*"])


def test_native_toml_config_takes_numbers_written_as_strings(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml('[tool.pytest]\nllm_timeout = "2.5"\nllm_retries = "3"\n')
    pytester.makepyfile(SHOW_CONFIG)
    result = pytester.runpytest("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*CONFIG 2.5 3 42 None llama3.2"])


def test_native_toml_config_takes_paths_as_strings(
    pytester: pytest.Pytester, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyprojecttoml(
        f"""
        [tool.pytest]
        llm_host = "{fake.url}"
        llm_report = "reports/run.json"
        llm_record_mode = "all"
        llm_cassette_dir = "tapes"
        llm_max_latency_factor = 3
        """
    )
    pytester.makepyfile("def test_one(llm):\n    llm.chat('hi')\n")
    monkeypatch.chdir(pytester.mkdir("elsewhere"))  # ini paths are relative to the ini file
    result = pytester.runpytest(str(pytester.path), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert json.loads((pytester.path / "reports" / "run.json").read_text())["totals"]["calls"] == 1
    assert any(path.is_file() for path in (pytester.path / "tapes").rglob("*"))


def test_classic_ini_values_still_work(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nllm_timeout = 30\nllm_retries = 1\nllm_min_score = 0.5\n")
    pytester.makepyfile(SHOW_CONFIG)
    result = pytester.runpytest("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*CONFIG 30.0 1 42 0.5 llama3.2"])


@pytest.mark.parametrize(
    ("config", "shown"),
    [
        ("[pytest]\nllm_timeout = soon\n", "*ini llm_timeout='soon' is invalid for llm setting*"),
        ("[tool.pytest]\nllm_retries = 1.5\n", "*llm_retries*expects one of int | string*1.5*"),
    ],
)
def test_a_bad_ini_value_is_a_usage_error_naming_it(
    pytester: pytest.Pytester, config: str, shown: str
) -> None:
    if config.startswith("[pytest]"):
        pytester.makeini(config)
    else:
        pytester.makepyprojecttoml(config)
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([shown])


# --- item 3: every malformed answer is a named, retryable error -------------------------------

ONE_CHAT = """
import pytest

@pytest.mark.llm(max_retries=1, retry_delay_seconds=0)
def test_chat(llm):
    print("ANSWER", llm.chat("hi").content)
"""


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("line", "ollama_says", "openai_says"),
    [
        ("[1, 2]", "a stream line is JSON but not an object (a list)",
         "a stream event is JSON but not an object: '[1, 2]'"),
        ('"text"', "a stream line is JSON but not an object (a str)",
         "a stream event is JSON but not an object: '\"text\"'"),
        ("{not json", "a stream line is not JSON (Expecting property name enclosed in double*",
         "it is not JSON (Expecting property name enclosed in double quotes): '{not json'"),
    ],
)  # fmt: skip
def test_a_malformed_stream_line_is_a_retried_response_error(
    pytester: pytest.Pytester,
    fake: FakeOllama,
    backend: str,
    line: str,
    ollama_says: str,
    openai_says: str,
) -> None:
    pytester.makepyfile(ONE_CHAT)
    fake.script(Reply(content="a b c", raw_line=line, raw_after=1))
    result = run(pytester, backend, fake.url)
    result.assert_outcomes(errors=1)
    says = ollama_says if backend == "ollama" else openai_says
    result.stdout.fnmatch_lines(
        [
            f"BackendResponseError: {server_name(fake, backend)} sent a "
            f"malformed answer for 'llama3.2': {says.replace('[', '[[]')}*"
            "(gave up after 2 attempt(s))*"
        ]
    )
    result.stdout.no_fnmatch_line("*AttributeError*")
    assert len(chats(fake)) == 2  # retried once, as a transport fault


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_malformed_line_then_a_good_answer_passes(
    pytester: pytest.Pytester, fake: FakeOllama, backend: str
) -> None:
    pytester.makepyfile(ONE_CHAT)
    fake.script([Reply(content="a b", raw_line="[1, 2]", raw_after=0), "fine"])
    result = run(pytester, backend, fake.url, "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*ANSWER fine"])
    assert len(chats(fake)) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_server_side_length_stop_names_the_servers_limit(
    pytester: pytest.Pytester, fake: FakeOllama, backend: str
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm(max_retries=0)
        def test_cut(llm):
            llm.chat("json please", json_mode=True)
        """
    )
    fake.script(Reply(content='{"a": "many words', done_reason="length"))
    result = run(pytester, backend, fake.url)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*OutputInvalid: the output of llama3.2 was rejected in all 1 attempt(s)",
            "*(the output was cut off by the server's own limit (done_reason='length'; "
            "max_tokens is not set): the model's context window*num_ctx / num_predict*",
        ]
    )
    result.stdout.no_fnmatch_line("*max_tokens=None*")
    assert len(chats(fake)) == 1


def test_an_interrupting_server_is_served_one_request_at_a_time(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm(max_retries=2, retry_delay_seconds=0.1, concurrency=4)
        def test_map(llm):
            results = llm.map([f"prompt {i}" for i in range(4)])
            print("ANSWERS", sorted({r.content for r in results}))
        """
    )
    with FakeOllama(Reply(content="a whole answer", token_delay=0.05), interrupting=True) as llama:
        result = run(pytester, "openai", llama.url, "-s")
        requests = len(chats(llama))
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*ANSWERS [[]'a whole answer']"])
    assert 4 < requests <= 12  # interrupted answers retried, within the retries


def test_an_interrupting_server_takes_turns_across_xdist_workers(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("i", range(6))
        @pytest.mark.llm(max_retries=2, retry_delay_seconds=0.1)
        def test_chat(llm, i):
            assert llm.chat(f"prompt {i}").content == "a whole answer"
        """
    )
    started = time.monotonic()
    with FakeOllama(Reply(content="a whole answer", token_delay=0.15), interrupting=True) as llama:
        result = pytester.runpytest_subprocess(
            f"--llm-host={llama.url}", "--llm-backend=openai", "-n", "2", "-p", "no:cacheprovider"
        )
        requests = len(chats(llama))
    assert time.monotonic() - started < 60
    result.assert_outcomes(passed=6)
    assert 6 < requests <= 18  # interrupted answers retried, within the retries


def test_an_interrupted_answer_names_the_servers_flag(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(ONE_CHAT.replace("max_retries=1", "max_retries=0"))
    fake.script(Reply(content="half an answer", raw_line="[DONE]", raw_after=1))
    result = run(pytester, "openai", fake.url)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"BackendResponseError: {fake.url}/v1 ended the answer of "
            "'llama3.2' without a finish_reason (the server interrupted it, e.g. "
            "llama-cpp-python's server does when another request arrives unless started with "
            "--interrupt_requests False;*"
        ]
    )
    assert len(chats(fake)) == 1


def test_a_request_the_ollama_client_refuses_is_not_retried(fake: FakeOllama) -> None:
    from pytest_llm.backends import ChatRequest
    from pytest_llm.backends.ollama import OllamaBackend
    from pytest_llm.errors import BackendResponseError

    backend = OllamaBackend(host=fake.url, timeout_seconds=5)  # below the harness's check
    with pytest.raises(BackendResponseError) as info:
        backend.chat(ChatRequest(model="llama3.2", messages=[{"role": "user", "content": 5}]))
    assert str(info.value).startswith(
        "the ollama client could not send the request for 'llama3.2': ValidationError"
    )
    assert not info.value.retryable and fake.requests == []
    backend.close()


# --- item 5: hosts and credentials ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1", "/api"])
def test_an_ollama_host_with_a_path_says_the_api_is_missing(
    pytester: pytest.Pytester, fake: FakeOllama, path: str
) -> None:
    pytester.makepyfile(ONE_CHAT)
    result = run(pytester, "ollama", fake.url + path)
    result.assert_outcomes(errors=1)
    hint = " (its OpenAI-compatible API under /v1 is --llm-backend=openai)" if path == "/v1" else ""
    result.stdout.fnmatch_lines(
        [
            f"BackendResponseError: there is no Ollama API at "
            f"{fake.url}{path} (404: *): the host must be the server's root URL, {fake.url}, "
            f"without the path '{path}'{hint} (test_*"
        ]
    )
    result.stdout.no_fnmatch_line("*ollama pull*")
    assert [r.path for r in fake.requests] == [f"{path}/api/chat"]  # not retried


SECRET = "s3cr%2Ft"  # percent-encoded in the URL: the password is "s3cr/t"
KEY = "sk-planted-key-0451"


def _secrets_in(root: Path) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode(errors="replace")
            found += [f"{path.name}: {s}" for s in ("s3cr", KEY) if s in text]
    return found


@pytest.mark.parametrize("backend", BACKENDS)
def test_url_credentials_are_basic_auth_and_win_over_the_key(
    pytester: pytest.Pytester, fake: FakeOllama, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    pytester.makepyfile(ONE_CHAT)
    host = fake.url.replace("http://", f"http://alice:{SECRET}@")
    result = run(
        pytester, backend, host, "-s", "--llm-record-mode=all", "--llm-report=run.json",
        "--llm-html=run.html", "--junitxml=junit.xml",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    basic = "Basic " + base64.b64encode(b"alice:s3cr/t").decode()
    assert [r.headers.get("authorization") for r in chats(fake)] == [basic]
    assert json.loads((pytester.path / "run.json").read_text())  # the report was written
    assert _secrets_in(pytester.path) == []
    output = result.stdout.str() + result.stderr.str()
    assert "s3cr" not in output and KEY not in output


@pytest.mark.parametrize("backend", BACKENDS)
def test_refused_url_credentials_are_named_without_showing_them(
    pytester: pytest.Pytester, fake: FakeOllama, backend: str
) -> None:
    pytester.makepyfile(ONE_CHAT)
    fake.script(Reply(status=401))
    host = fake.url.replace("http://", f"http://alice:{SECRET}@")
    result = run(pytester, backend, host)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"BackendAuthError: {server_name(fake, backend)} refused the "
            "request (401): *; the credentials in the host URL were sent (HTTP Basic auth, in "
            "place of $O*_API_KEY): check them*"
        ]
    )
    assert "s3cr" not in result.stdout.str() + result.stderr.str()
    assert len(chats(fake)) == 1  # an auth error is not retried
