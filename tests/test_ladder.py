"""The model ladder and flags: whole pytest sessions against FakeOllama serving three models."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from pytest_llm.testing import FakeOllama, RecordedRequest

SUITE = """
import pytest
from pytest_llm.scorers import contains_all

def test_capital(llm):
    assert "Paris" in llm.chat("Capital of France?", max_retries=0).content

def test_river(llm):
    llm.chat("Rome's river?", scorer=contains_all("Rome", "Tiber"), min_score=1.0, max_retries=0)

@pytest.mark.llm(model="big")
def test_pinned(llm):
    llm.chat("hi")

@pytest.mark.llm(models=["small", "big"])
def test_own_ladder(llm):
    assert "Paris" in llm.chat("Capital of France?").content

@pytest.mark.llm(on_low_quality="flag", min_score=1.0)
def test_flagged(llm):
    llm.chat("Rome's river?", scorer=contains_all("Rome", "Tiber"), max_retries=0)
"""

ANSWERS = {"tiny": "London", "small": "Paris, Rome", "big": "Paris, Rome on the Tiber"}


def answer(request: RecordedRequest) -> str:
    return ANSWERS[str(request.model).split(":")[0]]


@pytest.fixture
def fake() -> FakeOllama:
    with FakeOllama({m: answer for m in ANSWERS}) as server:
        yield server


def run(pytester: pytest.Pytester, fake: FakeOllama, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        f"--llm-host={fake.url}", "-p", "no:cacheprovider", "--llm-models=tiny,small,big", *args
    )


DISTS = [("-p", "no:xdist"), ("-n", "2")]


@pytest.mark.parametrize("dist", DISTS)
def test_each_test_runs_once_per_model_and_the_run_names_the_smallest(
    pytester: pytest.Pytester, fake: FakeOllama, dist: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    junit = pytester.path / "junit.xml"
    result = run(pytester, fake, "-v", f"--junitxml={junit}", "-o", "junit_family=xunit1", *dist)
    assert result.ret == pytest.ExitCode.OK  # every test passes on some model
    statuses = {  # -v prints "id STATUS" without xdist, "STATUS id" under it
        "test_capital[tiny]": "RUNG FAILED",
        "test_capital[small]": "PASSED",
        "test_pinned ": "PASSED",  # pinned to model="big": not multiplied
        "test_own_ladder[small]": "PASSED",
        "test_flagged[small]": "FLAGGED",
    }
    for test, status in statuses.items():
        assert any(test in line and status in line for line in result.outlines), test
    assert "test_own_ladder[tiny]" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*= llm ladder =*",
            "test *tiny *small *big *smallest passing",
            "test_suite.py::test_capital *failed* passed* passed* small",
            "test_suite.py::test_flagged *flagged 0.00* flagged 0.50* passed 1.00* big",
            "test_suite.py::test_own_ladder *- *passed* passed* small",
            "test_suite.py::test_river *failed 0.00* failed 0.50* passed 1.00* big",
            "tiny passes 0/3; small passes 2/4; big passes 4/4*: the smallest model for this "
            "suite is big; the 2 test(s) that need it: test_suite.py::test_flagged, "
            "test_suite.py::test_river",
        ]
    )
    result.stdout.fnmatch_lines(["*= 7 passed*3 rung-failed, 2 flagged in *"])
    cases = {c.get("name"): c for c in ET.parse(junit).iter("testcase")}
    assert cases["test_capital[tiny]"].find("failure") is not None  # JUnit still tells
    flagged = cases["test_flagged[tiny]"]
    assert flagged.find("failure") is None
    properties = {p.get("name"): p.get("value") for p in flagged.iter("property")}
    assert properties["llm_flagged"].startswith("ScoreTooLow: the output of tiny scored under")


def test_a_test_no_model_passes_fails_the_run_and_says_why(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = run(pytester, fake, "--llm-models=tiny,small", "-k", "river")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "FAILED on every model: test_suite.py::test_river (tiny: ScoreTooLow: the output "
            "of tiny scored under min_score*; small: ScoreTooLow: *",
            "tiny passes 0/1; small passes 0/1: no model passes every test; tiny passes the "
            "most; 1 test(s) pass on none: test_suite.py::test_river",
        ]
    )


def test_require_and_strict_make_failing_rungs_count(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    required = run(pytester, fake, "--llm-ladder-require=small", "-k", "capital or river")
    assert required.ret == pytest.ExitCode.TESTS_FAILED  # small fails test_river
    required.stdout.fnmatch_lines(["*= 1 failed, 3 passed*2 rung-failed in *"])
    strict = run(pytester, fake, "--llm-ladder-strict", "-k", "capital")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines(["*= 1 failed, 2 passed*"])


def test_bad_ladders_are_clear_errors(pytester: pytest.Pytester, fake: FakeOllama) -> None:
    pytester.makepyfile(test_suite=SUITE)
    twice = run(pytester, fake, "--llm-models=tiny,tiny")
    assert twice.ret == pytest.ExitCode.USAGE_ERROR
    twice.stderr.fnmatch_lines(["*--llm-models='tiny,tiny' names a model twice*"])
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.llm(models=[])
        def test_x(llm):
            pass
        """
    )
    bad = run(pytester, fake, "test_bad.py")
    bad.assert_outcomes(errors=1)  # a collection error naming the test
    bad.stdout.fnmatch_lines(
        ["*test_bad.py::test_x: *models=...)=[[][]] is invalid: expected model names, smallest*"]
    )


def test_flags_never_cover_infrastructure_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm(on_low_quality="flag", min_score=1.0, max_retries=0)
        def test_down(llm):
            llm.chat("hi", scorer=lambda result: 0.0)
        """
    )
    result = pytester.runpytest("--llm-host=http://127.0.0.1:9", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    assert "flagged" not in result.stdout.str()


@pytest.mark.parametrize("dist", DISTS)
def test_the_ladder_can_be_ordered_by_the_servers_parameter_size(
    pytester: pytest.Pytester, fake: FakeOllama, dist: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    fake.sizes.update({"big": ("8.0B", "Q4_K_M"), "small": ("3B", "Q8_0"), "tiny": ("3B", "Q4_0")})
    report = pytester.path / "report.json"
    result = pytester.runpytest(
        f"--llm-host={fake.url}", "-p", "no:cacheprovider", "--llm-models=big,small,tiny",
        "--llm-ladder-order=size", "-k", "capital", "-v", f"--llm-report={report}", *dist,
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.OK
    ids = [
        line.split("::", 1)[1].split()[0] for line in result.outlines if "::test_capital[" in line
    ]
    if "-n" not in dist:  # in collection order: smallest first, 4-bit before 8-bit at 3B
        assert ids == ["test_capital[tiny]", "test_capital[small]", "test_capital[big]"]
    result.stdout.fnmatch_lines(["test *tiny *small *big *smallest passing"])


def test_the_json_report_has_the_ladder_and_the_flags(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    import json

    pytester.makepyfile(test_suite=SUITE)
    report = pytester.path / "report.json"
    result = run(pytester, fake, "-n", "2", f"--llm-report={report}")
    assert result.ret == pytest.ExitCode.OK
    doc = json.loads(report.read_text())
    ladder = doc["ladder"]
    assert ladder["models"] == ["tiny", "small", "big"]
    assert ladder["smallest_sufficient"] == "big"
    assert ladder["needs_largest"] == ["test_suite.py::test_flagged", "test_suite.py::test_river"]
    capital = ladder["tests"]["test_suite.py::test_capital"]
    assert capital["smallest_passing"] == "small"
    assert [r["outcome"] for r in capital["rungs"]] == ["failed", "passed", "passed"]
    assert capital["rungs"][0]["reason"].startswith("AssertionError: assert 'Paris' in 'London'")
    assert ladder["verdict"].startswith("tiny passes 0/3; small passes 2/4; big passes 4/4")
    tests = {t["nodeid"]: t for t in doc["tests"]}
    flagged = tests["test_suite.py::test_flagged[tiny]"]
    assert flagged["outcome"] == "flagged" and flagged["flag"].startswith("ScoreTooLow:")
    assert tests["test_suite.py::test_capital[tiny]"]["rung_failed"] is True
    totals = doc["totals"]
    assert (totals["flagged"], totals["rung_failed"], totals["failed"]) == (2, 3, 3)


@pytest.mark.parametrize("dist", DISTS)
def test_the_capability_gate_fails_a_test_that_moved_up_the_ladder(
    pytester: pytest.Pytester, fake: FakeOllama, dist: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    baseline = pytester.path / "baseline.json"
    run(pytester, fake, "-k", "capital or river", f"--llm-report={baseline}", *dist)
    # a prompt or model change: small no longer knows the capital, tiny now knows the river
    fake.script(
        {"tiny": "Rome on the Tiber", "small": "Lyon, Rome", "big": "Paris, Rome on the Tiber"}
    )
    result = run(pytester, fake, "-k", "capital or river", f"--llm-baseline={baseline}", *dist)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # big still passes both: the gate fails
    result.stdout.fnmatch_lines(
        [
            "*baseline gate FAILED*",
            "*capability*test_suite.py::test_capital*needed small*needs big*"
            "smallest passing model must not move up*",
            "improved on the ladder (1, not gated):",
            "  test_suite.py::test_river: needed big, now needs tiny",
        ]
    )


def test_new_flags_are_listed_and_fail_the_gate_only_when_asked(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    baseline = pytester.path / "baseline.json"
    options = ("--llm-models=big", "-k", "flagged")
    run(pytester, fake, *options, f"--llm-report={baseline}")  # big passes: clean
    fake.script({"big": "Rome"})  # now under min_score: flagged
    listed = run(pytester, fake, *options, f"--llm-baseline={baseline}")
    assert listed.ret == pytest.ExitCode.OK
    listed.stdout.fnmatch_lines(["newly flagged (1, not gated):", "  test_suite.py::test_flagged*"])
    strict = run(pytester, fake, *options, f"--llm-baseline={baseline}", "--llm-fail-on-new-flags")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines(["*now flagged*test_suite.py::test_flagged*flagged: ScoreTooLow*"])


def test_the_html_and_markdown_reports_show_the_ladder(
    pytester: pytest.Pytester, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    html, summary = pytester.path / "r.html", pytester.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = run(pytester, fake, f"--llm-html={html}", "-k", "capital or flagged")
    assert result.ret == pytest.ExitCode.OK
    page = html.read_text()
    assert "<h2>Model ladder</h2>" in page
    assert "tiny passes 0/2; small passes 1/2; big passes 2/2" in page
    assert "<b>small</b>" in page and "none" not in page.split("Model ladder")[1].split("<h2>")[0]
    markdown = summary.read_text()
    assert "### Model ladder" in markdown
    assert "| test_suite.py::test_capital | failed" in markdown
    assert "2 flagged" in markdown.splitlines()[1]  # the title counts the flagged rungs
