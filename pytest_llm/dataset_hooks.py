"""A dataset test under pytest: each case a subtest, ``--llm-cases``, the ``llm datasets`` section.

:meth:`pytest_llm.Harness.evaluate` runs every case first (concurrently), then the ``llm``
fixture reports each case, in case order, as one of pytest's built-in subtests
(``subtests.test(msg=case_id)``): the terminal, JUnit XML and ``pytest_runtest_logreport``
(the run reports, xdist) see one result per case. A case that failed is a failed subtest
when the dataset fails its gate (``min_accuracy``); when the gate passes (or the test flags
instead of failing, ``on_low_quality``) it is an expected failure (``xfail``), so that a
tolerated case does not fail the test. A case's report carries ``llm_case`` (its id,
outcome, reason, output) and shows that case's model calls only.

:class:`DatasetSummary` prints, at the end of the run, one block per dataset test: the
accuracy with its Wilson interval and, for labelled cases, the confusion table with
per-label precision and recall (the ``llm datasets`` section).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pytest

from .properties import DATASETS as PROPERTY
from .transcript import SECTION, transcript

if TYPE_CHECKING:  # the datasets load with the first dataset test, not with the plugin
    from .datasets import Case, CaseResult, DatasetResult

__all__ = ["CASE_KEY", "DatasetSummary", "case_report", "report_cases", "select_cases"]

#: The case being reported while its subtest's report is made.
CASE_KEY: pytest.StashKey[CaseResult] = pytest.StashKey()


class CaseFailed(AssertionError):
    """A case of a dataset that failed its gate (its subtest's failure)."""


def select_cases(config: pytest.Config, cases: list[Case]) -> list[Case]:
    """The cases ``--llm-cases=ID,ID`` selects (all without it); none of them: a skip."""
    raw = config.getoption("llm_cases", None)
    if not raw:
        return cases
    wanted = {part.strip() for part in str(raw).split(",") if part.strip()}
    chosen = [c for c in cases if c.id in wanted]
    if not chosen:
        pytest.skip(f"--llm-cases={raw} selects none of this dataset's {len(cases)} case(s)")
    return chosen


def report_cases(
    request: pytest.FixtureRequest, outcome: DatasetResult, on_low_quality: str
) -> None:
    """Each case of ``outcome`` as its own subtest, in case order (with pytest >= 9, whose
    ``subtests`` fixture is built in; without it the dataset is reported as one test)."""
    try:
        subtests: Any = request.getfixturevalue("subtests")
    except pytest.FixtureLookupError:  # pytest < 9, or -p no:subtests
        return
    tolerated = outcome.passed or on_low_quality != "fail"
    node = request.node
    for c in outcome.cases:
        node.stash[CASE_KEY] = c
        try:
            with subtests.test(msg=c.case.id):
                if not c.passed and tolerated:
                    first = (c.reason or "").splitlines()[0] if c.reason else "failed"
                    pytest.xfail(f"tolerated by the dataset's verdict ({outcome}): {first}")
                if not c.passed:
                    raise CaseFailed(c.describe())
        except CaseFailed:  # -x (maxfail): pytest stops here; the dataset's failure follows
            return
        finally:
            del node.stash[CASE_KEY]


def case_report(item: pytest.Item, report: pytest.TestReport) -> bool:
    """Shape the report of a case's subtest (``True``) or leave any other report (``False``)."""
    case = item.stash.get(CASE_KEY, None)
    if case is None or report.when != "call":
        return False
    report.llm_case = {  # type: ignore[attr-defined]
        "id": case.case.id,
        "passed": case.passed,
        "reason": case.reason,
        "model": case.result.model if case.result is not None else None,
        "output": case.output[:500],
    }
    if report.failed:
        report.longrepr = case.describe()
        if case.result is not None:
            report.sections.append((SECTION, transcript([case.result])))
    return True


class DatasetSummary:
    """Collects each dataset test's summary (``llm_dataset``) and prints ``llm datasets``."""

    def __init__(self) -> None:
        self.datasets: list[tuple[str, dict[str, Any]]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "teardown":
            return
        for name, value in report.user_properties:
            if name == PROPERTY:
                self.datasets += [(report.nodeid, d) for d in json.loads(str(value))]

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.datasets:
            return
        terminalreporter.write_sep("=", "llm datasets")
        for nodeid, summary in self.datasets:
            for line in dataset_lines(nodeid, summary):
                terminalreporter.write_line(line)


def dataset_lines(nodeid: str, summary: Mapping[str, Any]) -> list[str]:
    """One dataset's block: its verdict, its failed cases' ids, its confusion table."""
    from .datasets import confusion_lines, describe

    verdict = "passed" if summary["passed"] else "FAILED"
    lines = [f"{nodeid}: {verdict}: {describe(summary)}"]
    failed = [c["id"] for c in summary.get("failed_cases", [])]
    if failed:
        more = f" and {len(failed) - 20} more" if len(failed) > 20 else ""
        shown = ", ".join(failed[:20]) + more
        lines.append(f"  failed cases: {shown}")
    lines += ["  " + line for line in confusion_lines(summary)]
    return lines
