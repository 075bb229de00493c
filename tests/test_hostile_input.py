"""Hostile input and malformed answers (issue 10, items 3-5), run for real against FakeOllama.

Every case runs a pytester session through both backends and asserts the outcome, the
first line of the message, the number of requests the server saw and a wall-time bound.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

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
        """
    )
    pytester.makepyfile(SHOW_CONFIG)
    result = pytester.runpytest("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*CONFIG 30 1 7 0.5 small"])


def test_native_toml_config_takes_numbers_written_as_strings(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml('[tool.pytest]\nllm_timeout = "2.5"\nllm_retries = "3"\n')
    pytester.makepyfile(SHOW_CONFIG)
    result = pytester.runpytest("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*CONFIG 2.5 3 42 None llama3.2"])


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
