"""``llm_proxy`` in whole pytest sessions (pytester): an application's own model calls,
through the official ``openai`` client, in every record mode, with a changed model, a miss,
under xdist, in the reports, and with no API key written anywhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_llm.testing import FakeOllama, RecordedRequest

APP_TEST = """
import openai

def triage(text):  # the application: its own client, its own prompt
    with openai.OpenAI(timeout=10, max_retries=0) as client:  # OPENAI_BASE_URL: llm_proxy
        answer = client.chat.completions.create(
            model="llama3.2",
            messages=[{"role": "system", "content": "Answer with one word."},
                      {"role": "user", "content": text}],
        )
    return answer.choices[0].message.content

def test_app(llm_proxy):
    assert triage("Capital of France?") == "Paris."
    llm_proxy.calls.assert_count(1)
    llm_proxy.calls.assert_system_prompt("one word")
    print("CACHED", llm_proxy.calls.last.cached)
"""


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama("Paris.") as server:
        yield server


def run(pytester: pytest.Pytester, host: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest(f"--llm-host={host}", "-p", "no:cacheprovider", "-s", *args)


def chats(fake: FakeOllama) -> int:
    return sum(1 for r in fake.requests if r.path == "/api/chat")


def cassette(pytester: pytest.Pytester) -> Path:
    return pytester.path / "cassettes" / "test_app" / "test_app.json"


def test_the_same_application_test_in_each_record_mode(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(test_app=APP_TEST)
    run(pytester, fake.url).assert_outcomes(passed=1)  # off: live, nothing written
    assert chats(fake) == 1 and not cassette(pytester).exists()
    result = run(pytester, fake.url, "--llm-record-mode=once")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*CACHED False*"])
    recorded = json.loads(cassette(pytester).read_text())["interactions"]
    assert recorded[0]["request"]["messages"][1] == {
        "role": "user",
        "content": "Capital of France?",
    }
    assert recorded[0]["model_identity"] == fake.digest_of("llama3.2")
    for mode in ("once", "verify", "new_episodes"):  # replayed, the server asked nothing
        result = run(pytester, fake.url, f"--llm-record-mode={mode}")
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["*CACHED True*"])
    assert chats(fake) == 2
    run(pytester, fake.url, "--llm-record-mode=all").assert_outcomes(passed=1)
    assert chats(fake) == 3  # all: live again, and written again
    url = fake.url
    fake.stop()
    result = run(pytester, url, "--llm-record-mode=none")  # offline
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*CACHED True*"])


def test_a_changed_model_is_refused_as_a_harness_call_would_be(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(test_app=APP_TEST)
    run(pytester, fake.url, "--llm-record-mode=once").assert_outcomes(passed=1)
    fake.digests["llama3.2"] = "sha256:" + "e" * 64  # the tag was pulled again
    result = run(pytester, fake.url, "--llm-record-mode=none")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*CassetteError: the model changed since test test_app.py::test_app was recorded*"
         "Re-record with: pytest test_app.py::test_app --llm-record-mode=all*"]
    )  # fmt: skip
    assert chats(fake) == 1
    result = run(pytester, fake.url, "--llm-record-mode=new_episodes")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_app.py::test_app: re-recorded, the model changed*"])
    assert chats(fake) == 2


SWALLOWING_APP = """
import openai

def test_app(llm_proxy):
    with openai.OpenAI(timeout=10, max_retries=0) as client:
        try:
            client.chat.completions.create(
                model="llama3.2", messages=[{"role": "user", "content": "Capital of France?"}]
            )
        except openai.NotFoundError as exc:  # the application falls back on an error...
            print("CLIENT SAW", exc.status_code, exc.message[:60])
    assert len(llm_proxy.calls) == 1 and llm_proxy.calls.last.status == 404
"""


def test_a_miss_in_none_is_the_client_s_error_and_the_test_s(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(test_app=SWALLOWING_APP)
    result = run(pytester, fake.url, "--llm-record-mode=none")
    result.assert_outcomes(errors=1)  # ... and the test is an error all the same
    result.stdout.fnmatch_lines(
        [
            "*CLIENT SAW 404 Error code: 404 - pytest-llm proxy: no recorded answer for t*",
            "*CassetteError: no recorded answer for test test_app.py::test_app (chat with model"
            " 'llama3.2', prompt 'Capital of France?') in record mode 'none'*"
            "Record it with: pytest test_app.py::test_app --llm-record-mode=once*",
        ]
    )
    assert chats(fake) == 0


INTERLEAVED = """
import threading, openai, pytest

@pytest.mark.parametrize("who", ["alpha", "beta"])
def test_app(llm_proxy, who):
    with openai.OpenAI(timeout=20, max_retries=0) as client:
        for n in range(4):
            client.chat.completions.create(
                model="llama3.2", messages=[{"role": "user", "content": f"{who} {n}"}]
            )
    assert [c.prompt for c in llm_proxy.calls] == [f"{who} {n}" for n in range(4)]
    assert [c.output for c in llm_proxy.calls] == [f"{who} {n}".upper() for n in range(4)]
"""


def test_two_tests_interleaving_under_xdist_keep_their_own_calls(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_app=INTERLEAVED)

    def echo(request: RecordedRequest) -> str:
        return str(request.messages[-1]["content"]).upper()

    with FakeOllama(echo, token_delay=0.05, first_token_delay=0.05) as fake:
        result = run(pytester, fake.url, "-n", "2", "--llm-report=report.json")
        result.assert_outcomes(passed=2)
        served = [r.messages[0]["content"] for r in fake.requests if r.path == "/api/chat"]
    # both tests were running at once: their prompts reached the server interleaved
    firsts = [p.split()[0] for p in served]
    assert firsts != sorted(firsts), served
    report = json.loads((pytester.path / "report.json").read_text())
    answers = {t["nodeid"]: [c["answer"] for c in t["llm"]] for t in report["tests"]}
    for who in ("alpha", "beta"):  # each test's report holds its own calls
        assert sorted(answers[f"test_app.py::test_app[{who}]"]) == [
            f"{who} {n}".upper() for n in range(4)
        ]


REPORTED_APP = """
import openai

def test_app(llm_proxy):
    with openai.OpenAI(timeout=10, max_retries=0) as client:
        answer = client.chat.completions.create(
            model="llama3.2", messages=[{"role": "user", "content": "Capital of France?"}]
        )
    assert answer.choices[0].message.content == "Paris."
"""


def test_proxied_calls_are_in_the_summary_and_the_reports(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(test_app=REPORTED_APP)
    result = run(pytester, fake.url, "--llm-report=report.json", "--llm-html=report.html")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*llm summary*"])
    report = json.loads((pytester.path / "report.json").read_text())
    (test,) = report["tests"]
    assert test["nodeid"] == "test_app.py::test_app"
    assert test["calls"] == 1
    (call,) = test["llm"]
    assert call["model"] == "llama3.2" and call["tokens_out"] == 1
    assert call["ttft_ms"] is not None  # measured from the upstream stream
    assert report["totals"]["llm_tests"] == 1
    # the baseline gate compares proxied calls like any: the same run is no regression
    run(pytester, fake.url, "--llm-baseline=report.json").assert_outcomes(passed=1)


KEYED_APP = """
import os, openai

def test_app(llm_proxy):
    assert os.environ["OPENAI_API_KEY"].startswith("sk-planted-")  # the real key
    with openai.OpenAI(timeout=10, max_retries=0) as client:  # sends the key to the proxy
        answer = client.chat.completions.create(
            model="llama3.2", messages=[{"role": "user", "content": "Capital of France?"}]
        )
    print(answer.choices[0].message.content)
"""


def test_a_planted_api_key_goes_upstream_and_is_written_nowhere(
    pytester: pytest.Pytester, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-planted-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    pytester.makepyfile(test_app=KEYED_APP)
    result = run(
        pytester,
        fake.url + "/v1",
        "--llm-backend=openai",
        "--llm-record-mode=once",
        "--llm-report=report.json",
        "--llm-html=report.html",
        "--junitxml=junit.xml",
    )
    result.assert_outcomes(passed=1)
    upstream = [r for r in fake.requests if r.path == "/v1/chat/completions"]
    assert upstream and upstream[0].headers["authorization"] == f"Bearer {key}"
    written = [p for p in pytester.path.rglob("*") if p.is_file()]
    assert cassette(pytester) in written and pytester.path / "report.html" in written
    leaks = [p for p in written if key.encode() in p.read_bytes()]
    assert leaks == []


BOTH = """
import ollama

def test_app(llm, llm_proxy):
    harness = llm.chat("Capital of France?")
    client = ollama.Client(timeout=10)
    try:
        app = client.chat(model="llama3.2", messages=[{"role": "user", "content": "And Italy?"}])
    finally:
        client._client.close()
    print("CACHED", harness.cached, llm_proxy.calls.last.cached, app.message.content)
"""


def test_harness_and_proxied_calls_share_the_test_s_cassette(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(test_app=BOTH)
    run(pytester, fake.url, "--llm-record-mode=once").assert_outcomes(passed=1)
    recorded = json.loads(cassette(pytester).read_text())["interactions"]
    prompts = sorted(i["request"]["messages"][-1]["content"] for i in recorded)
    assert prompts == ["And Italy?", "Capital of France?"]
    url = fake.url
    fake.stop()
    result = run(pytester, url, "--llm-record-mode=none")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*CACHED True True Paris.*"])


def test_the_ladder_runs_an_application_test_on_each_model(pytester: pytest.Pytester) -> None:
    """A test that uses only ``llm_proxy`` climbs ``--llm-models`` like an ``llm`` test:
    on each rung, every model the application names is answered by the rung's model."""
    pytester.makepyfile(test_app=APP_TEST.replace('== "Paris."', 'in ("Paris.", "Lyon.")'))

    def by_model(request: RecordedRequest) -> str:
        return "Paris." if request.body["model"] == "big" else "Lyon."

    with FakeOllama(by_model, models=["small", "big"]) as fake:
        result = run(pytester, fake.url, "--llm-models=small,big")
        asked = [r.body["model"] for r in fake.requests if r.path == "/api/chat"]
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["test*small*big*smallest passing", "test_app.py::test_app *small"])
    assert sorted(asked) == ["big", "small"]  # not llama3.2, the model the app names
