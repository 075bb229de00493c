"""Acceptance: re-asks never hand the model the answer, a broken check is the test's error,
and a result accepted only after re-asks says so (pytester sessions against FakeOllama)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pytest_llm.testing import FakeOllama, RecordedRequest


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


def run(pytester: pytest.Pytester, fake: FakeOllama, *args: str) -> pytest.RunResult:
    return pytester.runpytest(f"--llm-host={fake.url}", "-p", "no:cacheprovider", *args)


def chats(fake: FakeOllama) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.path == "/api/chat"]


def sent(fake: FakeOllama) -> str:
    """Every message the model server received, as one text."""
    return "\n".join(str(m["content"]) for r in chats(fake) for m in r.messages)


CHECKED = """
import pytest

def mentions_paris(text):
    assert "paris" in text.lower(), "the answer must name Paris"

@pytest.mark.llm(max_retries=3, retry_delay_seconds=0)
def test_default(llm):
    llm.chat("Which city is the capital of France?", check=mentions_paris)

@pytest.mark.llm(max_retries=3, retry_delay_seconds=0, check_feedback=True)
def test_opted_in(llm):
    llm.chat("Which city is the capital of France?", check=mentions_paris)
"""


def test_the_default_re_ask_leaks_nothing_and_the_marker_opts_in(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(CHECKED)
    fake.script(["Lyon.", "Paris."])
    result = run(pytester, fake, "-k", "test_default")
    result.assert_outcomes(passed=1)
    assert len(chats(fake)) == 2
    assert "Paris" not in sent(fake).replace("Paris.", "")

    fake.requests.clear()
    fake.script(["Lyon.", "Paris."])
    result = run(pytester, fake, "-k", "test_opted_in")
    result.assert_outcomes(passed=1)
    feedback = chats(fake)[1].messages[-1]["content"]
    assert "check mentions_paris rejected the output: the answer must name Paris" in feedback


BROKEN_CHECK = """
import pytest
from pydantic import BaseModel

class Triage(BaseModel):
    priority: str

def urgent(triage):
    return triage["priority"] == "high"

@pytest.mark.llm(max_retries=3, retry_delay_seconds=0)
def test_triage(llm):
    llm.chat("Triage: the site is down.", schema=Triage, check=urgent)

@pytest.mark.llm(samples=8, concurrency=1, temperature=0.8, retry_delay_seconds=0)
def test_triage_sampled(llm):
    llm.sample("Triage: the site is down.", schema=Triage, check=urgent, max_retries=3)
"""


@pytest.mark.parametrize("test", ["test_triage", "test_triage_sampled"])
def test_a_bug_in_the_check_errors_the_test_at_once_with_its_traceback(
    pytester: pytest.Pytester, fake: FakeOllama, test: str
) -> None:
    pytester.makepyfile(BROKEN_CHECK)
    fake.script('{"priority": "high"}')
    result = run(pytester, fake, "-k", f"{test} and not {test}_")
    result.assert_outcomes(errors=1)
    assert len(chats(fake)) == 1  # neither re-asked nor sampled again
    result.stdout.fnmatch_lines(
        [
            "*def urgent(triage):",
            '>*return triage?"priority"? == "high"',
            "E*TypeError: 'Triage' object is not subscriptable",
            "*direct cause of the following exception*",
            "E*CheckError: check urgent raised TypeError: 'Triage' object is not subscriptable*",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*received a Triage instance (schema=Triage, a pydantic model)*"], consecutive=False
    )
    result.stdout.no_fnmatch_line("*OutputInvalid*")


RE_ASKED = """
import pytest

@pytest.mark.llm(json_mode=True, max_retries=2, retry_delay_seconds=0)
def test_re_asked(llm):
    llm.chat("json please")

def test_first_time(llm):
    llm.chat("plain")
"""


def test_a_pass_after_re_asks_is_marked_in_the_summary_and_the_reports(
    pytester: pytest.Pytester, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(RE_ASKED)
    replies = {"json please": ["not json", "still not", '{"ok": 1}']}
    cursor: dict[str, int] = {}

    def reply(request: RecordedRequest) -> str:
        prompt = str(request.messages[0]["content"])
        i = cursor[prompt] = cursor.get(prompt, -1) + 1
        return replies.get(prompt, ["fine"])[min(i, 2)]

    fake.script(reply)
    report, html = pytester.path / "report.json", pytester.path / "report.html"
    step_summary = pytester.path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    result = run(pytester, fake, f"--llm-report={report}", f"--llm-html={html}")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["*llm summary*", "test_a_pass_after_re_asks_*.py::test_re_asked: passed after 2 re-asks"]
    )
    result.stdout.no_fnmatch_line("*test_first_time: passed after*")
    doc = json.loads(report.read_text())
    tests = {t["nodeid"].split("::")[1]: t for t in doc["tests"]}
    assert (tests["test_re_asked"]["reasks"], tests["test_first_time"]["reasks"]) == (2, 0)
    assert tests["test_re_asked"]["llm"][0]["reasks"] == 2
    assert doc["totals"]["reasks"] == 2
    assert "passed after 2 re-asks" in html.read_text()
    assert "test_re_asked</code>: passed after 2 re-asks" in step_summary.read_text()
