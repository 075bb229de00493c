"""A long run's report in flat memory: each test written to disk as it ends, the figures
kept as running totals, the report file assembled at the end (as before, byte for byte)
and replaced atomically; the reports pytest keeps hold no calls once every plugin has
seen them. Sessions run the plugin for real; memory itself is measured by the bench
(``python -m bench --only replay``), not here."""

from __future__ import annotations

import json
import signal
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from pytest_llm.report import build_report
from pytest_llm.report.figures import RunFigures
from pytest_llm.report.stream import SpooledTests, write_report
from pytest_llm.testing import FakeOllama


def run(pytester: pytest.Pytester, fake: FakeOllama, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(f"--llm-host={fake.url}", "-p", "no:cacheprovider", *args)


def _test(i: int, **extra: Any) -> dict[str, Any]:
    """A ``tests[]`` record as the recorder writes it (the keys the figures read)."""
    call = {
        "model": "m",
        "route": ["m"],
        "success": True,
        "duration_ms": 10.0 + i,
        "ttft_ms": 2.5,
        "tokens_in": 3,
        "tokens_out": 4,
        "answer": f"answer {i} é ✓",
        "tries": [],
    }
    return {
        "nodeid": f"t.py::test_{i}",
        "outcome": "passed",
        "worker": None,
        "host": "h",
        "error": None,
        "route": ["m"],
        "model": "m",
        "llm": [call],
        "scores": [],
        "samples": [],
        "nested": {"empty": {}, "list": [], "deep": [{"a": [1, 2.5, None]}]},
        **extra,
    }


def test_the_report_file_is_what_json_dumps_would_write(tmp_path: Path) -> None:
    """Streamed one test at a time, the file is ``json.dumps(doc, indent=1)`` exactly."""
    spooled = SpooledTests(tmp_path)
    tests = [_test(i) for i in range(3)]
    for test in tests:
        spooled.append(test)
    assert len(spooled) == 3 and list(spooled) == tests and spooled[1] == tests[1]
    assert spooled[1:] == tests[1:]
    doc = build_report(tests, run={"wall_s": 1.0, "hosts": [], "empty": {}})
    for written, shown in ((dict(doc, tests=spooled), tests), (dict(doc, tests=[]), [])):
        path = tmp_path / "out" / "damaged.json"  # only the text is checked: no real report
        write_report(path, written)
        expected = json.dumps(dict(doc, tests=shown), indent=1) + "\n"
        assert path.read_text(encoding="utf-8") == expected
    spooled.close()
    assert len(spooled) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the spool has no name
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["damaged.json"]  # no temporary left


def test_passes_over_the_spooled_tests_nest(tmp_path: Path) -> None:
    spooled = SpooledTests(tmp_path)
    for i in range(4):
        spooled.append(_test(i))
    pairs = [(a["nodeid"][-1], b["nodeid"][-1]) for a in spooled for b in spooled if a is not b]
    assert len(pairs) == 16
    first = next(iter(spooled))
    spooled.append(_test(9))  # an append between reads goes to the end
    assert first["nodeid"] == "t.py::test_0" and spooled[-1]["nodeid"] == "t.py::test_9"
    spooled.close()


ERROR = {"type": "BackendUnreachable", "host": "h", "message": "refused"}


def test_running_figures_are_the_figures_over_the_list() -> None:
    tests = [_test(i) for i in range(5)] + [
        _test(5, outcome="failed", worker="gw1"),
        _test(6, outcome="error", llm=[], route=[], error=ERROR),
    ]
    running = RunFigures()
    for test in tests:
        running.add(test)
    over = build_report(tests, run={"wall_s": 2.0})
    assert running.totals(2.0) == over["totals"] and running.models() == over["models"]
    assert running.hosts_down() == {
        "h": {"tests": 1, "workers": [], "message": "refused", "reason": "refused the connection",
              "moved": []}
    }  # fmt: skip
    assert running.workers({"gw1": "h"}) == [
        {"id": "gw1", "host": "h", "tests": 1, "llm_tests": 1, "calls": 1, "model_ms": 15.0}
    ]


LONG_RUN = """
import os, signal
import pytest

@pytest.mark.parametrize("i", range(6))
def test_answer(llm, i):
    assert llm.chat(f"Question {i}?").content == "fine"

def test_wrong(llm):
    assert llm.chat("Wrong?").content == "something else"

def test_kill(request):
    if os.environ.get("KILL_SESSION"):
        os.kill(os.getpid(), signal.SIGKILL)
"""

FACTS = """
import json, pytest

@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, config):
    recorder = config.pluginmanager.get_plugin("llm-report")
    kept = [r for reports in terminalreporter.stats.values() for r in reports
            if hasattr(r, "user_properties")]
    facts = {
        "in_flight": len(recorder.records),
        "spooled": len(recorder.tests),
        "tests_type": type(recorder.doc["tests"]).__name__,
        "reports_with_calls": sum(1 for r in kept for n, _ in r.user_properties if n == "llm"),
        "items_with_calls": sum(
            1 for item in terminalreporter._session.items
            for n, _ in item.user_properties if n == "llm"
        ),
        "kept_reports": len(kept),
    }
    with open("facts.json", "w") as out:
        json.dump(facts, out)
"""


def test_a_run_keeps_its_tests_on_disk_and_no_calls_on_the_reports(
    pytester: pytest.Pytester,
) -> None:
    """After the run: no record in memory, every test in the spool and in the report file;
    the reports and items pytest keeps carry no ``llm`` property, though JUnit XML (which
    reads it as the report is logged) has every test's."""
    pytester.makepyfile(LONG_RUN)
    pytester.makeconftest(FACTS)
    report, junit = pytester.path / "out" / "r.json", pytester.path / "junit.xml"
    with FakeOllama("fine") as fake:
        result = run(
            pytester, fake, "-p", "no:xdist", f"--llm-report={report}",
            f"--junitxml={junit}", "-o", "junit_family=xunit1",
        )  # fmt: skip
    result.assert_outcomes(passed=7, failed=1)
    doc = json.loads(report.read_text())
    assert [t["nodeid"].split("::")[1] for t in doc["tests"]] == [
        *(f"test_answer[{i}]" for i in range(6)),
        "test_wrong",
        "test_kill",
    ]
    assert doc["totals"]["tests"] == 8 and doc["totals"]["calls"] == 7
    assert doc["models"]["llama3.2"]["tests"] == 7 and doc["models"]["llama3.2"]["passed"] == 6
    wrong = next(t for t in doc["tests"] if t["nodeid"].endswith("test_wrong"))
    assert wrong["failure"]["message"] and wrong["llm"][0]["answer"] == "fine"
    facts = json.loads((pytester.path / "facts.json").read_text())
    assert facts == {
        "in_flight": 0,
        "spooled": 8,
        "tests_type": "SpooledTests",
        "reports_with_calls": 0,
        "items_with_calls": 0,
        "kept_reports": facts["kept_reports"],
    }
    assert facts["kept_reports"] >= 8
    named = {
        case.get("name"): [p.get("name") for p in case.iter("property")]
        for case in ET.parse(junit).getroot().iter("testcase")
    }
    assert all("llm" in names for case, names in named.items() if case != "test_kill"), named
    assert sorted(p.name for p in report.parent.iterdir()) == ["r.json"]


def test_a_run_under_xdist_writes_every_test_once(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(LONG_RUN)
    report = pytester.path / "r.json"
    with FakeOllama("fine") as fake:
        result = run(pytester, fake, "-n", "2", f"--llm-report={report}")
    result.assert_outcomes(passed=7, failed=1)
    doc = json.loads(report.read_text())
    nodeids = [t["nodeid"] for t in doc["tests"]]
    assert len(nodeids) == len(set(nodeids)) == 8 and doc["totals"]["calls"] == 7
    assert sorted(t["worker"] for t in doc["tests"])[0] == "gw0"
    assert sum(w["tests"] for w in doc["run"]["workers"]) == 8


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_session_leaves_the_previous_report_and_no_files(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(LONG_RUN)
    folder = pytester.path / "reports"
    report = folder / "r.json"
    with FakeOllama("fine") as fake:
        run(pytester, fake, "-p", "no:xdist", f"--llm-report={report}")
        previous = report.read_bytes()
        monkeypatch.setenv("KILL_SESSION", "1")
        result = run(pytester, fake, "-p", "no:xdist", f"--llm-report={report}")
    assert result.ret == -signal.SIGKILL
    assert report.read_bytes() == previous  # whole, and the last complete run's
    assert [p.name for p in folder.iterdir()] == ["r.json"]  # the spool had no name


def test_a_run_without_report_files_spools_no_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing reads the tests back (no report file, no HTML, no step summary, no gate):
    none is written to the spool, and the terminal's summary is whole all the same."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    pytester.makepyfile(LONG_RUN)
    pytester.makeconftest(FACTS)
    with FakeOllama("fine") as fake:
        result = run(pytester, fake, "-p", "no:xdist")
    result.assert_outcomes(passed=7, failed=1)
    result.stdout.fnmatch_lines(["7 of 8 tests called a model: 7 calls, *"])
    facts = json.loads((pytester.path / "facts.json").read_text())
    assert facts["in_flight"] == 0 and facts["spooled"] == 0
