"""Errors as every report names them: JUnit XML, the terminal, the JSON report; and values
from tests and models shown as text, never markup, in the GitHub step summary."""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from pytest_llm.report import markdown_code, markdown_text
from pytest_llm.testing import FakeOllama, RecordedRequest

from .conftest import free_url


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama("fine") as server:
        yield server


FAULTS = """
import pytest

@pytest.mark.llm(host={down!r})
def test_server_down(llm):
    llm.chat("hi")

@pytest.mark.llm(model="not-pulled")
def test_model_missing(llm):
    llm.chat("hi")

def test_broken_check(llm):
    llm.chat("hi", check=lambda result: result.nope)

def test_wrong_answer(llm):
    assert llm.chat("hi").content == "something else"

def test_fine(llm):
    assert llm.chat("hi").content == "fine"
"""


@pytest.mark.parametrize("dist", [["-n", "2"], ["-p", "no:xdist"]], ids=["xdist", "no-xdist"])
def test_an_infrastructure_error_is_an_error_in_junit_xml_too(
    pytester: pytest.Pytester, fake: FakeOllama, dist: list[str]
) -> None:
    pytester.makepyfile(test_faults=FAULTS.format(down=free_url()))
    junit, report = pytester.path / "junit.xml", pytester.path / "report.json"
    started = time.monotonic()
    result = pytester.runpytest_subprocess(
        f"--llm-host={fake.url}", "--llm-retries=0", "-p", "no:cacheprovider",
        f"--junitxml={junit}", f"--llm-report={report}", *dist,
    )  # fmt: skip
    assert time.monotonic() - started < 60
    result.assert_outcomes(passed=1, failed=1, errors=3)

    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("errors"), suite.get("failures"), suite.get("tests")) == ("3", "1", "5")
    verdicts = {}
    for case in suite.iter("testcase"):
        tags = [child.tag for child in case if child.tag in ("error", "failure")]
        assert len(tags) == 1 or case.get("name") == "test_fine", (case.get("name"), tags)
        if tags:
            verdict = case.find(tags[0])
            assert verdict is not None
            verdicts[case.get("name")] = (tags[0], verdict.get("message", "").split(":")[0])
    assert verdicts == {
        # a server down is found at setup (pytest_llm.health): an error for every reporter
        "test_server_down": ("error", 'failed on setup with "BackendUnreachable'),
        "test_model_missing": ("error", "ModelNotFound"),
        "test_broken_check": ("error", "pytest_llm.errors.CheckError"),
        "test_wrong_answer": ("failure", "AssertionError"),
    }

    tests = json.loads(report.read_text())["tests"]
    outcomes = {t["nodeid"].split("::")[1]: t["outcome"] for t in tests}
    assert outcomes == {
        "test_server_down": "error",
        "test_model_missing": "error",
        "test_broken_check": "error",
        "test_wrong_answer": "failed",
        "test_fine": "passed",
    }
    chats = [r for r in fake.requests if r.path == "/api/chat"]
    assert len(chats) == 4  # one per test whose server is up: none retried


# --- the step summary ---------------------------------------------------------------------

EVIL = "x`<img src=https://evil.example/p.png>`y"
EVIL_MODEL = "m<img src=https://evil.example/m.png>|x"

SUMMARY_SUITE = """
import pytest

EVIL = {evil!r}

@pytest.mark.parametrize("case", [1], ids=[EVIL])
def test_reasked(llm, case):
    llm.chat("json please", json_mode=True)

@pytest.mark.llm(model={model!r})
def test_odd_model(llm):
    llm.chat("hi")

@pytest.mark.parametrize("case", [1], ids=[{listed!r}])
def test_listed(llm, case):
    llm.chat("hi")
"""


def test_the_step_summary_shows_ids_and_model_names_as_text(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: dict[str, int] = {}

    def reply(request: RecordedRequest) -> str:
        prompt = str(request.messages[-1]["content"])
        asked[prompt] = asked.get(prompt, 0) + 1
        return "not json" if prompt == "json please" and asked[prompt] == 1 else '{"ok": 1}'

    summary, baseline = pytester.path / "summary.md", pytester.path / "baseline.json"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    gone, new = EVIL + "![a](https://evil.example/a.png)", EVIL + "[b](https://evil.example/b)"
    with FakeOllama(reply, models=["llama3.2", EVIL_MODEL]) as fake:
        args = [f"--llm-host={fake.url}", "-p", "no:cacheprovider", "-p", "no:xdist"]
        pytester.makepyfile(SUMMARY_SUITE.format(evil=EVIL, model=EVIL_MODEL, listed=gone))
        pytester.runpytest(*args, f"--llm-report={baseline}").assert_outcomes(passed=3)
        summary.write_text("")
        asked.clear()
        pytester.makepyfile(SUMMARY_SUITE.format(evil=EVIL, model=EVIL_MODEL, listed=new))
        pytester.runpytest(*args, f"--llm-baseline={baseline}").assert_outcomes(passed=3)
    markdown = summary.read_text()
    assert "passed after 1 re-ask" in markdown and "New tests (1)" in markdown
    assert "Removed tests (1)" in markdown
    assert "<img" not in markdown
    assert not re.search(r"(?<!\\)\]\(", markdown)  # no link or image: every "]" is escaped
    assert "| m&lt;img src=https://evil.example/m.png&gt;\\|x |" in markdown  # the table row
    module = "test_the_step_summary_shows_ids_and_model_names_as_text.py"
    reasked = markdown_code(f"{module}::test_reasked[{EVIL}]")
    assert f"- {reasked}: passed after 1 re-ask" in markdown
    for nodeid in (f"test_listed[{gone}]", f"test_listed[{new}]"):
        assert f"- {markdown_code(f'{module}::{nodeid}')}" in markdown


def test_markdown_text_escapes_what_would_be_markup() -> None:
    assert markdown_text(EVIL) == "x\\`&lt;img src=https://evil.example/p.png&gt;\\`y"
    assert markdown_text("![i](u) a|b \\ &amp;") == "!\\[i\\](u) a\\|b \\\\ &amp;amp;"
    assert markdown_text("two\nlines\r\nhere") == "two lines here"
    assert markdown_text("llama3.2 0.50 test_x") == "llama3.2 0.50 test_x"  # plain text stays
    assert markdown_code("a<b") == "<code>a&lt;b</code>"
