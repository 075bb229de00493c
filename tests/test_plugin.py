"""Acceptance tests: whole pytest sessions (pytester) running the plugin against FakeOllama."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from pytest_llm.testing import FakeOllama

from .conftest import free_port

VALID = '{"name": "Lyon", "population": 500000}'

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
    print("ROUTE", result.route, "RETRIES", result.retries)
"""


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(models=["small", "big", "llama3.2"]) as server:
        yield server


def run(pytester: pytest.Pytester, fake: FakeOllama, *args: str) -> pytest.RunResult:
    return pytester.runpytest(f"--llm-host={fake.url}", "-p", "no:cacheprovider", *args)


def chat_requests(fake: FakeOllama) -> list[dict[str, object]]:
    return [r.body for r in fake.requests if r.path == "/api/chat"]


def test_success_first_time(pytester: pytest.Pytester, fake: FakeOllama) -> None:
    pytester.makepyfile(TEST_FILE)
    fake.script(VALID)
    result = run(pytester, fake, "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*ROUTE ('small',) RETRIES 0*"])
    (body,) = chat_requests(fake)
    assert body["format"]["title"] == "City"  # type: ignore[index]
    assert body["options"] == {"temperature": 0.0, "seed": 42}


def test_invalid_json_then_valid_retries_once(pytester: pytest.Pytester, fake: FakeOllama) -> None:
    pytester.makepyfile(TEST_FILE)
    fake.script(["this is not json", VALID])
    result = run(pytester, fake, "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*ROUTE ('small',) RETRIES 1*"])
    retry = chat_requests(fake)[1]["messages"]
    assert retry[1] == {"role": "assistant", "content": "this is not json"}  # type: ignore[index]
    assert "not valid JSON" in retry[2]["content"]  # type: ignore[index]


def test_escalation_after_invalid_output(pytester: pytest.Pytester, fake: FakeOllama) -> None:
    pytester.makepyfile(TEST_FILE)
    fake.script({"small": "{}", "big": VALID})
    result = run(pytester, fake, "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*ROUTE ('small', 'big') RETRIES 2*"])
    assert [b["model"] for b in chat_requests(fake)] == ["small", "small", "big"]


def test_always_invalid_fails_with_transcript(pytester: pytest.Pytester, fake: FakeOllama) -> None:
    pytester.makepyfile(TEST_FILE)
    fake.script("no city here")
    result = run(pytester, fake)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*OutputInvalid: the output of small -> big was rejected in all 4 attempt(s)",
            "*prompt: 'Name a city as JSON'",
            "*attempt 1 [[]small,*validation: the output is not valid JSON*",
            "*output: 'no city here'",
            "*attempt 4 [[]big,*",
        ]
    )
    result.stdout.no_fnmatch_line("*def _run*")  # the harness's frames are hidden


def test_server_down_is_an_error_naming_the_host(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(TEST_FILE)
    host = f"http://127.0.0.1:{free_port()}"
    result = pytester.runpytest(f"--llm-host={host}", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [f"*BackendUnreachable: Ollama is not reachable at {host}: start it with `ollama serve`*"]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*httpx*")


def test_unknown_model_says_ollama_pull(pytester: pytest.Pytester, fake: FakeOllama) -> None:
    pytester.makepyfile(TEST_FILE)
    fake.models[:] = ["other"]
    result = run(pytester, fake)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*ModelNotFound: model 'small' is not available*ollama pull small*"]
    )
    assert len(chat_requests(fake)) == 1  # a missing model is not retried


def test_timeout_after_retries_names_the_setting(pytester: pytest.Pytester) -> None:
    from pytest_llm.testing import Reply

    pytester.makepyfile(
        """
        import pytest

        # the call's budget leaves room for the second attempt on a loaded machine
        @pytest.mark.llm(
            timeout_seconds=0.2, total_timeout_seconds=5, max_retries=1, retry_delay_seconds=0
        )
        def test_slow(llm):
            llm.chat("hi")
        """
    )
    with FakeOllama(Reply(hang=True)) as fake:
        result = run(pytester, fake)
        assert len(chat_requests(fake)) == 2
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*BackendTimeout: no answer from 'llama3.2'*timeout_seconds=0.2*--llm-timeout*after 2*"]
    )


def test_truncated_output_is_explained(pytester: pytest.Pytester, fake: FakeOllama) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm(model="small", max_tokens=2, max_retries=0)
        def test_cut(llm):
            llm.chat("json please", json_mode=True)
        """
    )
    fake.script('{"a": "many words that go on"}')
    result = run(pytester, fake)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*cut off: it reached max_tokens=2 (done_reason='length')*"])


def test_ttft_is_measured_from_the_stream(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_timing(llm):
            result = llm.chat("hi")
            print("TIMING", result.ttft_ms, result.duration_ms, result.tokens_out)
            assert 250 <= result.ttft_ms <= 600
            assert result.duration_ms > result.ttft_ms
        """
    )
    with FakeOllama("one two three four five", first_token_delay=0.3, token_delay=0.01) as fake:
        result = run(pytester, fake, "-s")
    result.assert_outcomes(passed=1)


def test_unknown_marker_keyword_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm(modle="x")
        def test_typo(llm):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*unknown llm setting(s) 'modle'; valid fields are: api_key_env, backend, *"]
    )


def test_bad_marker_value_names_the_field(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm(temperature="hot")
        def test_bad(llm):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*llm setting temperature='hot' is invalid*"])


def test_precedence_marker_cli_ini_env(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "envhost:1")
    pytester.makeini("[pytest]\nllm_model = from-ini\nllm_retries = 5\nllm_seed = 7\n")
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.llm(max_retries=1, temperature=0.5)

        class TestPrecedence:
            pytestmark = pytest.mark.llm(max_retries=2)

            @pytest.mark.llm(model="from-marker")
            def test_function_marker(self, llm_config):
                assert llm_config.model == "from-marker"
                assert llm_config.max_retries == 2
                assert llm_config.temperature == 0.5
                assert llm_config.seed == 3
                assert llm_config.host == "http://envhost:1"

        def test_cli_beats_ini(llm_config):
            assert llm_config.model == "from-cli"
            assert llm_config.max_retries == 1
        """
    )
    result = pytester.runpytest("--llm-model=from-cli", "--llm-seed=3", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["llm: model=from-cli backend=ollama host=http://envhost:1 seed=3"])


def test_bad_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--llm-retries=lots")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llm-retries='lots' is invalid for llm setting max_retries*"])


def test_results_travel_in_user_properties_and_junit(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(TEST_FILE)
    fake.script(["bad", VALID])
    junit = pytester.path / "junit.xml"
    result = run(pytester, fake, f"--junitxml={junit}", "-o", "junit_family=xunit1")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*PytestWarning*")
    prop = ET.parse(junit).find(".//property[@name='llm']")
    assert prop is not None
    (record,) = json.loads(prop.attrib["value"])
    assert record["route"] == ["small"]
    assert record["retries"] == 1 and record["attempts"] == 2
    assert record["tokens_out"] > 0 and record["ttft_ms"] <= record["duration_ms"]


@pytest.mark.parametrize("dist", [["-n", "2"], ["-p", "no:xdist"]])
def test_same_results_with_and_without_xdist(
    pytester: pytest.Pytester, fake: FakeOllama, dist: list[str]
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("i", range(4))
        def test_many(llm, i):
            assert llm.chat(f"say {i}").content == "ok"

        def test_down(llm):
            llm.chat("x", host="http://127.0.0.1:9", max_retries=0)
        """
    )
    fake.script("ok")
    result = pytester.runpytest_subprocess(f"--llm-host={fake.url}", *dist)
    result.assert_outcomes(passed=4, errors=1)
    assert len(chat_requests(fake)) == 4


def test_plugin_can_be_disabled(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(llm): pass")
    result = pytester.runpytest("-p", "no:llm")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'llm' not found*"])


def test_fake_ollama_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_fixture(fake_ollama, llm):
            fake_ollama.script(["nope", '{"ok": true}'])
            result = llm.chat("answer", json_mode=True, host=fake_ollama.url)
            assert result.parsed == {"ok": True} and result.retries == 1
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_markers_added_after_collection_count(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        def pytest_collection_modifyitems(items):
            for item in items:
                item.add_marker(pytest.mark.llm(model="from-hook"))
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm(temperature=0.5)
        def test_marked(llm_config):
            assert (llm_config.model, llm_config.temperature) == ("from-hook", 0.5)

        def test_unmarked(llm_config):
            assert llm_config.model == "from-hook"
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_a_malformed_host_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--llm-host=http://gpu1:1l434")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*llm host 'http://gpu1:1l434' is not a valid URL*"])


def test_the_header_never_shows_credentials(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--llm-host=http://alice:s3cret@127.0.0.1:9")
    result.stdout.fnmatch_lines(["llm: model=llama3.2 backend=ollama host=http://127.0.0.1:9 *"])
    assert "s3cret" not in result.stdout.str()
