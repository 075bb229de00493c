"""The baseline gate: this run against an earlier JSON report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_llm.baseline import Limits, compare
from pytest_llm.testing import FakeOllama, RecordedRequest

BASE_SUITE = """
def score(result):
    return float(result.content)

def test_a(llm):
    assert llm.chat("a", scorer=score).score >= 0.5

def test_b(llm):
    llm.chat("b", scorer=score)

def test_gone(llm):
    llm.chat("a")
"""

NEW_SUITE = BASE_SUITE.replace("def test_gone", "def test_new")


class Answers:
    """FakeOllama answers the prompt's letter with a score the test sets between runs."""

    def __init__(self) -> None:
        self.scores = {"a": "0.9", "b": "0.9"}

    def __call__(self, request: RecordedRequest) -> str:
        return self.scores[request.messages[-1]["content"]]


@pytest.fixture
def answers() -> Answers:
    return Answers()


@pytest.fixture
def fake(answers: Answers) -> Iterator[FakeOllama]:
    # 100 ms per answer keeps p50 latency steady enough for the default factor of 2
    with FakeOllama(answers, first_token_delay=0.1) as server:
        yield server


def run(pytester: pytest.Pytester, fake: FakeOllama, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(f"--llm-host={fake.url}", "-p", "no:cacheprovider", *args)


def make_baseline(pytester: pytest.Pytester, fake: FakeOllama) -> Path:
    test_file = pytester.makepyfile(BASE_SUITE)
    baseline = pytester.path / "baseline.json"
    run(pytester, fake, f"--llm-report={baseline}").assert_outcomes(passed=3)
    test_file.write_text(NEW_SUITE)
    return baseline


def test_a_failing_test_and_a_score_drop_fail_the_session(
    pytester: pytest.Pytester, fake: FakeOllama, answers: Answers
) -> None:
    baseline = make_baseline(pytester, fake)
    answers.scores = {"a": "0.1", "b": "0.7"}
    result = run(pytester, fake, "-n", "4", f"--llm-baseline={baseline}")
    result.assert_outcomes(passed=2, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    module = "test_a_failing_test_and_a_score_drop_fail_the_session.py"
    result.stdout.fnmatch_lines(
        [
            f"baseline gate FAILED with 3 regression(s) (baseline {baseline}; max score drop 0.1,"
            " max latency factor x2)",
            "  regression   test or model * baseline  now * allowed",
            f"  now failing  {module}::test_a  passed    failed        must pass",
            f"  score drop   {module}::test_a  0.90      0.10 (-0.80)  drop <= 0.1",
            f"  score drop   {module}::test_b  0.90      0.70 (-0.20)  drop <= 0.1",
            "new tests (1, not gated):",
            f"  {module}::test_new",
            "removed tests (1, not gated):",
            f"  {module}::test_gone",
        ]
    )


def test_a_score_drop_alone_fails_the_gate_and_a_loose_limit_passes_it(
    pytester: pytest.Pytester, fake: FakeOllama, answers: Answers
) -> None:
    baseline = make_baseline(pytester, fake)
    answers.scores = {"a": "0.9", "b": "0.7"}
    result = run(pytester, fake, "-n", "4", f"--llm-baseline={baseline}")
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # every test passed: the gate failed it
    result.stdout.fnmatch_lines(
        ["baseline gate FAILED with 1 regression(s)*", "  score drop *test_b*"]
    )

    pytester.makeini("[pytest]\nllm_max_score_drop = 0.25\n")
    result = run(pytester, fake, "-n", "4", f"--llm-baseline={baseline}")
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["baseline gate passed (baseline *; max score drop 0.25, *)"])


def test_latency_growth_beyond_the_factor_fails_the_gate(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    baseline = make_baseline(pytester, fake)
    doc = json.loads(baseline.read_text())
    doc["models"]["llama3.2"]["p50_server_ms"] = 10.0  # as if main answered ten times faster
    baseline.write_text(json.dumps(doc))
    result = run(pytester, fake, f"--llm-baseline={baseline}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["  latency * llama3.2 p50 server time * 10 ms * ms (x*) * x2 and +50 ms"]
    )
    result = run(pytester, fake, f"--llm-baseline={baseline}", "--llm-max-latency-factor=100")
    assert result.ret == pytest.ExitCode.OK


def test_the_html_report_shows_the_baseline(
    pytester: pytest.Pytester, fake: FakeOllama, answers: Answers
) -> None:
    baseline = make_baseline(pytester, fake)
    answers.scores = {"a": "0.1", "b": "0.9"}
    html = pytester.path / "r.html"
    run(pytester, fake, f"--llm-baseline={baseline}", f"--llm-html={html}")
    page = html.read_text()
    assert "baseline gate FAILED with 2 regression(s)" in page
    assert "grey: baseline, colour: this run" in page and "llama3.2, baseline: 100%" in page
    assert "llama3.2, this run: 67%" in page  # 2 of 3 tests passed


def test_a_bad_baseline_is_a_usage_error(pytester: pytest.Pytester) -> None:
    missing = pytester.path / "nope.json"
    result = pytester.runpytest(f"--llm-baseline={missing}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*--llm-baseline='{missing}': no such file; write one with --llm-report PATH*"]
    )


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        ({"models": None}, "'models' must be an object of per-model figures, got None"),
        (
            {"tests": [{"nodeid": "t.py::test_a", "outcome": "passed", "score": "high"}]},
            "t.py::test_a: 'score' must be a number or null, got 'high'",
        ),
    ],
)
def test_a_damaged_baseline_is_a_usage_error_before_any_test_runs(
    pytester: pytest.Pytester, damage: dict[str, Any], problem: str
) -> None:
    from pytest_llm.report import SCHEMA

    pytester.makepyfile(t="def test_a():\n    pass\n")
    baseline = pytester.path / "damaged.json"
    baseline.write_text(json.dumps({"schema": SCHEMA, "tests": [], "models": {}, **damage}))
    result = pytester.runpytest(f"--llm-baseline={baseline}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--llm-baseline='{baseline}' is damaged: {problem}; write *"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stdout.no_fnmatch_line("*passed*")


# --- compare() -----------------------------------------------------------------------------


def doc(*tests: dict[str, Any], p50: float | None = 100.0) -> dict[str, Any]:
    return {"tests": list(tests), "models": {"m": {"p50_ms": p50}}}


def rec(nodeid: str, outcome: str = "passed", score: float | None = None) -> dict[str, Any]:
    return {"nodeid": nodeid, "outcome": outcome, "score": score}


def test_compare_lists_regressions_new_and_removed() -> None:
    before = doc(rec("a"), rec("b", score=0.8), rec("c"), rec("d", "failed"), rec("gone"))
    now = doc(
        rec("a", "error"),
        rec("b", score=0.7),  # a drop of exactly the limit is allowed
        rec("c", "skipped"),  # not a regression
        rec("d", "failed"),  # failed before too
        rec("new", "failed"),
        p50=250.0,
    )
    comparison = compare(before, now, Limits(max_score_drop=0.1, max_latency_factor=2.0))
    assert [(r.kind, r.subject, r.now) for r in comparison.regressions] == [
        ("now failing", "a", "error"),
        ("latency", "m p50 whole call", "250 ms (x2.5)"),
    ]
    assert comparison.new == ("new",) and comparison.removed == ("gone",)
    assert comparison.failed
    assert not compare(before, before).failed


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match=r"max_score_drop=1\.5: expected a number in \[0, 1\]"):
        Limits(max_score_drop=1.5)
    with pytest.raises(ValueError, match=r"max_latency_factor=0\.9: expected a number >= 1"):
        Limits(max_latency_factor=0.9)


# --- the gate covers what tests measure -------------------------------------------------------


def record(nodeid: str, **fields: Any) -> dict[str, Any]:
    return {"nodeid": nodeid, "outcome": "passed", "score": None, **fields}


def document(tests: list[dict[str, Any]], **parts: Any) -> dict[str, Any]:
    return {"tests": tests, "models": {}, "run": {}, **parts}


def sampled(passes: int, runs: int) -> dict[str, Any]:
    return {"samples": [{"passes": passes, "runs": runs}]}


def test_a_pass_rate_drop_counts_only_when_the_intervals_part() -> None:
    before = document([record("t", **sampled(20, 20))])
    noise = compare(before, document([record("t", **sampled(17, 20))]))  # 100% -> 85%
    assert not noise.failed  # 85% (95% CI 64%-95%) overlaps 100% (84%-100%)
    drop = compare(before, document([record("t", **sampled(10, 20))]))  # 100% -> 50%
    [regression] = drop.regressions
    assert (regression.kind, regression.subject) == ("pass rate drop", "t")
    assert regression.before == "100% (95% CI 84%-100%)"
    assert regression.now == "50% (95% CI 30%-70%)"


def test_verbosity_is_gated_only_with_a_token_factor() -> None:
    before = document([], models={"m": {"calls": 10, "tokens_out": 200}})
    now = document([], models={"m": {"calls": 10, "tokens_out": 500}})
    assert not compare(before, now).failed
    [regression] = compare(before, now, Limits(max_token_factor=2)).regressions
    assert (regression.kind, regression.before, regression.now) == ("verbosity", "20", "50 (x2.5)")
    with pytest.raises(ValueError, match=r"max_token_factor=0\.5"):
        Limits(max_token_factor=0.5)


def test_tests_a_partial_run_did_not_select_are_not_run_not_removed() -> None:
    before = document([record("a"), record("b")])
    whole = compare(before, document([record("a")]))
    assert whole.removed == ("b",) and whole.not_run == ()
    partial = compare(before, document([record("a")], run={"filtered": True}))
    assert partial.removed == () and partial.not_run == ("b",)
    assert ("not run in this run", ("b",)) in partial.listed()


def test_runs_that_are_not_comparable_are_said_so() -> None:
    before = document([], run={"workers": [], "hosts": ["http://a:1"], "dist": None})
    now = document([], run={"workers": [{}, {}, {}, {}], "hosts": ["http://a:1"], "dist": "load"})
    comparison = compare(before, now)
    assert not comparison.failed
    assert comparison.warnings == (
        "the baseline ran on 1 process(es), this run on 4: latency under more parallel load "
        "is not the same figure",
        "--dist no then, load now",
    )


def test_a_nan_in_the_baseline_is_damage_and_a_missing_one_can_be_optional(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(BASE_SUITE)
    damaged = pytester.path / "damaged.json"
    doc = {"schema": "pytest-llm-report/1", "tests": [], "models": {"m": {"p50_ms": "NaN"}}}
    damaged.write_text(json.dumps(doc).replace('"NaN"', "NaN"))
    result = run(pytester, fake, f"--llm-baseline={damaged}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*is damaged: model m: 'p50_ms' must be a number or null, got nan*"]
    )
    missing = pytester.path / "missing.json"
    strict = run(pytester, fake, f"--llm-baseline={missing}")
    assert strict.ret == pytest.ExitCode.USAGE_ERROR
    optional = run(pytester, fake, f"--llm-baseline={missing}", "--llm-baseline-optional")
    assert optional.ret == pytest.ExitCode.OK
    optional.stdout.fnmatch_lines(
        ["baseline gate: no baseline at *missing.json (--llm-baseline-optional): compared nothing"]
    )
