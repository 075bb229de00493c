"""Issue 11, items 1-3: figures that match the server, latency that is the model's, and why
a test failed, in every report. Sessions run the plugin for real against FakeOllama and
check the report against what the server itself served."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from pytest_llm import Harness, HarnessConfig
from pytest_llm.backends import ChatRequest
from pytest_llm.baseline import Limits, compare
from pytest_llm.report import TestRecord, build_report, summary_lines
from pytest_llm.result import Completion
from pytest_llm.testing import FakeOllama, RecordedRequest, Reply


def run(pytester: pytest.Pytester, fake: FakeOllama, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(f"--llm-host={fake.url}", "-p", "no:cacheprovider", *args)


def chats(fake: FakeOllama) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.path == "/api/chat"]


# --- 1. numbers that match the server ------------------------------------------------------

RETRIED = """
import pytest

@pytest.mark.llm(model="small", escalate_to=["big"], max_retries=1, json_mode=True,
                 retry_delay_seconds=0)
def test_escalates(llm):
    assert llm.chat("json please").model == "big"

def graded(result):
    return 1.0 if "good" in result.content else 0.25

@pytest.mark.llm(model="big", min_score=0.8, max_retries=2, retry_delay_seconds=0)
def test_scored(llm):
    assert llm.chat("be good", scorer=graded).score == 1.0
"""


class Ledger:
    """Answers like a server and keeps its own books: (model, tokens in, tokens out) per
    answer, with counts that differ from answer to answer."""

    def __init__(self) -> None:
        self.served: list[tuple[str, int, int]] = []
        self._lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Reply:
        with self._lock:
            n = len(self.served)
            model = str(request.model)
            if model == "small":
                content = "not json"
            elif request.messages[0]["content"] == "json please":
                content = '{"ok": 1}'
            else:  # the scored test: a poor answer first, then a good one
                tried = sum(1 for m, _, _ in self.served if m == "big")
                content = "a poor answer" if tried == 1 else "a good answer"
            tokens_in, tokens_out = 11 + 7 * n, 3 + 2 * n
            self.served.append((model, tokens_in, tokens_out))
        return Reply(content=content, tokens_in=tokens_in, tokens_out=tokens_out)


def test_tokens_retries_and_scores_match_what_the_server_served(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(RETRIED)
    ledger = Ledger()
    with FakeOllama(ledger, models=["small", "big"]) as fake:
        report = pytester.path / "r.json"
        result = run(pytester, fake, "-p", "no:xdist", f"--llm-report={report}")
        requests = chats(fake)
    result.assert_outcomes(passed=2)
    assert [m for m, _, _ in ledger.served] == ["small", "small", "big", "big", "big"]
    assert [r.model for r in requests] == [m for m, _, _ in ledger.served]
    doc = json.loads(report.read_text())

    served_in = sum(t for _, t, _ in ledger.served)
    served_out = sum(t for _, _, t in ledger.served)
    totals = doc["totals"]
    assert (totals["tokens_in"], totals["tokens_out"]) == (served_in, served_out)
    assert (totals["calls"], totals["requests"]) == (2, 5)
    by_test = {t["nodeid"].rsplit("::", 1)[1]: t for t in doc["tests"]}
    assert sum(t["tokens_in"] for t in by_test.values()) == served_in
    for model in ("small", "big"):
        figures = doc["models"][model]
        mine = [(i, o) for m, i, o in ledger.served if m == model]
        assert figures["calls"] == len(mine)
        assert figures["tokens_in"] == sum(i for i, _ in mine)
        assert figures["tokens_out"] == sum(o for _, o in mine)
    # the retry and the escalation are small's; big re-asked once, in the scored test
    assert (doc["models"]["small"]["retries"], doc["models"]["small"]["escalations"]) == (1, 1)
    assert (doc["models"]["big"]["retries"], doc["models"]["big"]["escalations"]) == (1, 0)
    assert doc["models"]["small"]["p50_ms"] is not None  # small's latency is measured too

    scored = by_test["test_scored"]
    assert scored["score"] == 1.0  # the accepted answer's, as the test asserted
    assert [(s["value"], s["attempt"]) for s in scored["scores"]] == [
        (0.25, "rejected"),
        (1.0, "accepted"),
    ]
    (call,) = scored["llm"]
    assert [t["score"] for t in call["tries"]] == [0.25, 1.0]
    assert [t["rejected"] for t in call["tries"]] == ["score", None]
    assert doc["models"]["big"]["mean_score"] == 1.0
    result.stdout.fnmatch_lines(
        [f"2 of 2 tests called a model: 2 calls (5 requests), {served_in} tokens in, "
         f"{served_out} tokens out, *"]
    )  # fmt: skip


class NoUsage:
    """A backend like llama.cpp while streaming: no usage, so no prompt token count."""

    name = "no-usage"
    host = "memory://"

    def chat(self, request: ChatRequest) -> Completion:
        return Completion(
            content="ok", model=request.model, tokens_out=1, duration_ms=4.0, ttft_ms=2.0,
            metadata={"usage_reported": False},
        )  # fmt: skip

    def close(self) -> None:
        pass


def test_tokens_in_from_a_server_that_reports_no_usage_are_unknown_not_zero() -> None:
    with Harness(HarnessConfig(model="m"), backend=NoUsage()) as harness:
        result = harness.chat("hi")
    assert result.attempts[0].tokens_in is None and result.total_tokens_in is None
    assert result.total_tokens_out == 1
    summary = result.summary()
    assert summary["tokens_in"] is None and summary["total_tokens_in"] is None
    record = TestRecord(nodeid="t", outcome="passed", calls=[summary]).as_json()
    assert record["tokens_in"] is None and record["tokens_out"] == 1
    doc = build_report([record], run={"wall_s": 1.0, "workers": [], "hosts": [], "hosts_down": {}})
    assert doc["totals"]["tokens_in"] is None and doc["models"]["m"]["tokens_in"] is None
    (line,) = [text for text, _ in summary_lines(doc, None) if "tests called a model" in text]
    assert "1 calls, unknown tokens in, 1 tokens out" in line


FLAKY = """
from pathlib import Path

def test_flaky(llm):
    llm.chat("one")
    llm.chat("two")
    first = Path("first-run")
    if not first.exists():
        first.write_text("done")
        assert False, "the first run fails"

def test_steady(llm):
    llm.chat("three")
"""


def test_reruns_count_each_run_once_and_are_recorded_as_reruns(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("pytest_rerunfailures")
    pytester.makepyfile(FLAKY)
    report, junit = pytester.path / "r.json", pytester.path / "junit.xml"
    with FakeOllama("fine") as fake:
        result = run(
            pytester, fake, "-p", "no:xdist", "--reruns=1", f"--llm-report={report}",
            f"--junitxml={junit}", "-o", "junit_family=xunit1",  # properties per testcase
        )  # fmt: skip
        served = len(chats(fake))
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*= 2 passed, 1 rerun in *"])
    assert served == 5  # two runs of test_flaky (2 calls each), one of test_steady
    doc = json.loads(report.read_text())
    assert doc["totals"]["calls"] == served and doc["totals"]["reruns"] == 1
    flaky = next(t for t in doc["tests"] if t["nodeid"].endswith("test_flaky"))
    assert flaky["outcome"] == "passed" and flaky["calls"] == 4 and flaky["reruns"] == 1
    assert flaky["failure"] is None
    (earlier,) = flaky["rerun_failures"]
    assert earlier["when"] == "call" and "the first run fails" in earlier["message"]
    assert "llm calls" not in earlier["message"] and "call 1: llama3.2" in earlier["transcript"]
    steady = next(t for t in doc["tests"] if t["nodeid"].endswith("test_steady"))
    assert steady["reruns"] == 0 and steady["rerun_failures"] == []
    result.stdout.fnmatch_lines(["*test_flaky: passed after 1 rerun"])
    # JUnit: each run's calls once (2 + 2), not the first run's again with the second's
    values = [
        json.loads(p.attrib["value"])
        for case in ET.parse(junit).iter("testcase")
        if case.attrib["name"] == "test_flaky"
        for p in case.iter("property")
        if p.attrib["name"] == "llm"
    ]
    assert sum(len(v) for v in values) == 4


# --- 2. latency that is the model's ---------------------------------------------------------

EIGHT = """
import pytest

@pytest.mark.parametrize("i", range(8))
def test_answer(llm, i):
    for step in range(4):
        llm.chat(f"question {i}.{step}")
"""


STARTING_TOGETHER = """
import os, time, pytest

@pytest.fixture(scope="session", autouse=True)
def _workers_start_together(tmp_path_factory):
    # the four workers ask at the same time (as in CI), not one after the other as they
    # finish starting up on a busy machine; bounded by 30 s
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if count < 2:
        return
    shared = tmp_path_factory.getbasetemp().parent
    (shared / ("ready-" + os.environ["PYTEST_XDIST_WORKER"])).touch()
    deadline = time.monotonic() + 30
    while len(list(shared.glob("ready-*"))) < count and time.monotonic() < deadline:
        time.sleep(0.02)
"""


def test_a_parallel_run_on_a_one_slot_server_is_not_a_latency_regression(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(EIGHT)
    pytester.makeconftest(STARTING_TOGETHER)
    baseline, report = pytester.path / "baseline.json", pytester.path / "r.json"
    with FakeOllama("an answer", first_token_delay=0.05, parallel=1) as fake:
        run(pytester, fake, "-p", "no:xdist", f"--llm-report={baseline}").assert_outcomes(passed=8)
        # stricter than the defaults: the client's p50 doubles while the model's stays
        strict = ("--llm-max-latency-factor=1.5", "--llm-latency-floor-ms=0")
        result = run(pytester, fake, "-n", "4", f"--llm-baseline={baseline}",
                     f"--llm-report={report}", *strict)  # fmt: skip
        result.assert_outcomes(passed=8)
        assert fake.max_in_flight == 1
        assert result.ret == pytest.ExitCode.OK, result.stdout.str()
        result.stdout.fnmatch_lines(["baseline gate passed *"])
        doc = json.loads(report.read_text())
        figures = doc["models"]["llama3.2"]
        # the client waited for the one slot; the server's own time did not grow
        assert figures["p50_ms"] > 1.3 * figures["p50_server_ms"]
        assert figures["p50_queue_ms"] > 20
        # one slot serves one answer at a time: no gain from parallelism may be claimed
        assert doc["totals"]["parallelism"] <= 1.05
        assert doc["totals"]["server_ms"] <= doc["run"]["wall_s"] * 1000 * 1.05

        fake.first_token_delay = 0.15  # a truly slower model
        result = run(pytester, fake, "-n", "4", f"--llm-baseline={baseline}", *strict)
    result.assert_outcomes(passed=8)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["  latency * llama3.2 p50 server time * ms * ms (x*) * x1.5 and +0 ms"]
    )


def _models(**figures: dict[str, Any]) -> dict[str, Any]:
    return {"tests": [], "models": figures}


def test_latency_under_the_noise_floor_is_no_regression() -> None:
    limits = Limits(max_latency_factor=2.0, latency_floor_ms=50.0)
    tiny = compare(_models(m={"p50_ms": 1.0}), _models(m={"p50_ms": 5.0}), limits)
    assert not tiny.failed  # x5, but 4 ms
    slow = compare(_models(m={"p50_ms": 100.0}), _models(m={"p50_ms": 250.0}), limits)
    assert [r.subject for r in slow.regressions] == ["m p50 whole call"]
    with pytest.raises(ValueError, match="latency_floor_ms=-1: expected a number of ms >= 0"):
        Limits(latency_floor_ms=-1)


def test_the_gate_uses_the_best_figure_both_runs_have() -> None:
    before = {"p50_ms": 100.0, "p50_decode_ms": 80.0, "p50_server_ms": 90.0}
    queued = {"p50_ms": 600.0, "p50_decode_ms": 85.0, "p50_server_ms": 95.0}
    assert not compare(_models(m=before), _models(m=queued)).failed
    no_server = {"p50_ms": 600.0, "p50_decode_ms": 85.0, "p50_server_ms": None}
    assert not compare(_models(m=before), _models(m=no_server)).failed
    slower = {"p50_ms": 600.0, "p50_decode_ms": 400.0}
    (regression,) = compare(_models(m=before), _models(m=slower)).regressions
    assert regression.subject == "m p50 first to last token"


def test_a_bad_latency_floor_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--llm-latency-floor-ms=soon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llm-latency-floor-ms='soon' is not a number*"])


# --- 3. why a test failed, in every report --------------------------------------------------

FAILING = """
import pytest

def test_triage(llm):
    result = llm.chat("ticket: I forgot my password", system="Triage tickets in one word.")
    assert result.content == "account", f"triaged as {result.content!r}"

@pytest.mark.llm(json_mode=True, max_retries=1, retry_delay_seconds=0)
def test_json(llm):
    llm.chat("json please")

def test_fine(llm):
    llm.chat("hello")
"""


def _answers(request: RecordedRequest) -> str:
    first = request.messages[-1]["content"] if request.messages else ""
    if request.messages and request.messages[0]["role"] == "system":
        return "billing <b>now</b>"
    return "not json" if "json" in first or "JSON" in first else "hi"


@pytest.fixture
def failing(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    pytester.makepyfile(FAILING)
    step_summary = pytester.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    yield step_summary


def test_every_report_says_why_a_test_failed(pytester: pytest.Pytester, failing: Path) -> None:
    report, html, junit = (pytester.path / name for name in ("r.json", "r.html", "j.xml"))
    with FakeOllama(_answers) as fake:
        result = run(pytester, fake, "-n", "2", f"--llm-report={report}", f"--llm-html={html}",
                     f"--junitxml={junit}")  # fmt: skip
    result.assert_outcomes(passed=1, failed=2)
    # the terminal: the test's model calls beside its captured output
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: triaged as 'billing <b>now</b>'*",
            "*- llm calls -*",
            "call 1: llama3.2 [[]* ms, ttft * ms, server * ms], tokens * in / * out",
            "  system: 'Triage tickets in one word.'",
            "  user: 'ticket: I forgot my password'",
            "  answer: 'billing <b>now</b>'",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*- llm calls -*",
            "call 1: llama3.2 *2 attempts*",
            "  user: 'json please'",
            "  attempt 1 [[]llama3.2, *] rejected (validation):",
            "    output: 'not json'",
            "  last answer (not accepted): 'not json'",
        ]
    )
    assert result.stdout.str().count("- llm calls -") == 2  # not for the passed test

    doc = json.loads(report.read_text())
    by_test = {t["nodeid"].rsplit("::", 1)[1]: t for t in doc["tests"]}
    triage = by_test["test_triage"]
    assert triage["outcome"] == "failed" and triage["failure"]["when"] == "call"
    assert "triaged as 'billing <b>now</b>'" in triage["failure"]["message"]
    transcript = triage["failure"]["transcript"]
    assert "user: 'ticket: I forgot my password'" in transcript
    assert "answer: 'billing <b>now</b>'" in transcript
    json_test = by_test["test_json"]
    assert "OutputInvalid" in json_test["failure"]["message"]
    assert "'not json'" in json_test["failure"]["message"]
    assert by_test["test_fine"]["failure"] is None

    page = html.read_text()
    assert (
        "why it failed" in page and "triaged as &#x27;billing &lt;b&gt;now&lt;/b&gt;&#x27;" in page
    )
    assert "<b>now</b>" not in page  # escaped, everywhere
    assert page.index("test_triage") < page.index("test_fine")  # failures first

    markdown = failing.read_text()
    assert "### Failed and errored tests (2)" in markdown
    assert "triaged as &#x27;billing &lt;b&gt;now&lt;/b&gt;&#x27;" in markdown
    assert "<b>now</b>" not in markdown
    assert "user: &#x27;ticket: I forgot my password&#x27;" in markdown

    failures = {
        case.attrib["name"]: case.find("failure") for case in ET.parse(junit).iter("testcase")
    }
    triage_failure = failures["test_triage"]
    assert triage_failure is not None
    assert "triaged as 'billing <b>now</b>'" in triage_failure.attrib["message"]


SCORED_AND_SAMPLED = """
import pytest
from pytest_llm import Score

def polite(result):
    return Score(value=0.9, name="polite", reason="says please")

def test_scored(llm):
    llm.chat("ask nicely", scorer=polite)

@pytest.mark.llm(temperature=0.7)
def test_sampled(llm):
    llm.sample("say yes", n=4, check=lambda text: "yes" in text)
"""


def test_scores_with_reasons_and_pass_rates_in_html_and_markdown(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(SCORED_AND_SAMPLED)
    step_summary, html = pytester.path / "summary.md", pytester.path / "r.html"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    with FakeOllama("yes please") as fake:
        result = run(pytester, fake, "-p", "no:xdist", f"--llm-html={html}")
    result.assert_outcomes(passed=2)
    page = html.read_text()
    assert "polite 0.90 passed [llama3.2]: says please" in page
    assert "4/4 samples passed: pass rate 100% (95% CI" in page
    markdown = step_summary.read_text()
    assert "### Sampled tests (1)" in markdown and "4/4 samples passed" in markdown


LIVE = """
def test_live(llm):
    llm.chat("hello", system="Be brief.")
    llm.map(["one", "two"])
"""


def test_llm_live_prints_each_call_as_it_ends(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(LIVE)
    with FakeOllama("ok") as fake:
        result = run(pytester, fake, "-p", "no:xdist", "--llm-live")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "[[]llm] test_llm_live_prints_each_call_as_it_ends.py::test_live",
            "[[]llm]   call 1: llama3.2 [[]* ms, ttft * ms, server * ms], tokens * in / 1 out",
            "[[]llm]     system: 'Be brief.'",
            "[[]llm]     user: 'hello'",
            "[[]llm]     answer: 'ok'",
        ]
    )
    for number in (2, 3):  # the two calls of llm.map, each printed whole, in either order
        result.stdout.fnmatch_lines([f"[[]llm]   call {number}: llama3.2 *", "[[]llm]     user: *"])
    assert result.stdout.str().count("[llm]     answer: 'ok'") == 3


def test_llm_live_under_xdist_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(LIVE)
    result = pytester.runpytest("--llm-live", "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llm-live prints from the process that runs the tests*"])


GATED = """
def graded(result):
    return float(result.content.split()[0])

def test_tone(llm):
    llm.chat("tone", scorer=graded)

def test_city(llm):
    assert "Paris" in llm.chat("city").content
"""


def test_a_failed_gate_shows_the_baseline_answer_beside_the_new_one(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(GATED)
    answers = {"tone": "0.9 <i>warm</i> reply", "city": "Paris, of course"}
    baseline, html = pytester.path / "baseline.json", pytester.path / "r.html"
    with FakeOllama(lambda request: answers[request.messages[-1]["content"]]) as fake:
        run(pytester, fake, f"--llm-report={baseline}").assert_outcomes(passed=2)
        answers.update(tone="0.2 <i>cold</i> reply", city="Lyon")
        step_summary = pytester.path / "summary.md"
        monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
        result = run(pytester, fake, f"--llm-baseline={baseline}", f"--llm-html={html}")
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    page, markdown = html.read_text(), step_summary.read_text()
    for text in (page, markdown):
        assert "Answers of the regressed tests: baseline and now" in text
        assert (
            "call 1 [llama3.2, score 0.90]: &#x27;0.9 &lt;i&gt;warm&lt;/i&gt; reply&#x27;" in text
        )
        assert (
            "call 1 [llama3.2, score 0.20]: &#x27;0.2 &lt;i&gt;cold&lt;/i&gt; reply&#x27;" in text
        )
        assert "call 1 [llama3.2]: &#x27;Paris, of course&#x27;" in text
        assert "call 1 [llama3.2]: &#x27;Lyon&#x27;" in text
        assert "<i>" not in text
    # side by side: the baseline's answer and the new one in one row
    row = page[page.index("&#x27;0.9 &lt;i&gt;warm") :]
    assert row.index("0.2 &lt;i&gt;cold") < row.index("</tr>")


def test_the_html_tests_table_filters_and_sorts_in_a_browser(
    pytester: pytest.Pytester, failing: Path
) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    html = pytester.path / "r.html"
    with FakeOllama(_answers) as fake:
        run(pytester, fake, "-p", "no:xdist", f"--llm-html={html}").assert_outcomes(
            passed=1, failed=2
        )

    def rows(fragment: str) -> list[tuple[bool, str]]:
        """(shown, first cell) of the tests table's rows, after the page's script ran."""
        dom = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
             f"{html.as_uri()}#{fragment}"],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
        table = dom[dom.index('<table id="tests">') :]
        table = table[: table.index("</table>")]
        found = re.findall(
            r'<tr( class="details")?( style="display: none;")?>\s*<td[^>]*>([^<]*)', table
        )
        return [(not hidden, cell or "(details)") for _, hidden, cell in found]

    module = "test_the_html_tests_table_filters_and_sorts_in_a_browser.py"
    assert rows("filter=test_fine") == [
        (False, f"{module}::test_triage"),
        (False, "(details)"),  # a test's details hide with it
        (False, f"{module}::test_json"),
        (False, "(details)"),
        (True, f"{module}::test_fine"),
    ]
    ordered = [cell for shown, cell in rows("sort=test") if shown]
    assert ordered == [
        f"{module}::test_fine",
        f"{module}::test_json",
        "(details)",  # details move with their test
        f"{module}::test_triage",
        "(details)",
    ]


def test_pytest_html_shows_each_tests_model_score_tokens_and_calls(
    pytester: pytest.Pytester, failing: Path
) -> None:
    pytest.importorskip("pytest_html")
    pytester.makepyfile(
        test_scored="from pytest_llm import Score\n\n"
        "def test_scored(llm):\n"
        "    llm.chat('hello', scorer=lambda r: Score(value=0.75, name='fine'))\n"
    )
    html = pytester.path / "pytest-html.html"
    with FakeOllama(_answers) as fake:
        run(pytester, fake, "-n", "2", f"--html={html}", "--self-contained-html").assert_outcomes(
            passed=2, failed=2
        )
    page = html.read_text()
    for title in ("model", "score", "tokens"):
        assert f'data-column-type="llm_{title}">{title}</th>' in page
    blob = json.loads(unescape(re.search(r'data-jsonblob="([^"]*)"', page)[1]))
    tests = {nodeid.rsplit("::", 1)[1]: entries[-1] for nodeid, entries in blob["tests"].items()}
    assert tests["test_scored"]["resultsTableRow"][2:5] == [
        '<td class="col-llm_model">llama3.2</td>',
        '<td class="col-llm_score">0.75</td>',
        '<td class="col-llm_tokens">1 in / 1 out</td>',
    ]
    assert tests["test_scored"]["llm_score"] == "0.75"  # what pytest-html sorts on
    triage = tests["test_triage"]
    assert triage["resultsTableRow"][4] == '<td class="col-llm_tokens">10 in / 2 out</td>'
    # its calls, escaped: the one-line summary and, as it failed, the llm calls section
    assert "call 1: llama3.2, " in triage["log"]
    assert ": &#x27;billing &lt;b&gt;now&lt;/b&gt;&#x27;</pre>" in triage["log"]
    assert "- llm calls -" in triage["log"]
    assert "user: &#x27;ticket: I forgot my password&#x27;" in triage["log"]
    assert "<b>now</b>" not in triage["log"]
