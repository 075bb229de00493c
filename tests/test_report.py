"""The run report: records, figures, the terminal summary, JSON, HTML, JUnit and step summary."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_llm.config import public_host
from pytest_llm.report import (
    SCHEMA,
    TestRecord,
    load_report,
    model_figures,
    parallelism,
    percentile,
    run_totals,
    split_group,
)
from pytest_llm.testing import FakeOllama, Reply

SUITE = """
import pytest

def length_score(result):
    return min(len(result.content) / 10, 1.0)

@pytest.mark.parametrize("i", range(6))
def test_answer(llm, i):
    assert llm.chat(f"say {i}", scorer=length_score).content == "hello"

def test_two_calls(llm):
    llm.chat("one")
    llm.chat("two")

def test_wrong(llm):
    assert llm.chat("x").content == "something else"

def test_no_model():
    pass

@pytest.mark.skip(reason="not today")
def test_skipped(llm):
    pass
"""


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(Reply(content="hello", tokens_in=7, tokens_out=3)) as server:
        yield server


def run(pytester: pytest.Pytester, fake: FakeOllama, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(f"--llm-host={fake.url}", "-p", "no:cacheprovider", *args)


def summary_section(result: pytest.RunResult) -> list[str]:
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if "llm summary" in line)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("="))
    return lines[start + 1 : end]


# --- whole sessions ------------------------------------------------------------------------


def test_summary_once_under_xdist_with_totals_matching_the_records(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(SUITE)
    report = pytester.path / "out" / "report.json"
    result = run(pytester, fake, "-n", "4", f"--llm-report={report}")
    result.assert_outcomes(passed=8, failed=1, skipped=1)
    assert sum("llm summary" in line for line in result.outlines) == 1

    doc = json.loads(report.read_text())
    assert doc["schema"] == SCHEMA
    tests = doc["tests"]
    nodeids = [t["nodeid"] for t in tests]
    assert len(nodeids) == len(set(nodeids)) == 10  # every test exactly once
    calls = [c for t in tests for c in t["llm"]]
    assert len(calls) == 9 == sum(t["calls"] for t in tests)
    assert {t["worker"] for t in tests if t["outcome"] != "skipped"} <= {"gw0", "gw1", "gw2", "gw3"}
    assert len(doc["run"]["workers"]) == 4
    assert sum(w["calls"] for w in doc["run"]["workers"]) == 9
    assert sum(w["tests"] for w in doc["run"]["workers"]) == 10

    section = summary_section(result)
    totals = next(line for line in section if "tests called a model" in line)
    tokens_in = sum(c["tokens_in"] for c in calls)
    tokens_out = sum(c["tokens_out"] for c in calls)
    assert totals.startswith(f"8 of 10 tests called a model: 9 calls, {tokens_in} tokens in, ")
    assert f"{tokens_out} tokens out" in totals and tokens_in == 63
    header, row = section[0].split(), section[1].split()
    figures = dict(zip(header[:3], row[:3], strict=True))
    assert figures == {"model": "llama3.2", "tests": "8", "passed": "7"}
    assert row[3] == "0.50"  # mean score: len("hello") / 10
    model_time = re.search(
        r"model time ([\d.]+) s in ([\d.]+) s wall on 4 workers", "\n".join(section)
    )
    assert model_time is not None
    assert float(model_time[1]) == pytest.approx(doc["totals"]["model_ms"] / 1000, abs=0.006)

    by_name = {t["nodeid"].split("::")[1]: t for t in tests}
    wrong = by_name["test_wrong"]
    assert wrong["outcome"] == "failed" and wrong["calls"] == 1
    two = by_name["test_two_calls"]
    assert two["calls"] == 2 and two["tokens_in"] == 14 and two["score"] is None
    plain = by_name["test_no_model"]
    assert plain["outcome"] == "passed" and plain["llm"] == [] and plain["host"] is None
    answer = by_name["test_answer[0]"]
    assert answer["score"] == 0.5 and answer["scores"][0]["value"] == 0.5
    assert answer["host"] == fake.url and answer["ttft_ms"] <= answer["latency_ms"]
    assert doc["models"]["llama3.2"]["calls"] == 9
    assert doc["run"]["digests"]["llama3.2"][fake.url]  # FakeOllama reports a digest


def test_same_records_without_xdist(pytester: pytest.Pytester, fake: FakeOllama) -> None:
    pytester.makepyfile(SUITE)
    report = pytester.path / "report.json"
    result = run(pytester, fake, "-p", "no:xdist", f"--llm-report={report}")
    result.assert_outcomes(passed=8, failed=1, skipped=1)
    assert sum("llm summary" in line for line in result.outlines) == 1
    doc = json.loads(report.read_text())
    assert len(doc["tests"]) == 10 and doc["run"]["workers"] == [] and doc["run"]["dist"] is None
    assert doc["totals"]["calls"] == 9 and doc["totals"]["failed"] == 1
    assert doc["run"]["digests"]["llama3.2"][fake.url]


def test_no_summary_when_no_test_calls_a_model(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*llm summary*")


def test_summary_counts_retries_escalations_and_infrastructure_errors(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm(model="small", escalate_to=["big"], max_retries=1, json_mode=True)
        def test_escalates(llm):
            assert llm.chat("json please").model == "big"

        def test_down(llm):
            llm.chat("x", host="http://127.0.0.1:9", max_retries=0)
        """
    )
    with FakeOllama({"small": "not json", "big": '{"ok": 1}'}) as fake:
        report = pytester.path / "r.json"
        result = pytester.runpytest(f"--llm-host={fake.url}", f"--llm-report={report}")
    result.assert_outcomes(passed=1, errors=1)
    doc = json.loads(report.read_text())
    assert doc["totals"]["escalations"] == 1 and doc["totals"]["retries"] == 2
    assert doc["totals"]["errors"] == 1 and doc["totals"]["llm_tests"] == 2
    # the retry and the escalation are small's: it answered twice, big once at first try
    small, big = doc["models"]["small"], doc["models"]["big"]
    assert (small["calls"], small["retries"], small["escalations"]) == (2, 1, 1)
    assert (big["calls"], big["retries"], big["escalations"]) == (1, 0, 0)
    (down,) = [t for t in doc["tests"] if t["outcome"] == "error"]
    assert down["error"]["type"] == "BackendUnreachable"
    assert down["error"]["host"] == "http://127.0.0.1:9"
    result.stdout.fnmatch_lines(
        [
            "*llm summary*",
            "model *tests*passed*escalated*",
            "big *1 *1*",
            "small *1 *1*",
            "*HOST DOWN http://127.0.0.1:9: 1 test(s) errored with BackendUnreachable*",
        ]
    )


def test_junit_step_summary_and_html(
    pytester: pytest.Pytester, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(SUITE)
    step_summary = pytester.path / "step_summary.md"
    step_summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    junit, html = pytester.path / "junit.xml", pytester.path / "report.html"
    result = run(pytester, fake, "-n", "2", f"--junitxml={junit}", f"--llm-html={html}")
    result.assert_outcomes(passed=8, failed=1, skipped=1)
    result.stdout.no_fnmatch_line("*Warning*")

    root = ET.parse(junit).getroot()  # xunit2 (the default): no properties in a testcase
    assert root.findall(".//testcase/properties") == []
    suite = {p.get("name"): p.get("value") for p in root.findall("testsuite/properties/property")}
    assert (suite["llm_models"], suite["llm_tests"], suite["llm_calls"]) == ("llama3.2", "8", "9")

    markdown = step_summary.read_text()
    assert markdown.startswith("earlier step\n\n## pytest-llm: 8 passed, 1 failed, 1 skipped\n\n")
    assert "| model | tests | passed | score |" in markdown
    assert "| llama3.2 | 8 | 7 | 0.50 |" in markdown

    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 3
    # self-contained: one inline script (filter, sort), nothing fetched
    assert page.count("<script") == 1 and "src=" not in page and "<link" not in page
    assert page.count('class="id"') == 10  # one row per test
    assert "test_wrong" in page and ">failed<" in page


def test_report_paths_from_ini_are_relative_to_the_ini_file(
    pytester: pytest.Pytester, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("[pytest]\nllm_report = reports/run.json\n")
    pytester.makepyfile("def test_one(llm):\n    llm.chat('hi')\n")
    monkeypatch.chdir(pytester.mkdir("elsewhere"))
    result = pytester.runpytest(str(pytester.path), f"--llm-host={fake.url}")
    result.assert_outcomes(passed=1)
    assert json.loads((pytester.path / "reports" / "run.json").read_text())["totals"]["calls"] == 1


def test_an_ini_path_is_split_like_a_shell_word_and_an_option_path_is_from_the_cwd(
    pytester: pytest.Pytester, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini('[pytest]\nllm_report = "my reports/run.json"\n')
    pytester.makepyfile("def test_one(llm):\n    llm.chat('hi')\n")
    elsewhere = pytester.mkdir("elsewhere")
    monkeypatch.chdir(elsewhere)
    result = pytester.runpytest(str(pytester.path), f"--llm-host={fake.url}", "--llm-html=r.html")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "my reports" / "run.json").is_file()  # quotes are not in the name
    assert (elsewhere / "r.html").is_file()
    pytester.makeini("[pytest]\nllm_report = a.json b.json\n")
    result = pytester.runpytest(str(pytester.path))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini llm_report takes one file path, got 2*"])


def test_bad_report_options_are_usage_errors(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(f"--llm-report={pytester.path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llm-report=* is a directory: give a file path*"])
    result = pytester.runpytest("--llm-max-score-drop=lots")
    result.stderr.fnmatch_lines(["*--llm-max-score-drop='lots' is not a number*"])
    result = pytester.runpytest("--llm-max-latency-factor=0.5")
    result.stderr.fnmatch_lines(["*max_latency_factor=0.5: expected a number >= 1*"])


def test_unwritable_report_fails_the_session_with_a_clear_line(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile("def test_one(llm):\n    llm.chat('hi')\n")
    blocker = pytester.path / "file"
    blocker.write_text("not a directory")
    result = pytester.runpytest(f"--llm-host={fake.url}", f"--llm-report={blocker}/r.json")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*pytest-llm: --llm-report: could not write *r.json*"])


@pytest.mark.parametrize("dist", [["-p", "no:xdist"], ["-n", "2"]])
def test_a_replayed_run_asks_the_server_only_who_it_is(
    pytester: pytest.Pytester, fake: FakeOllama, dist: list[str]
) -> None:
    pytester.makepyfile(SUITE)
    run(pytester, fake, "--llm-record-mode=once").assert_outcomes(passed=8, failed=1, skipped=1)
    report, html = pytester.path / "r.json", pytester.path / "r.html"
    with FakeOllama() as idle:
        result = pytester.runpytest_subprocess(
            f"--llm-host={idle.url}", "-p", "no:cacheprovider", "--llm-record-mode=none",
            f"--llm-report={report}", f"--llm-html={html}", *dist,
        )  # fmt: skip
        result.assert_outcomes(passed=8, failed=1, skipped=1)
        # the model's identity, once per process (to catch a changed model), and no answers
        assert {(r.method, r.path) for r in idle.requests} == {("GET", "/api/tags")}
        assert len(idle.requests) == (2 if "-n" in dist else 1)
    doc = json.loads(report.read_text())
    assert doc["totals"]["cached"] == doc["totals"]["calls"] == 9
    assert doc["run"]["digests"] == {}


def test_model_names_are_escaped_in_the_html_plots(pytester: pytest.Pytester) -> None:
    model = "m<x>&y"
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.llm(model={model!r})
        def test_odd_name(llm):
            llm.chat("hi", scorer=lambda result: 0.5)
        """
    )
    html = pytester.path / "r.html"
    with FakeOllama(models=[model]) as fake:
        run(pytester, fake, f"--llm-html={html}").assert_outcomes(passed=1)
    plots = re.findall(r"<svg.*?</svg>", html.read_text(), re.S)
    assert len(plots) == 3
    titles = [title for svg in plots for title in ET.fromstring(svg).findall(".//{*}title")]
    assert len(titles) == 3 and all(t.text and t.text.startswith(model) for t in titles)


def test_every_test_once_under_dist_loadgroup(pytester: pytest.Pytester, fake: FakeOllama) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.xdist_group("gpu")
        @pytest.mark.parametrize("x", ["a@b", "c"])
        def test_grouped(llm, x):
            llm.chat(x)

        def test_alone(llm):
            llm.chat("y")
        """
    )
    report = pytester.path / "r.json"
    result = run(pytester, fake, "-n", "2", "--dist", "loadgroup", f"--llm-report={report}")
    result.assert_outcomes(passed=3)
    doc = json.loads(report.read_text())
    tests = {t["nodeid"].split("::")[1]: t for t in doc["tests"]}
    assert set(tests) == {"test_grouped[a@b]", "test_grouped[c]", "test_alone"}
    assert doc["run"]["dist"] == "loadgroup" and doc["totals"]["calls"] == 3


def test_recorder_strips_loadgroup_suffixes(tmp_path: Path) -> None:
    """xdist appends ``@group`` to node ids under loadgroup (pytest < 9.2 lets it)."""
    recorder = _recorder(worker_id=None, dist="loadgroup", report=tmp_path / "r.json")
    for nodeid in ("t.py::test_x[a@b]@gpu", "t.py::test_y"):
        for when in ("setup", "call", "teardown"):
            report = _report(when, "passed")
            report.nodeid = nodeid
            recorder.pytest_runtest_logreport(report)
    tests = recorder.finish()["tests"]
    assert [(t["nodeid"], t["group"]) for t in tests] == [
        ("t.py::test_x[a@b]", "gpu"),
        ("t.py::test_y", None),
    ]


# --- units ---------------------------------------------------------------------------------


def _recorder(*, worker_id: str | None, dist: str | None = None, **options: Any) -> Any:
    from pytest_llm.backends import BackendPool
    from pytest_llm.config import HarnessConfig
    from pytest_llm.report import Recorder, ReportOptions

    return Recorder(
        options=ReportOptions(**options),
        settings=HarnessConfig(),
        hosts=["http://127.0.0.1:11434"],
        pool=BackendPool(),
        worker_id=worker_id,
        dist=dist,
    )


def test_a_workers_recorder_does_not_grow_with_the_tests(tmp_path: Path) -> None:
    recorder = _recorder(worker_id="gw0", report=tmp_path / "r.json")
    host = "http://gpu1:11434"
    for i in range(50):
        calls = [_call("live", 10.0), _call("replayed", 10.0, cached=True)]
        for when in ("setup", "call", "teardown"):
            properties = [("llm", json.dumps(calls))] if when == "teardown" else []
            report = _report(when, "passed", user_properties=properties)
            report.nodeid, report.llm_host = f"t.py::test_{i}", host  # type: ignore[attr-defined]
            recorder.pytest_runtest_logreport(report)
    assert recorder.records == {}
    assert recorder.live_models == {host: {"live"}}  # replayed calls ask no server for a digest
    output = recorder.worker_output()  # what workeroutput carries: no per-test totals
    assert output == {"id": "gw0", "host": "http://127.0.0.1:11434", "digests": {}}


def test_percentile_interpolates() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([10.0, 20.0, 30.0, 40.0, 50.0], 95) == 48.0


def test_split_group_reads_only_a_trailing_group() -> None:
    assert split_group("t.py::test_x@db") == ("t.py::test_x", "db")
    assert split_group("t.py::test_x[a@b]") == ("t.py::test_x[a@b]", None)
    assert split_group("t.py::test_x[a@b]@g") == ("t.py::test_x[a@b]", "g")
    assert split_group("dir@2/t.py::test_x") == ("dir@2/t.py::test_x", None)


def test_public_host_drops_credentials() -> None:
    assert public_host("https://user:secret@gpu1:11434/v1") == "https://gpu1:11434/v1"
    assert public_host("http://gpu1:11434") == "http://gpu1:11434"


def _report(when: str, outcome: str, **extra: Any) -> pytest.TestReport:
    longrepr = (
        "boom" if outcome == "failed" else (("f", 1, "skip") if outcome == "skipped" else None)
    )
    return pytest.TestReport(
        "t.py::test_x",
        ("t.py", 1, "test_x"),
        {},
        outcome,
        longrepr,
        when,
        **extra,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        ([("setup", "passed", {}), ("call", "passed", {}), ("teardown", "passed", {})], "passed"),
        ([("setup", "failed", {}), ("teardown", "passed", {})], "error"),
        ([("setup", "skipped", {})], "skipped"),
        ([("setup", "passed", {}), ("call", "skipped", {"wasxfail": ""})], "xfailed"),
        ([("setup", "passed", {}), ("call", "passed", {"wasxfail": ""})], "xpassed"),
        ([("setup", "passed", {}), ("call", "failed", {}), ("teardown", "failed", {})], "failed"),
        ([("setup", "passed", {}), ("call", "passed", {}), ("teardown", "failed", {})], "error"),
        (
            [
                ("setup", "passed", {}),
                (
                    "call",
                    "failed",
                    {"llm_error": {"type": "BackendTimeout", "host": None, "message": ""}},
                ),
            ],
            "error",
        ),
    ],
)
def test_record_outcome_merges_the_phases(
    phases: list[tuple[str, str, dict[str, Any]]], expected: str
) -> None:
    record = TestRecord(nodeid="t.py::test_x")
    for when, outcome, extra in phases:
        record.update(_report(when, outcome, **extra))
    assert record.as_json()["outcome"] == expected


def _call(
    model: str, duration: float, *, route: list[str] | None = None, **kw: Any
) -> dict[str, Any]:
    return {
        "model": model, "route": route or [model], "duration_ms": duration,
        "total_duration_ms": duration, "ttft_ms": duration / 2, "tokens_in": 2,
        "tokens_out": 3, "retries": len(route or [model]) - 1, "score": None, "cached": False, **kw,
    }  # fmt: skip


def _try(model: str, duration: float, server: float | None = None, **kw: Any) -> dict[str, Any]:
    return {
        "model": model, "rejected": None, "duration_ms": duration, "ttft_ms": duration / 2,
        "server_ms": server, "queue_ms": None, "load_ms": 0.0, "tokens_in": 2, "tokens_out": 3,
        "score": None, "cached": False, **kw,
    }  # fmt: skip


def test_model_figures_and_totals_from_records() -> None:
    record_a = TestRecord(nodeid="a", outcome="passed", calls=[_call("m", 100.0, score=0.5)])
    record_b = TestRecord(
        nodeid="b", outcome="failed", calls=[_call("big", 300.0, route=["m", "big"], cached=True)]
    )
    tests = [
        record_a.as_json(),
        record_b.as_json(),
        TestRecord(nodeid="c", outcome="skipped").as_json(),
    ]
    figures = model_figures(tests)
    assert (
        figures["m"]["tests"] == 2
        and figures["m"]["passed"] == 1
        and figures["m"]["pass_rate"] == 0.5
    )
    assert figures["m"]["escalations"] == 1 and figures["m"]["mean_score"] == 0.5
    assert figures["big"]["calls"] == 1 and figures["big"]["cached"] == 1
    assert figures["big"]["p50_ms"] == 300.0 and figures["big"]["p50_ttft_ms"] == 150.0
    totals = run_totals(tests, wall_s=0.2)
    assert totals["tests"] == 3 and totals["llm_tests"] == 2 and totals["skipped"] == 1
    assert totals["calls"] == 2 and totals["model_ms"] == 400.0
    # no server durations: the client's time would count queueing, so nothing is claimed
    assert totals["parallelism"] is None and totals["server_ms"] is None
    assert totals["escalations"] == 1 and totals["cached"] == 1 and totals["tokens_out"] == 6
    assert parallelism(totals) == (
        "parallelism not measured (the server tells no durations), 1 replayed calls left out"
    )
    timed = TestRecord(nodeid="a", calls=[_call("m", 100.0, tries=[_try("m", 100.0, 80.0)])])
    totals = run_totals([timed.as_json(), record_b.as_json()], wall_s=0.2)
    assert totals["parallelism"] == 0.4  # the server's 80 ms busy; the replayed 300 ms cost none
    assert parallelism(totals) == (
        "x0.40 from parallelism (server busy 0.08 s), 1 replayed calls left out"
    )
    replayed_only = run_totals([record_b.as_json()], wall_s=0.2)
    assert replayed_only["parallelism"] is None
    assert parallelism(replayed_only) == "every call replayed from cassettes"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file; write one with --llm-report PATH"),
        ("{not json", "is not a readable JSON report"),
        ('{"schema": "other/2", "tests": []}', "is not a pytest-llm report (schema 'other/2'"),
        (
            f'{{"schema": "{SCHEMA}", "tests": [{{"nodeid": "x"}}]}}',
            "must be a list of test records",
        ),
        (
            f'{{"schema": "{SCHEMA}", "tests": [], "models": null}}',
            "is damaged: 'models' must be an object of per-model figures, got None",
        ),
        (
            f'{{"schema": "{SCHEMA}", "models": {{}}, '
            '"tests": [{"nodeid": "t.py::a", "outcome": "passed", "score": "0.9"}]}',
            "is damaged: t.py::a: 'score' must be a number or null, got '0.9'",
        ),
        (
            f'{{"schema": "{SCHEMA}", "tests": [], "models": {{"m": {{"p50_ms": true}}}}}}',
            "is damaged: model m: 'p50_ms' must be a number or null, got True",
        ),
        (
            f'{{"schema": "{SCHEMA}", "tests": [{{"nodeid": 1, "outcome": "passed"}}]}}',
            "is damaged: a test's 'nodeid' must be a string, got 1",
        ),
    ],
)
def test_load_report_rejects_bad_files(tmp_path: Path, content: str | None, message: str) -> None:
    from pytest_llm import ConfigError

    path = tmp_path / "damaged-baseline.json"  # damaged*.json: not checked against the schema
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_report(path)


def test_only_a_pass_after_re_asks_is_marked_and_one_re_ask_is_singular() -> None:
    from pytest_llm.report import reask_lines
    from pytest_llm.report.figures import RunFigures

    def record(nodeid: str, outcome: str, *reasks: int) -> dict[str, Any]:
        calls = [
            {"model": "m", "success": outcome == "passed", "reasks": n, "duration_ms": 1.0}
            for n in reasks
        ]
        return TestRecord(nodeid=nodeid, outcome=outcome, calls=calls).as_json()

    tests = [
        record("t.py::once", "passed", 1, 0),
        record("t.py::twice", "passed", 1, 1),
        record("t.py::first_time", "passed", 0),
        record("t.py::failed", "failed", 3),
    ]
    assert [t["reasks"] for t in tests] == [1, 2, 0, 0]  # a failed call's re-asks not counted
    assert reask_lines(RunFigures.over(tests)) == [
        "t.py::once: passed after 1 re-ask",
        "t.py::twice: passed after 2 re-asks",
    ]
    assert run_totals(tests, wall_s=1.0)["reasks"] == 3
