"""Per-test records: one :class:`TestRecord` per test while its reports arrive (setup, call,
teardown), merged with the ``user_properties`` the ``llm`` fixture attached, and what a
record keeps of a failure (:func:`failure_info`) or an infrastructure error
(:func:`error_info`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from .. import properties
from ..config import public_host
from ..transcript import SECTION as TRANSCRIPT_SECTION
from .document import (
    OUTCOMES,
    Call,
    Dataset,
    ErrorInfo,
    Failure,
    HostFailure,
    Outcome,
    ReportedTest,
    Sample,
    ScoreEntry,
)
from .figures import (
    _model_ms,
    _reasks,
    _route,
    _sum_known,
    _tokens_in,
    _tokens_out,
    is_judge,
    percentile,
    scored,
)

__all__ = [
    "REPORTED",
    "SCORES_PROPERTY",
    "TestRecord",
    "error_info",
    "failure_info",
    "split_group",
]

SCORES_PROPERTY = properties.SCORES
"""Kept for imports from ``pytest_llm.report``: the name lives in :mod:`pytest_llm.properties`."""

#: Where each ``user_properties`` entry goes in a record.
_PARTS = {
    properties.CALLS: "calls",
    properties.SAMPLES: "samples",
    properties.DATASETS: "datasets",
    properties.SCORES: "scores",
}
#: The ``user_properties`` entries a record takes in (a test's observer writes them).
REPORTED = frozenset(_PARTS)


@dataclass
class TestRecord:
    """One test while its reports arrive (setup, call, teardown)."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    nodeid: str
    group: str | None = None
    outcome: str | None = None
    duration_s: float = 0.0
    worker: str | None = None
    host: str | None = None
    error: ErrorInfo | None = None
    calls: list[Call] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    datasets: list[Dataset] = field(default_factory=list)
    scores: list[ScoreEntry] = field(default_factory=list)
    reruns: int = 0
    failure: Failure | None = None
    rerun_failures: list[Failure] = field(default_factory=list)
    flag: str | None = None
    """Why the test is flagged (``on_low_quality="flag"``): its outcome is then ``flagged``."""
    rung_failed: bool = False
    """A failing rung of the model ladder (``pytest_llm.ladder``), forgiven if another passed."""
    moved_from: list[HostFailure] = field(default_factory=list)
    """The hosts of the pool that failed the test's calls (which then moved), once each."""
    configured_model: str | None = None
    """The model the test was set to ask (its ``llm`` settings), for a test with no answer."""
    rerun_pending: bool = False
    """This run of the test will be run again (pytest-rerunfailures): its end is not the
    test's (not in the report)."""

    def update(self, report: pytest.TestReport) -> None:
        """Fold in one phase's report. Under pytest-rerunfailures every run's reports arrive
        (a failed phase that is run again has outcome ``rerun``); each run's teardown
        carries that run's calls only, so they add up to what the server answered."""
        self.reruns = max(self.reruns, int(getattr(report, "rerun", 0) or 0))
        rerun = str(report.outcome) == "rerun"  # pytest-rerunfailures' own outcome
        if rerun or report.when == "setup":
            self.rerun_pending = rerun  # a run starts with its setup
        if rerun:
            self.rerun_failures.append(failure_info(report))
            self.failure = None
            if report.when != "teardown":
                return
        elif report.failed and self.failure is None:
            self.failure = failure_info(report)
        self.worker = getattr(report, "worker_id", None) or self.worker
        self.group = getattr(report, "llm_group", None) or self.group
        self.configured_model = getattr(report, "llm_model", None) or self.configured_model
        served = getattr(report, "llm_host", None)
        self.host = public_host(served) if served else self.host
        for move in getattr(report, "llm_moved", None) or ():  # a host pool's failovers
            failed = public_host(move["host"])
            if all(m["host"] != failed for m in self.moved_from):
                self.moved_from.append(
                    {
                        "host": failed,
                        "reason": move["reason"],
                        "message": move["message"],
                        "down": bool(move["down"]),
                    }
                )
        error = getattr(report, "llm_error", None)
        if error is not None:
            host = error["host"]
            self.error = {
                "type": error["type"],
                "host": public_host(host) if host else None,
                "message": error["message"],
            }
        xfail = hasattr(report, "wasxfail")
        if report.when not in ("setup", "teardown"):  # the call, or "???" for a crashed worker
            self.duration_s = report.duration
            if report.skipped:
                self.outcome = "xfailed" if xfail else "skipped"
            elif report.failed:
                self.outcome = "error" if error is not None else "failed"
            else:
                self.outcome = "xpassed" if xfail else "passed"
            self.flag = getattr(report, "llm_flagged", None) or self.flag
            if self.flag is not None and self.outcome == "passed":
                self.outcome = "flagged"
            self.rung_failed = bool(getattr(report, "llm_rung_failed", False))
        elif report.when == "setup" and not report.passed:
            self.outcome = "error" if report.failed else ("xfailed" if xfail else "skipped")
        elif report.when == "teardown":
            if report.failed and not rerun and self.outcome not in ("failed", "error"):
                self.outcome = "error"
            for name, value in report.user_properties:
                part = _PARTS.get(name)
                if part is not None:
                    getattr(self, part).extend(json.loads(str(value)))

    def as_json(self) -> ReportedTest:
        """The test's entry of the report (``tests[]``)."""
        calls = self.calls
        asked = [c for c in calls if not is_judge(c)]
        ttfts = [float(t) for c in calls if (t := c.get("ttft_ms")) is not None]
        scores = [value for _, value in scored(self.scores, calls)]  # accepted answers only
        runs = sum(s["runs"] for s in self.samples)
        return {
            "nodeid": self.nodeid,
            "group": self.group,
            "outcome": _outcome(self.outcome),
            "duration_s": round(self.duration_s, 4),
            "worker": self.worker,
            "host": self.host,
            "error": self.error,
            "moved_from": self.moved_from,
            "failure": self.failure,
            "reruns": self.reruns,
            "rerun_failures": self.rerun_failures,
            "flag": self.flag,
            "rung_failed": self.rung_failed,
            "model": asked[0]["model"] if asked else self.configured_model,
            "route": list(dict.fromkeys(m for c in asked for m in _route(c))),
            "judges": list(dict.fromkeys(c["model"] for c in calls if is_judge(c))),
            "calls": len(calls),
            "attempts": sum(c.get("attempts", 1) for c in calls),
            "retries": sum(c.get("retries", 0) for c in calls),
            "reasks": _reasks(calls),
            "tokens_in": _sum_known(_tokens_in(c) for c in calls),
            "tokens_out": sum(_tokens_out(c) for c in calls),
            "model_ms": round(sum(_model_ms(c) for c in calls), 3),
            "latency_ms": percentile([c["duration_ms"] for c in calls], 50),
            "ttft_ms": percentile(ttfts, 50),
            "score": round(sum(scores) / len(scores), 4) if scores else None,
            "pass_rate": round(sum(s["passes"] for s in self.samples) / runs, 4) if runs else None,
            "cached": bool(calls) and all(c.get("cached") for c in calls),
            "llm": calls,
            "samples": self.samples,
            "datasets": self.datasets,
            "scores": self.scores,
        }


def _outcome(found: str | None) -> Outcome:
    """The one-word outcome; no call report (the run stopped in the middle) is an error."""
    return next((o for o in OUTCOMES if o == found), "error")


#: How much of a failure message a record keeps (the transcript's own cuts apply first).
_FAILURE_CHARS = 4000


def failure_info(report: pytest.TestReport) -> Failure:
    """Why a phase failed: ``{"when", "message", "transcript"}``, each bounded. ``message``
    is the exception as pytest shows it (a quality failure's holds the prompt and every
    attempt), ``transcript`` the test's model calls (the ``llm calls`` section) or null."""
    crash = getattr(report.longrepr, "reprcrash", None)
    message = crash.message if crash is not None else report.longreprtext
    calls = next((text for title, text in report.sections if title == TRANSCRIPT_SECTION), None)
    return {
        "when": report.when,
        "message": _bounded(message, _FAILURE_CHARS),
        "transcript": None if calls is None else _bounded(calls, _FAILURE_CHARS),
    }


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def error_info(exc: BaseException) -> ErrorInfo:
    """What a report carries about an infrastructure error (it travels to the controller)."""
    host = getattr(exc, "host", None)
    return {"type": type(exc).__name__, "host": host, "message": str(exc)[:500]}


def split_group(nodeid: str) -> tuple[str, str | None]:
    """``test_a.py::test_x[p]@db`` → ``("test_a.py::test_x[p]", "db")`` (xdist's loadgroup).

    Only a trailing ``@name`` after the last ``]`` and ``::`` is a group, as xdist reads it.
    """
    base, at, group = nodeid.rpartition("@")
    if at and group and "]" not in group and "::" not in group and "/" not in group:
        return base, group
    return nodeid, None
