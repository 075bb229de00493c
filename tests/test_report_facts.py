"""Run facts that are facts (issue 11, item 5), the typed document and its schema (item 6),
and dataset cases in the HTML and Markdown reports (issue 13).

Each behaviour is a real pytest session (``pytester``) against a FakeOllama whose own
request log the figures are checked against.
"""

from __future__ import annotations

import json
import re
import typing
import xml.etree.ElementTree as ET
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from pytest_llm.report import document
from pytest_llm.testing import FakeOllama, RecordedRequest, Reply
from tests.report_schema import problems

from .conftest import free_url


def run(pytester: pytest.Pytester, fake: FakeOllama, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(f"--llm-host={fake.url}", "-p", "no:cacheprovider", *args)


def chats(fake: FakeOllama) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.path == "/api/chat"]


# --- the typed document and its schema ------------------------------------------------------

#: Each part of the document and its definition in the published schema.
PARTS = {
    document.Report: None,
    document.Run: "run",
    document.Totals: "totals",
    document.ModelFigures: "model",
    document.ReportedTest: "test",
    document.Call: "call",
    document.Try: "try",
    document.ScoreEntry: "score",
    document.Sample: "sample",
    document.Dataset: "dataset",
    document.CaseRow: "case",
    document.Failure: "failure",
    document.ErrorInfo: "error",
    document.HostDown: "host_down",
    document.Worker: "worker",
}


@pytest.mark.parametrize("part", list(PARTS), ids=lambda p: p.__name__)
def test_every_typed_part_is_the_schemas_definition(part: Any) -> None:
    schema = document.json_schema()
    name = PARTS[part]
    definition = schema if name is None else schema["$defs"][name]
    assert set(definition["properties"]) == set(typing.get_type_hints(part))
    if definition["additionalProperties"] is False:  # the report's own objects: all required
        assert set(definition["required"]) == set(part.__required_keys__)
    else:  # records from elsewhere: the schema requires what the report reads, at least
        assert set(definition["required"]) <= set(part.__required_keys__)


def test_the_schema_is_a_valid_draft_2020_12_schema_named_for_the_version() -> None:
    import jsonschema

    schema = document.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema"] == {"const": document.SCHEMA}
    assert document.SCHEMA == "pytest-llm-report/2"
    assert document.SCHEMA_FILE.name == "pytest-llm-report-2.schema.json"


def test_the_schema_file_is_package_data() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["pytest_llm.report"]
    assert any(document.SCHEMA_FILE.match(p) for p in patterns)


def test_the_schema_rejects_what_a_report_never_holds() -> None:
    from pytest_llm.report import build_report

    good = build_report([], run=_run())
    assert problems(good) == []
    wrong = [
        ({**good, "schema": "pytest-llm-report/1"}, "at /schema"),
        ({**good, "totals": {**good["totals"], "calls": -1}}, "at /totals/calls"),
        ({**good, "run": {**good["run"], "surprise": 1}}, "at /run"),
        ({**good, "tests": [{"nodeid": "t.py::a"}]}, "at /tests/0"),
    ]
    for doc, where in wrong:
        found = problems(doc)
        assert found and found[0].startswith(where), (where, found)


def _run() -> dict[str, Any]:
    return {
        "wall_s": 1.0, "model": "llama3.2", "backend": "ollama", "seed": 42, "hosts": [],
        "hosts_down": {}, "workers": [], "digests": {}, "dist": None, "filtered": False,
        "split": None, "versions": {"python": "3.11"},
    }  # fmt: skip


def test_a_version_1_baseline_is_read_and_a_newer_one_names_the_fix(tmp_path: Path) -> None:
    from pytest_llm import ConfigError
    from pytest_llm.baseline import load_report

    old = tmp_path / "v1.json"
    old.write_text(json.dumps({"schema": "pytest-llm-report/1", "tests": [], "models": {}}))
    assert load_report(old)["schema"] == "pytest-llm-report/1"
    newer = tmp_path / "v3.json"
    newer.write_text(json.dumps({"schema": "pytest-llm-report/3", "tests": [], "models": {}}))
    with pytest.raises(ConfigError) as caught:
        load_report(newer)
    assert str(caught.value) == (
        f"--llm-baseline={str(newer)!r} was written by another pytest-llm (schema "
        "'pytest-llm-report/3'; this one reads 'pytest-llm-report/2' and "
        "'pytest-llm-report/1'): upgrade pytest-llm to the version that wrote it, or write "
        "one with --llm-report PATH (for example on your main branch) with this one"
    )


def test_one_owner_for_the_user_properties_names() -> None:
    from pytest_llm import cassettes, datasets, ladder, properties, sampling
    from pytest_llm.report import SCORES_PROPERTY

    assert len(set(properties.NAMES)) == len(properties.NAMES) == 7
    assert SCORES_PROPERTY == properties.SCORES == "llm_scores"
    assert (sampling.PROPERTY, datasets.PROPERTY) == (properties.SAMPLES, properties.DATASETS)
    assert (cassettes.PROPERTY, ladder.PROPERTY) == (properties.CASSETTE, properties.RUNG)
    package = Path(properties.__file__).parent
    spelled = {  # a module naming an entry spells it through pytest_llm.properties
        path.name
        for path in package.rglob("*.py")
        if path.name != "properties.py"
        and re.search(r"""^\w*PROPERTY\w* = ["']""", path.read_text(encoding="utf-8"), re.M)
    }
    assert spelled == set()


# --- item 5: run facts ----------------------------------------------------------------------

OWN_MODELS = """
import pytest
from pytest_llm import Score

def graded(result):
    return Score(value=1.0 if "good" in result.content else 0.5, name="graded")

@pytest.mark.llm(model="tiny")
def test_tiny(llm):
    assert llm.chat("say good", scorer=graded).content == "a good answer"

@pytest.mark.llm(model="big")
def test_big(llm):
    assert llm.chat("say anything", scorer=graded).content == "a good answer"

@pytest.mark.llm(model="big", host={down!r}, max_retries=0)
def test_big_down(llm):
    llm.chat("unreachable")

@pytest.mark.llm(model="big", host={down!r}, max_retries=0)
def test_big_down_too(llm):
    llm.chat("unreachable")
"""


def test_the_run_names_the_models_it_used_and_counts_errored_tests_in_pass_rates(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_own=OWN_MODELS.format(down=free_url()))
    summary = pytester.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    report, html = pytester.path / "r.json", pytester.path / "r.html"
    with FakeOllama("a good answer", models=["tiny", "big"]) as fake:
        result = run(pytester, fake, "-p", "no:xdist", f"--llm-report={report}",
                     f"--llm-html={html}")  # fmt: skip
        served = [r.model for r in chats(fake)]
    result.assert_outcomes(passed=2, errors=2)
    assert sorted(served) == ["big", "tiny"]  # the default llama3.2 was never asked
    doc = json.loads(report.read_text())
    assert doc["run"]["model"] == "llama3.2"  # the setting, documented as such
    tests = {t["nodeid"].split("::")[1]: t for t in doc["tests"]}
    assert tests["test_big_down"]["model"] == "big"  # the model it was set to ask
    assert tests["test_big_down"]["route"] == [] and tests["test_big_down"]["calls"] == 0
    big, tiny = doc["models"]["big"], doc["models"]["tiny"]
    assert (big["tests"], big["passed"], big["pass_rate"], big["calls"]) == (3, 1, 0.3333, 1)
    assert (tiny["tests"], tiny["passed"], tiny["pass_rate"], tiny["calls"]) == (1, 1, 1.0, 1)
    assert "llama3.2" not in doc["models"]

    page = unescape(html.read_text())
    header = re.search(r'<p class="muted">(.*?)</p>', page)
    assert header is not None
    assert "models big, tiny · default llama3.2 (not used) · " in header.group(1)
    run_part = page.split("<h2>Run</h2>", 1)[1]
    assert run_part.startswith("\n<pre>models big, tiny · default llama3.2 (not used)\n")
    rates = re.findall(r"<title>(\w+), this run: (\d+)% \((\d+/\d+) tests passed\)</title>", page)
    assert rates == [("big", "33", "1/3"), ("tiny", "100", "1/1")]
    assert "models big, tiny · default llama3.2 (not used)\n" in summary.read_text()


def _fills(page: str, caption: str) -> dict[str, set[str]]:
    """The colours each model has in the plot under ``caption``."""
    figure = page.split(f"<figcaption>{caption}</figcaption>", 1)[1].split("</figure>", 1)[0]
    found: dict[str, set[str]] = {}
    for fill, model in re.findall(r'fill="(#[0-9a-f]{3,6})"[^>]*><title>([\w.:-]+)[:,]', figure):
        if fill != "#bbb":  # the baseline's grey
            found.setdefault(model, set()).add(fill)
    return found


def test_a_model_keeps_one_colour_in_every_plot(pytester: pytest.Pytester) -> None:
    """``alpha`` answers but is never scored: the score plot has only ``beta``'s row, and
    ``beta`` is still drawn in its own colour there, not in the first row's."""
    pytester.makepyfile(
        """
        import pytest
        from pytest_llm import Score

        @pytest.mark.llm(model="alpha")
        def test_alpha(llm):
            llm.chat("hi")

        @pytest.mark.llm(model="beta")
        def test_beta(llm):
            llm.chat("hi", scorer=lambda r: Score(value=0.9, name="s"))
        """
    )
    html = pytester.path / "r.html"
    with FakeOllama("fine", models=["alpha", "beta"]) as fake:
        run(pytester, fake, "-p", "no:xdist", f"--llm-html={html}").assert_outcomes(passed=2)
    page = html.read_text()
    scores = _fills(page, "Score distribution per model")
    latency = _fills(page, "Latency per model (every call)")
    rates = _fills(page, "Pass rate per model, against baseline")
    assert set(scores) == {"beta"} and set(latency) == set(rates) == {"alpha", "beta"}
    for model in ("alpha", "beta"):
        colours = latency[model] | rates[model] | scores.get(model, set())
        assert len(colours) == 1, (model, colours)
    assert latency["alpha"] != latency["beta"]


def test_a_judge_is_shown_apart_from_the_escalation_route() -> None:
    """A judge's call (``role: "judge"``) is in the test's calls and in the judge model's
    figures, but not in its route: ``tiny``, judged by ``judge``, not ``tiny → judge``."""
    from pytest_llm.report import TestRecord, build_report, models_used
    from pytest_llm.report.html import render_html
    from pytest_llm.report.text import models_text

    record = TestRecord(nodeid="t.py::test_judged", outcome="passed")
    record.calls = [_call("judge", role="judge"), _call("tiny")]  # the judge's answer ends first
    test = record.as_json()
    assert (test["model"], test["route"], test["judges"], test["calls"]) == (
        "tiny", ["tiny"], ["judge"], 2
    )  # fmt: skip
    doc = build_report([test], run=_run())
    assert problems(doc) == []
    assert doc["models"]["judge"]["calls"] == 1 and doc["models"]["judge"]["tests"] == 0
    assert doc["models"]["tiny"]["tests"] == 1
    assert models_used(doc) == ["judge", "tiny"]
    assert models_text(doc) == "model tiny · judge judge · default llama3.2 (not used)"
    row = render_html(doc).split('<table id="tests">', 1)[1].split("</tr>", 2)[1]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells[2:5] == ["tiny", "tiny", "judge"]  # model, route, judge
    assert "→" not in cells[3]


def _call(model: str, **more: Any) -> dict[str, Any]:
    return {
        "model": model, "route": [model], "success": True, "tokens_in": 5, "tokens_out": 2,
        "total_tokens_in": 5, "total_tokens_out": 2, "duration_ms": 10.0,
        "total_duration_ms": 10.0, "ttft_ms": 5.0, "load_ms": 0.0, "retries": 0, "reasks": 0,
        "attempts": 1, "score": None, "cached": False, "answer": "ok", "tries": [], **more,
    }  # fmt: skip


# --- JUnit XML valid for its family ---------------------------------------------------------

#: junit-10.xsd (the xunit2 schema pytest's own tests validate against): each element's
#: allowed children and attributes. ``error`` as pytest writes it (the XSD's ``errors``).
XUNIT2 = {
    "testsuites": ({"testsuite"}, {"name", "time", "tests", "failures", "errors"}),
    "testsuite": (
        {"testsuite", "properties", "testcase", "system-out", "system-err"},
        {
            "name",
            "tests",
            "failures",
            "errors",
            "group",
            "time",
            "skipped",
            "timestamp",
            "hostname",
            "id",
            "package",
            "file",
            "log",
            "url",
            "version",
        },
    ),
    "properties": ({"property"}, set()),
    "property": (set(), {"name", "value"}),
    "testcase": (
        {
            "skipped",
            "error",
            "failure",
            "rerunFailure",
            "rerunError",
            "flakyFailure",
            "flakyError",
            "system-out",
            "system-err",
        },
        {"name", "time", "classname", "group"},
    ),
    "failure": (set(), {"type", "message"}),
    "error": (set(), {"type", "message"}),
    "skipped": (set(), {"type", "message"}),
    "system-out": (set(), set()),
    "system-err": (set(), set()),
}
REQUIRED = {
    "testsuite": {"name", "tests", "failures", "errors"},
    "testcase": {"name"},
    "property": {"name", "value"},
}


def xunit2_problems(root: ET.Element) -> list[str]:
    """Where ``root`` breaks junit-10.xsd's structure: unknown elements, children or
    attributes, missing required attributes."""
    found = []
    for element in root.iter():
        if element.tag not in XUNIT2:
            found.append(f"unknown element <{element.tag}>")
            continue
        children, attributes = XUNIT2[element.tag]
        found += [f"<{c.tag}> in <{element.tag}>" for c in element if c.tag not in children]
        found += [f"@{a} on <{element.tag}>" for a in element.attrib if a not in attributes]
        missing = REQUIRED.get(element.tag, set()) - set(element.attrib)
        found += [f"<{element.tag}> without @{a}" for a in sorted(missing)]
    return found


JUNIT_SUITE = """
import pytest

def test_asks(llm):
    llm.chat("one")
    llm.chat("two")

def test_wrong(llm):
    assert llm.chat("three").content == "something else"

@pytest.mark.llm(on_low_quality="flag", min_score=0.9, max_retries=0)
def test_flagged(llm):
    llm.chat("four", scorer=lambda r: 0.1)
"""


@pytest.mark.parametrize("dist", [["-p", "no:xdist"], ["-n", "2"]], ids=["serial", "xdist"])
def test_junit_xml_is_valid_xunit2_and_keeps_properties_under_xunit1(
    pytester: pytest.Pytester, dist: list[str]
) -> None:
    pytester.makepyfile(test_junit=JUNIT_SUITE)
    xunit2, xunit1 = pytester.path / "x2.xml", pytester.path / "x1.xml"
    report = pytester.path / "r.json"
    with FakeOllama("fine") as fake:
        result = run(pytester, fake, *dist, f"--junitxml={xunit2}", f"--llm-report={report}")
        served = len(chats(fake))
        again = run(pytester, fake, *dist, f"--junitxml={xunit1}", "-o", "junit_family=xunit1")
    for session in (result, again):
        counts = session.parseoutcomes()
        assert (counts["passed"], counts["failed"], counts["flagged"]) == (1, 1, 1)
    assert served == 4

    root = ET.parse(xunit2).getroot()
    assert xunit2_problems(root) == []
    assert root.findall(".//testcase/properties") == []
    suite = root.find("testsuite")
    assert suite is not None
    figures = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    totals = json.loads(report.read_text())["totals"]  # the same run, as the JSON report has it
    assert totals["calls"] == served
    assert figures == {
        "llm_models": "llama3.2", "llm_tests": "3", "llm_calls": str(served),
        "llm_tokens_in": str(totals["tokens_in"]), "llm_tokens_out": str(totals["tokens_out"]),
        "llm_flagged": "1", "llm_report": str(report),
    }  # fmt: skip
    assert totals["tokens_out"] > 0
    wrong = next(c for c in suite.iter("testcase") if c.get("name") == "test_wrong")
    failure = wrong.find("failure")
    assert failure is not None and "something else" in failure.get("message", "")

    cases = {c.get("name"): c for c in ET.parse(xunit1).getroot().iter("testcase")}
    names = {p.get("name") for p in cases["test_asks"].iter("property")}
    assert names == {"llm"}
    (calls,) = [json.loads(p.get("value", "")) for p in cases["test_asks"].iter("property")]
    assert [c["model"] for c in calls] == ["llama3.2", "llama3.2"]
    flagged = {p.get("name") for p in cases["test_flagged"].iter("property")}
    assert {"llm", "llm_scores", "llm_flagged"} <= flagged


# --- the xdist_group marker -----------------------------------------------------------------

GROUPED = """
import pytest

@pytest.mark.xdist_group("db")
def test_in_db(llm):
    llm.chat("hi")

@pytest.mark.xdist_group(name="cache")
def test_in_cache(llm):
    llm.chat("hi")

def test_free(llm):
    llm.chat("hi")
"""


@pytest.mark.parametrize(
    "dist", [["-n", "2", "--dist", "loadgroup"], ["-p", "no:xdist"]], ids=["loadgroup", "serial"]
)
def test_the_group_comes_from_the_xdist_group_marker(
    pytester: pytest.Pytester, dist: list[str]
) -> None:
    pytester.makepyfile(test_grouped=GROUPED)
    report = pytester.path / "r.json"
    with FakeOllama("fine") as fake:
        run(pytester, fake, *dist, f"--llm-report={report}").assert_outcomes(passed=3)
    tests = {t["nodeid"]: t["group"] for t in json.loads(report.read_text())["tests"]}
    assert tests == {
        "test_grouped.py::test_in_db": "db",
        "test_grouped.py::test_in_cache": "cache",
        "test_grouped.py::test_free": None,
    }


# --- issue 13: dataset cases in the HTML and Markdown reports -------------------------------

DATASET = """
import pytest
from pytest_llm import load_cases

CASES = load_cases([
    {"id": "t1", "text": "refund me", "label": "billing"},
    {"id": "t2", "text": "it crashes", "label": "bug"},
    {"id": "t3", "text": "add dark mode", "label": "feature"},
], id="id")

@pytest.mark.llm(min_accuracy=0.5)
def test_tickets(llm):
    llm.evaluate(CASES, "Classify: {text}", expected="label")
"""


def classify(request: RecordedRequest) -> Reply:
    text = request.messages[-1]["content"]
    return Reply(content="bug" if "crashes" in text or "dark" in text else "billing")


def test_dataset_cases_are_rows_in_the_html_and_markdown_reports(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_tickets=DATASET)
    summary = pytester.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    html, report = pytester.path / "r.html", pytester.path / "r.json"
    with FakeOllama(classify) as fake:
        result = run(pytester, fake, "-p", "no:xdist", f"--llm-html={html}",
                     f"--llm-report={report}")  # fmt: skip
        assert len(chats(fake)) == 3
    result.assert_outcomes(passed=1)  # 2 of 3 cases meet min_accuracy 0.5
    (test,) = json.loads(report.read_text())["tests"]
    (dataset,) = test["datasets"]
    assert [(c["id"], c["passed"]) for c in dataset["results"]] == [
        ("t1", True), ("t2", True), ("t3", False),
    ]  # fmt: skip

    page = html.read_text()
    rows = re.findall(r'<tr class="case"><td class="id">↳ case (\w+)</td><td>(.*?)</td>', page)
    assert [(case, re.sub("<[^>]+>", "", badge)) for case, badge in rows] == [
        ("t3", "failed"),
        ("t1", "passed"),
        ("t2", "passed"),
    ]  # fmt: skip  (failed cases first)
    t3 = page.split("<summary>case t3</summary>", 1)[1].split("</details>", 1)[0]
    assert "expected label &#x27;feature&#x27;" in t3
    assert "expected &#x27;feature&#x27;, predicted &#x27;bug&#x27;" in t3
    assert "<b>output</b><pre>bug</pre>" in t3
    assert "dataset: 2/3 cases passed: accuracy 67% (95% CI 21%-94%), min_accuracy 50%: passed" in (
        unescape(page)
    )

    markdown = unescape(summary.read_text())
    assert "### Dataset tests (1)" in markdown
    lines = markdown.split("dataset: 2/3 cases passed", 1)[1].split("</pre>", 1)[0].splitlines()
    cases = [line for line in lines if line.startswith(("FAILED ", "passed "))]
    assert cases[0].startswith("FAILED t3 [llama3.2]: expected label 'feature'")
    assert cases[1:] == ["passed t1 [llama3.2]", "passed t2 [llama3.2]"]


def test_in_chromium_a_datasets_cases_filter_with_their_test(tmp_path: Path) -> None:
    """The inline script, run by a real browser: filtering for a case keeps its test, the
    test's details and every case row together, and hides the other tests."""
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from pytest_llm.report import TestRecord, build_report
    from pytest_llm.report.html import render_html

    plain = TestRecord(nodeid="t.py::test_plain", outcome="passed")
    plain.calls = [_call("tiny")]
    evaluated = TestRecord(nodeid="t.py::test_tickets", outcome="passed")
    evaluated.calls = [_call("tiny"), _call("tiny")]
    evaluated.datasets = [
        {
            "cases": 2, "passes": 1, "accuracy": 0.5, "interval": [0.09, 0.91],
            "min_accuracy": 0.5, "passed": True, "failed_cases": [],
            "results": [
                {"id": "good1", "passed": True, "reason": None, "model": "tiny",
                 "expected": None, "predicted": None, "score": None, "output": "ok"},
                {"id": "bad7", "passed": False, "reason": "check said no", "model": "tiny",
                 "expected": None, "predicted": None, "score": None, "output": "nope"},
            ],
        }
    ]  # fmt: skip
    doc = build_report([plain.as_json(), evaluated.as_json()], run=_run())
    assert problems(doc) == []
    page = tmp_path / "r.html"
    page.write_text(render_html(doc))
    dom = subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--dump-dom",
         f"{page.as_uri()}#filter=bad7"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    body = dom.split('<table id="tests">', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr([^>]*)>(.*?)</tr>", body, re.S)
    shown = [re.sub("<[^>]+>", "", cells)[:40] for attrs, cells in rows if "none" not in attrs]
    hidden = [re.sub("<[^>]+>", "", cells)[:40] for attrs, cells in rows if "none" in attrs]
    assert shown[0].startswith("t.py::test_tickets")
    assert [t for t in shown if t.startswith("↳ case")] == [
        "↳ case bad7failedtiny-",
        "↳ case good1passedtiny-",
    ]
    assert not any(t.startswith("t.py::test_plain") for t in shown)
    assert any(t.startswith("t.py::test_plain") for t in hidden)


JUDGED = """
import pytest
from pytest_llm.scorers import judge

@pytest.mark.llm(model="tiny", judge_model="referee")
def test_judged(llm, llm_judge):
    answer = llm.chat("capital of France?")
    assert llm.score(answer, judge("names Paris", harness=llm_judge)).value == 0.8
"""


def test_a_judges_calls_are_marked_and_leave_the_route(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_judged=JUDGED)
    verdict = json.dumps({"reasoning": "names Paris", "score": 8})
    report, html = pytester.path / "r.json", pytester.path / "r.html"

    def answer(request: RecordedRequest) -> Reply:
        return Reply(content=verdict if request.model == "referee" else "Paris.")

    with FakeOllama(answer, models=["tiny", "referee"]) as fake:
        result = run(pytester, fake, "-p", "no:xdist", f"--llm-report={report}",
                     f"--llm-html={html}")  # fmt: skip
        served = [r.model for r in chats(fake)]
    result.assert_outcomes(passed=1)
    assert served == ["tiny", "referee"]
    (test,) = json.loads(report.read_text())["tests"]
    assert [(c["model"], c.get("role")) for c in test["llm"]] == [
        ("tiny", None), ("referee", "judge")
    ]  # fmt: skip
    assert (test["model"], test["route"], test["judges"], test["calls"]) == (
        "tiny", ["tiny"], ["referee"], 2
    )  # fmt: skip
    page = unescape(html.read_text())
    assert "model tiny · judge referee · default llama3.2 (not used)" in page
    assert "tiny → referee" not in page
