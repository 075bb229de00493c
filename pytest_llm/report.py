"""The run report: per-test records, per-model figures, the terminal summary and the files.

:class:`Recorder` is a plugin object present in every pytest process. It turns the
test reports (``pytest_runtest_logreport``) into one record per test, merging the
call outcome with the ``("llm", json)`` user property of the teardown report. Under
pytest-xdist the records are built on the controller only, from the reports the
workers send; each worker adds what no report carries (its host, the digests of the
models that answered it live) through ``workeroutput`` (see :mod:`pytest_llm.xdist`).
On the controller, or in a run without xdist, it then:

* prints the ``llm summary`` and ``llm sampling`` sections (``pytest_terminal_summary``,
  once);
* writes the JSON report (``--llm-report``) and the HTML report (``--llm-html``,
  :mod:`pytest_llm.report_html`), each atomically (``_files.write_text_atomic``);
* compares with a baseline (``--llm-baseline``, :mod:`pytest_llm.baseline`) and
  fails the session when the gate fails;
* appends a Markdown summary to ``$GITHUB_STEP_SUMMARY`` when it is set.

JSON report schema (``"schema": "pytest-llm-report/1"``)
--------------------------------------------------------

Times are milliseconds (``*_ms``) or seconds (``*_s``); a figure that could not be
measured is ``null``. Hosts never carry credentials (``user:password@`` is removed)::

    {
      "schema": "pytest-llm-report/1",
      "created": "2026-01-31T12:00:00Z",     # UTC, when the session ended
      "run": {
        "wall_s": 9.81,                      # session wall time, xdist start-up included
        "model": "llama3.2",                 # base settings, before markers
        "backend": "ollama",
        "seed": 42,
        "hosts": ["http://gpu1:11434", "http://gpu2:11434"],  # the host pool
        "hosts_down": {                      # hosts that refused connections
          "http://gpu2:11434": {"tests": 16, "workers": ["gw1", "gw3"], "message": "..."}
        },
        "workers": [                         # one per xdist worker that did not crash;
                                             # [] without xdist
          {"id": "gw0", "host": "http://gpu1:11434", "tests": 8, "llm_tests": 8,
           "calls": 8, "model_ms": 2011.4}
        ],
        "digests": {"llama3.2": {"http://gpu1:11434": "a80c4f17..."}},  # when the server
                                             # tells, of models that answered live
        "dist": "load",                      # xdist --dist mode, null without xdist
        "versions": {"python": "3.11.9", "pytest": "9.0.0", "pytest-llm": "0.1.0",
                     "pytest-xdist": "3.8.0", "ollama": "0.6.3", "httpx": "0.28.1"}
      },
      "totals": {
        "tests": 33, "llm_tests": 32,        # every test; those that called a model
        "passed": 31, "failed": 1, "errors": 1, "skipped": 0, "xfailed": 0, "xpassed": 0,
        "reruns": 0,                         # runs repeated by pytest-rerunfailures
        "calls": 32,                         # chat calls (one LLMResult each)
        "requests": 33,                      # backend requests: every attempt of every call
        "tokens_in": 330, "tokens_out": 660, # over every attempt; tokens_in null when a
                                             # server reported no usage (llama.cpp streaming)
        "retries": 1, "escalations": 0, "cached": 0,
        "reasks": 1,                         # re-asks behind accepted answers (see tests)
        "model_ms": 8021.3,                  # client time over every call and attempt (a
                                             # wait for a free server slot included)
        "server_ms": 7990.2,                 # the server's own time (prompt eval, generation,
                                             # load) of the live answers; null when it tells
                                             # none (OpenAI-compatible servers)
        "queue_ms": 0.0,                     # time the live requests waited for a slot there
        "parallelism": 3.26                  # server_ms / wall time: never more than the
                                             # server's slots did; null when every call was
                                             # replayed or the server tells no durations
      },
      "models": {                            # every attempt is charged to the model that made it
        "llama3.2": {
          "tests": 32, "passed": 31, "pass_rate": 0.969,  # tests whose route used the model
          "calls": 33,                       # requests to the model (every attempt)
          "mean_score": 0.91,                # mean of the scores of its accepted answers
          "p50_ms": 251.2, "p95_ms": 262.0, "p50_ttft_ms": 250.3,  # per answer, client side
          "p50_server_ms": 240.1,            # the server's prompt eval + generation (Ollama)
          "p50_queue_ms": 0.0,               # waiting for a slot at the server (Ollama)
          "p50_decode_ms": 1.2,              # first token to last, measured on the client
          "tokens_in": 330, "tokens_out": 660,  # tokens_in null: the server told no usage
          "retries": 1,                      # its answers after its first one in a call
          "escalations": 0,                  # calls that moved on from it to the next model
          "cached": 0                        # requests replayed from a cassette
        }
      },
      "tests": [                             # every test exactly once, in the order
                                             # their first report (setup) arrived
        {
          "nodeid": "tests/test_city.py::test_city",   # without xdist's "@group" suffix
          "group": null,                     # the xdist_group under --dist loadgroup
          "outcome": "passed",               # passed failed error skipped xfailed xpassed
                                             # flagged (on_low_quality="flag": see "flag")
          "duration_s": 0.254,               # the test's call phase
          "worker": "gw0", "host": "http://gpu1:11434",
          "error": null,                     # or {"type": "BackendUnreachable", "host", "message"}
          "failure": null,                   # why it failed or errored: {"when": "call",
                                             # "message": the exception as pytest shows it,
                                             # "transcript": its model calls (the "llm calls"
                                             # section) or null}; bounded to 4000 chars each
          "reruns": 0,                       # runs repeated by pytest-rerunfailures; each
                                             # run's calls count once
          "rerun_failures": [],              # the failure of each repeated run, as "failure"
          "model": "llama3.2",               # the model that answered the first call
          "route": ["llama3.2"],             # every model tried, in order
          "calls": 1, "attempts": 1, "retries": 0,
          "reasks": 0,                       # answers asked for again after a rejection (invalid,
                                             # check, low score), over the accepted calls: a
                                             # passed test with reasks > 0 is shown as
                                             # "passed after N re-asks"
          "tokens_in": 10, "tokens_out": 20, # over every attempt (tokens_in null: unknown)
          "model_ms": 251.2,
          "latency_ms": 251.2, "ttft_ms": 250.3,       # medians over the test's calls
          "score": 0.91,                     # mean of the scores of its accepted answers
                                             # (llm.score and assert_score included)
          "scores": [{"scorer": "contains", "value": 0.91, "model": "llama3.2",
                      "reason": "...", "threshold": 0.8, "passed": true,
                      "attempt": "accepted"}],  # every score computed; "attempt" is
                                             # "accepted" or "rejected" for a chat(scorer=)
                                             # answer, null for llm.score / assert_score
          "pass_rate": null,                 # passes / runs over the test's llm.sample() calls
          "cached": false,                   # every call was replayed
          "llm": [{"model": "llama3.2", "route": ["llama3.2"], "success": true, ...}],
          "samples": []                      # one summary per llm.sample() call
          "datasets": []                     # one summary per llm.evaluate() call: cases,
                                             # passes, accuracy, interval, min_accuracy,
                                             # passed, failed_cases, results (one per case:
                                             # id, passed, reason, model, expected,
                                             # predicted, score, output); with labels also
                                             # labels, confusion, per_label (precision,
                                             # recall, support)
        }
      ]
    }

``llm`` holds the per-call records exactly as the ``llm`` user property carries
them (``LLMResult.summary()``: the accepted answer's figures, ``total_tokens_in`` and
``total_tokens_out`` over every attempt, ``answer``, the answer's first 500 characters
(the baseline gate shows it beside the new one), and ``tries``, one entry of figures per
attempt: model, rejected, tokens, duration_ms, ttft_ms, server_ms, queue_ms, load_ms,
score, cached), ``samples`` the ``llm_samples`` property
(``SampleResult.summary()``: n, runs, passes, rate, 95% interval, verdict). A test
outcome is one word even when pytest counts two (a failed test whose teardown also
errors is ``failed``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ._files import write_text_atomic
from .backends import BackendPool
from .baseline import DEFAULT_LIMITS, Comparison, Limits, compare
from .config import HarnessConfig, ini_path, public_host
from .datasets import PROPERTY as DATASET_PROPERTY
from .errors import BackendUnreachable, ConfigError, LLMError
from .ladder import grid
from .sampling import PROPERTY as SAMPLES_PROPERTY
from .sampling import describe
from .transcript import SECTION as TRANSCRIPT_SECTION

if TYPE_CHECKING:
    from .ladder import LadderSession

__all__ = [
    "SCHEMA",
    "Recorder",
    "ReportOptions",
    "build_report",
    "error_info",
    "load_report",
    "markdown_code",
    "markdown_summary",
    "markdown_text",
    "reask_lines",
    "reask_mark",
    "sampling_lines",
    "summary_lines",
]

SCHEMA = "pytest-llm-report/1"
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "flagged")
_DOWN = BackendUnreachable.__name__
#: The ``user_properties`` entry with every ``Score`` computed in a test (plugin's ``llm``).
SCORES_PROPERTY = "llm_scores"
_VERSIONED = ("pytest", "pytest-llm", "pytest-xdist", "ollama", "httpx")


# --- options --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ReportOptions:
    """What the user asked for: ``--llm-report``, ``--llm-html``, ``--llm-baseline`` …"""

    report: Path | None = None
    html: Path | None = None
    baseline: Path | None = None
    limits: Limits = DEFAULT_LIMITS
    step_summary: Path | None = None
    baseline_optional: bool = False
    """``--llm-baseline-optional``: a missing baseline file compares nothing, not an error."""
    filtered: bool = False
    """The run selects part of the suite (``-k``, ``-m``, ``::``, ``--lf``): tests of the
    baseline it did not select are "not run", not removed."""

    @classmethod
    def from_config(cls, config: pytest.Config) -> ReportOptions:
        """Read the options (a path relative to the invocation directory) and the ini values
        (a path relative to the ini file: pytest's ``type="paths"``); a bad value raises
        ``ConfigError`` naming the option."""

        def path(name: str) -> Path | None:
            option = config.getoption(name)
            if option is not None:
                found = config.invocation_params.dir / Path(option).expanduser()
                source = f"--{name.replace('_', '-')}={option!r}"
            else:
                ini = ini_path(config, name)
                if ini is None:
                    return None
                found, source = ini, f"ini {name}={str(ini)!r}"
            if found.is_dir():
                raise ConfigError(f"{source} is a directory: give a file path")
            return found

        def number(name: str, default: float) -> float:
            value, source = config.getoption(name), f"--{name.replace('_', '-')}"
            if value is None:
                value, source = config.getini(name), f"ini {name}"
            if value in (None, ""):
                return default
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{source}={value!r} is not a number") from None

        def optional_number(name: str) -> float | None:
            return None if config.getoption(name) is None else number(name, 0.0)

        try:
            limits = Limits(
                max_score_drop=number("llm_max_score_drop", DEFAULT_LIMITS.max_score_drop),
                max_latency_factor=number(
                    "llm_max_latency_factor", DEFAULT_LIMITS.max_latency_factor
                ),
                latency_floor_ms=number("llm_latency_floor_ms", DEFAULT_LIMITS.latency_floor_ms),
                fail_on_new_flags=bool(config.getoption("llm_fail_on_new_flags", False)),
                max_token_factor=optional_number("llm_max_token_factor"),
            )
        except ValueError as exc:
            raise ConfigError(f"llm baseline limit {exc}") from None
        summary = os.environ.get("GITHUB_STEP_SUMMARY", "").strip()
        return cls(
            report=path("llm_report"),
            html=path("llm_html"),
            baseline=path("llm_baseline"),
            limits=limits,
            step_summary=Path(summary) if summary else None,
            baseline_optional=bool(config.getoption("llm_baseline_optional", False)),
            filtered=selects_part(config),
        )


# --- per-test records -----------------------------------------------------------------------


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
    error: dict[str, Any] | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    datasets: list[dict[str, Any]] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    reruns: int = 0
    failure: dict[str, Any] | None = None
    rerun_failures: list[dict[str, Any]] = field(default_factory=list)
    flag: str | None = None
    """Why the test is flagged (``on_low_quality="flag"``): its outcome is then ``flagged``."""
    rung_failed: bool = False
    """A failing rung of the model ladder (``pytest_llm.ladder``), forgiven if another passed."""

    def update(self, report: pytest.TestReport) -> None:
        """Fold in one phase's report. Under pytest-rerunfailures every run's reports arrive
        (a failed phase that is run again has outcome ``rerun``); each run's teardown
        carries that run's calls only, so they add up to what the server answered."""
        self.reruns = max(self.reruns, int(getattr(report, "rerun", 0) or 0))
        rerun = str(report.outcome) == "rerun"  # pytest-rerunfailures' own outcome
        if rerun:
            self.rerun_failures.append(failure_info(report))
            self.failure = None
            if report.when != "teardown":
                return
        elif report.failed and self.failure is None:
            self.failure = failure_info(report)
        self.worker = getattr(report, "worker_id", None) or self.worker
        host = getattr(report, "llm_host", None)
        self.host = public_host(host) if host else self.host
        error = getattr(report, "llm_error", None)
        if error is not None:
            self.error = {**error, "host": public_host(error["host"]) if error["host"] else None}
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
                if name == "llm":
                    self.calls.extend(json.loads(str(value)))
                elif name == SAMPLES_PROPERTY:
                    self.samples.extend(json.loads(str(value)))
                elif name == DATASET_PROPERTY:
                    self.datasets.extend(json.loads(str(value)))
                elif name == SCORES_PROPERTY:
                    self.scores.extend(json.loads(str(value)))

    def as_json(self) -> dict[str, Any]:
        calls = self.calls
        ttfts = [c["ttft_ms"] for c in calls if c.get("ttft_ms") is not None]
        scores = [value for _, value in scored(self.scores, calls)]  # accepted answers only
        runs = sum(s["runs"] for s in self.samples)
        return {
            "nodeid": self.nodeid,
            "group": self.group,
            "outcome": self.outcome or "error",  # no call report: the run stopped in the middle
            "duration_s": round(self.duration_s, 4),
            "worker": self.worker,
            "host": self.host,
            "error": self.error,
            "failure": self.failure,
            "reruns": self.reruns,
            "rerun_failures": self.rerun_failures,
            "flag": self.flag,
            "rung_failed": self.rung_failed,
            "model": calls[0]["model"] if calls else None,
            "route": list(dict.fromkeys(m for c in calls for m in _route(c))),
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


#: How much of a failure message a record keeps (the transcript's own cuts apply first).
_FAILURE_CHARS = 4000


def failure_info(report: pytest.TestReport) -> dict[str, Any]:
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


def error_info(exc: BaseException) -> dict[str, Any]:
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


# --- figures --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile with linear interpolation (None when there are no values)."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    low, high = math.floor(k), math.ceil(k)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (k - low), 3)


def scored(
    scores: Sequence[Mapping[str, Any]], calls: Sequence[Mapping[str, Any]]
) -> list[tuple[str, float]]:
    """A test's scores as (model, value): its ``llm_scores`` entries (every score computed:
    ``chat(scorer=)`` answers, ``llm.score``, ``assert_score``) but those of answers a low
    score rejected (they stay in ``scores`` and in each call's ``tries``), else its calls'
    scores."""
    if scores:
        kept = [s for s in scores if s.get("attempt") != "rejected"]
        return [(s.get("model") or "", float(s["value"])) for s in kept]
    return [(c["model"], float(c["score"])) for c in calls if c.get("score") is not None]


def tries(call: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A call's attempts as figures (``tries``); a record without them is one attempt."""
    found = call.get("tries")
    if found:
        return list(found)
    return [{**call, "rejected": None}]


def _tokens_in(call: Mapping[str, Any]) -> int | None:
    """Prompt tokens over every attempt of ``call``; None when the server told none."""
    found = call["total_tokens_in"] if "total_tokens_in" in call else call.get("tokens_in", 0)
    return None if found is None else int(found)


def _tokens_out(call: Mapping[str, Any]) -> int:
    return int(call.get("total_tokens_out", call.get("tokens_out", 0)))


def _sum_known(values: Iterable[int | float | None]) -> Any:
    """The sum, or None when any value is unknown."""
    listed = list(values)
    return None if None in listed else sum(v or 0 for v in listed)


def _route(call: Mapping[str, Any]) -> list[str]:
    return list(call.get("route") or [call["model"]])


def _reasks(calls: Iterable[Mapping[str, Any]]) -> int:
    """Re-asks behind the accepted answers of ``calls`` (a failed call's are in its message)."""
    return sum(c.get("reasks", 0) for c in calls if c.get("success", True))


def _model_ms(call: Mapping[str, Any]) -> float:
    return float(call.get("total_duration_ms", call.get("duration_ms", 0.0)))


def model_figures(tests: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model: see ``models`` in the schema. Every attempt is charged to the model that
    made it: its requests, latency, tokens and retries (answers of that model after its
    first in a call); an escalation to the model that was moved on from."""
    attempts: dict[str, list[Mapping[str, Any]]] = {}
    retries: dict[str, int] = {}
    tested: dict[str, list[str]] = {}
    model_scores: dict[str, list[float]] = {}
    escalations: dict[str, int] = {}
    for test in tests:
        for call in test["llm"]:
            per_model: dict[str, int] = {}
            for attempt in tries(call):
                attempts.setdefault(attempt["model"], []).append(attempt)
                per_model[attempt["model"]] = per_model.get(attempt["model"], 0) + 1
            for model, count in per_model.items():
                retries[model] = retries.get(model, 0) + count - 1
            for model in _route(call)[:-1]:
                escalations[model] = escalations.get(model, 0) + 1
        for model in test["route"]:
            tested.setdefault(model, []).append(test["outcome"])
        for model, value in scored(test.get("scores", []), test["llm"]):
            model_scores.setdefault(model, []).append(value)
    figures: dict[str, dict[str, Any]] = {}
    for model in sorted(tested.keys() | attempts.keys()):
        mine = attempts.get(model, [])
        answered = [a for a in mine if a.get("rejected") != "transport"]
        outcomes = tested.get(model, [])
        scores = model_scores.get(model, [])
        passed = outcomes.count("passed")
        figures[model] = {
            "tests": len(outcomes),
            "passed": passed,
            "pass_rate": round(passed / len(outcomes), 4) if outcomes else None,
            "calls": len(mine),
            "mean_score": round(sum(scores) / len(scores), 4) if scores else None,
            "p50_ms": percentile([a["duration_ms"] for a in answered], 50),
            "p95_ms": percentile([a["duration_ms"] for a in answered], 95),
            "p50_ttft_ms": percentile(_known(answered, "ttft_ms"), 50),
            "p50_server_ms": percentile(_known(answered, "server_ms"), 50),
            "p50_queue_ms": percentile(_known(answered, "queue_ms"), 50),
            "p50_decode_ms": percentile(
                [
                    max(a["duration_ms"] - a["ttft_ms"], 0.0)
                    for a in answered
                    if a.get("ttft_ms") is not None
                ],
                50,
            ),
            "tokens_in": _sum_known(a.get("tokens_in", 0) for a in answered),
            "tokens_out": sum(a.get("tokens_out", 0) for a in answered),
            "retries": retries.get(model, 0),
            "escalations": escalations.get(model, 0),
            "cached": sum(1 for a in mine if a.get("cached")),
        }
    return figures


def _known(attempts: Iterable[Mapping[str, Any]], key: str) -> list[float]:
    return [float(a[key]) for a in attempts if a.get(key) is not None]


def run_totals(tests: Sequence[Mapping[str, Any]], wall_s: float) -> dict[str, Any]:
    """Session totals: see ``totals`` in the schema. ``parallelism`` is the server's busy
    time (its own durations of the live answers) over the wall time: what the wall clock
    shows, never the client's time, which counts the wait for a slot as model time."""
    calls = [c for t in tests for c in t["llm"]]
    attempts = [a for c in calls for a in tries(c)]
    live = [a for a in attempts if not a.get("cached") and a.get("rejected") != "transport"]
    model_ms = sum(_model_ms(c) for c in calls)
    busy = [a.get("server_ms") for a in live]
    server_ms = _sum_known(
        None if ms is None else ms + float(a.get("load_ms") or 0.0)
        for ms, a in zip(busy, live, strict=True)
    )
    queue_ms = _sum_known(a.get("queue_ms") for a in live)
    outcomes = [t["outcome"] for t in tests]
    return {
        "tests": len(tests),
        "llm_tests": sum(1 for t in tests if t["llm"] or t["error"] is not None),
        "passed": outcomes.count("passed"),
        "failed": outcomes.count("failed"),
        "errors": outcomes.count("error"),
        "skipped": outcomes.count("skipped"),
        "xfailed": outcomes.count("xfailed"),
        "xpassed": outcomes.count("xpassed"),
        "flagged": outcomes.count("flagged"),
        "rung_failed": sum(1 for t in tests if t.get("rung_failed")),
        "reruns": sum(t.get("reruns", 0) for t in tests),
        "calls": len(calls),
        "requests": len(attempts),
        "tokens_in": _sum_known(_tokens_in(c) for c in calls),
        "tokens_out": sum(_tokens_out(c) for c in calls),
        "retries": sum(c.get("retries", 0) for c in calls),
        "escalations": sum(1 for c in calls if len(_route(c)) > 1),
        "cached": sum(1 for c in calls if c.get("cached")),
        "reasks": _reasks(calls),
        "model_ms": round(model_ms, 3),
        "server_ms": None if not live or server_ms is None else round(server_ms, 3),
        "queue_ms": None if not live or queue_ms is None else round(queue_ms, 3),
        "parallelism": (
            round(server_ms / 1000 / wall_s, 3) if wall_s > 0 and live and server_ms else None
        ),
    }


def down_host(error: Mapping[str, Any] | None, host: str | None) -> str | None:
    """The host a test's infrastructure ``error`` says refused connections, if it does."""
    if error is None or error["type"] != _DOWN:
        return None
    return str(error["host"] or host or "?")


def hosts_down(tests: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Hosts that refused connections, each once: how many tests it cost, on which workers."""
    down: dict[str, dict[str, Any]] = {}
    for test in tests:
        host = down_host(test["error"], test["host"])
        if host is None:
            continue
        message = test["error"]["message"]
        entry = down.setdefault(host, {"tests": 0, "workers": [], "message": message})
        entry["tests"] += 1
        if test["worker"] and test["worker"] not in entry["workers"]:
            entry["workers"].append(test["worker"])
    for entry in down.values():
        entry["workers"].sort()
    return down


def worker_rows(
    tests: Iterable[Mapping[str, Any]], hosts: Mapping[str, str]
) -> list[dict[str, Any]]:
    """``run.workers``: for each xdist worker that ended its session (``hosts``: the host
    each was given, from its ``workeroutput``), its share of the tests."""
    by_worker: dict[str, list[Mapping[str, Any]]] = {worker: [] for worker in hosts}
    for test in tests:
        if test["worker"] in by_worker:
            by_worker[test["worker"]].append(test)
    rows = []
    for worker in sorted(by_worker, key=_worker_order):
        totals = run_totals(by_worker[worker], wall_s=0.0)
        shares = {key: totals[key] for key in ("tests", "llm_tests", "calls", "model_ms")}
        rows.append({"id": worker, "host": hosts[worker], **shares})
    return rows


def build_report(
    tests: Sequence[Mapping[str, Any]],
    *,
    run: Mapping[str, Any],
    ladder: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The report document from finished test records, the run metadata and the ladder."""
    return {
        "schema": SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "run": dict(run),
        "totals": run_totals(tests, run["wall_s"]),
        "models": model_figures(tests),
        "tests": list(tests),
        "ladder": None if ladder is None else dict(ladder),
    }


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


# --- files ----------------------------------------------------------------------------------


def selects_part(config: pytest.Config) -> bool:
    """Whether the run selects part of the suite (``-k``, ``-m``, ``::``, ``--lf`` …)."""
    option = config.option
    return bool(
        getattr(option, "keyword", "")
        or getattr(option, "markexpr", "")
        or getattr(option, "deselect", None)
        or getattr(option, "lf", False)
        or any("::" in str(arg) for arg in config.args)
    )


def load_report(path: Path, *, source: str = "--llm-baseline") -> dict[str, Any]:
    """Read a JSON report written by ``--llm-report``; a bad file is a ``ConfigError``."""
    fix = "write one with --llm-report PATH (for example on your main branch)"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{source}={str(path)!r}: no such file; {fix}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{source}={str(path)!r} is not a readable JSON report: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise ConfigError(
            f"{source}={str(path)!r} is not a pytest-llm report (schema {found!r}, "
            f"expected {SCHEMA!r}); {fix}"
        )
    problem = _damage(doc)
    if problem is not None:
        raise ConfigError(f"{source}={str(path)!r} is damaged: {problem}; {fix}")
    return doc


def _damage(doc: Mapping[str, Any]) -> str | None:
    """What is wrong with a report document in the fields a baseline is read for, if anything."""
    tests, models = doc.get("tests"), doc.get("models")
    if not isinstance(tests, list) or not all(
        isinstance(t, dict) and "nodeid" in t and "outcome" in t for t in tests
    ):
        return "'tests' must be a list of test records"
    for test in tests:
        for key in ("nodeid", "outcome"):
            if not isinstance(test[key], str):
                return f"a test's {key!r} must be a string, got {test[key]!r}"
        if not _number_or_null(test.get("score")):
            return f"{test['nodeid']}: 'score' must be a number or null, got {test['score']!r}"
    if not isinstance(models, dict) or not all(isinstance(f, dict) for f in models.values()):
        return f"'models' must be an object of per-model figures, got {models!r:.80}"
    for model, figures in models.items():
        for key in ("p50_ms", "p50_server_ms", "p50_decode_ms", "pass_rate"):
            if not _number_or_null(figures.get(key)):
                return f"model {model}: {key!r} must be a number or null, got {figures[key]!r}"
    return None


def _number_or_null(value: Any) -> bool:
    """``None`` or a finite number: a NaN or infinite figure would switch its check off."""
    if value is None:
        return True
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# --- the plugin object ----------------------------------------------------------------------


class Recorder:
    """Collects the test records and, on the controller, summarises and writes.

    An xdist worker keeps no test records (the controller builds them from the same
    reports): it only notes which models answered live on which server, a set that does
    not grow with the number of tests, to ask for their digests at the end.
    """

    def __init__(
        self,
        *,
        options: ReportOptions,
        settings: HarnessConfig,
        hosts: Sequence[str],
        pool: BackendPool,
        worker_id: str | None,
        dist: str | None,
    ) -> None:
        self.options = options
        self.settings = settings
        self.hosts = [public_host(h) for h in hosts]
        self.pool = pool
        self.worker_id = worker_id
        self.dist = dist
        self.baseline: dict[str, Any] | None = None
        #: Why the gate compared nothing although --llm-baseline was given (optional, missing).
        self.no_baseline: str | None = None
        if options.baseline and not worker_id:
            if options.baseline_optional and not options.baseline.exists():
                self.no_baseline = (
                    f"baseline gate: no baseline at {options.baseline} "
                    "(--llm-baseline-optional): compared nothing"
                )
            else:
                self.baseline = load_report(options.baseline)
        self.records: dict[str, TestRecord] = {}
        self.workers: list[dict[str, Any]] = []  # the workers' workeroutput (pytest_llm.xdist)
        self.live_models: dict[str, set[str]] = {}  # host -> models that answered live there
        self.down: set[str] = set()
        self.doc: dict[str, Any] | None = None
        self.comparison: Comparison | None = None
        self.problems: list[str] = []
        #: The model ladder of the run (set by the plugin): the report's ``ladder`` part.
        self.ladder: LadderSession | None = None
        self._started = time.perf_counter()

    # hooks ------------------------------------------------------------------------------

    def pytest_sessionstart(self) -> None:
        self._started = time.perf_counter()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if getattr(report, "llm_case", None) is not None:
            return  # a dataset's case (a subtest): in its test's "datasets" part
        if self.worker_id is not None:  # the controller records the test from this report
            phase = TestRecord(nodeid=report.nodeid)
            phase.update(report)
            self._note_servers(phase)
            return
        nodeid, group = (
            split_group(report.nodeid) if self.dist == "loadgroup" else (report.nodeid, None)
        )
        record = self.records.get(nodeid)
        if record is None:
            record = self.records[nodeid] = TestRecord(nodeid=nodeid, group=group)
        record.update(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.worker_id is not None or session.config.option.collectonly:
            return  # a worker hands its host and digests over in workeroutput (pytest_llm.xdist)
        self.doc = self.finish()
        if self.baseline is not None:
            self.comparison = compare(
                self.baseline, self.doc, self.options.limits, source=str(self.options.baseline)
            )
        self._write_outputs()
        failed = self.problems or (self.comparison is not None and self.comparison.failed)
        if failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        doc = self.doc
        if doc is None:
            return
        if doc["totals"]["llm_tests"] or self.options.baseline:
            terminalreporter.write_sep("=", "llm summary")
            for text, color in summary_lines(doc, self.comparison):
                terminalreporter.write_line(text, **({color: True} if color else {}))
            for problem in self.problems:
                terminalreporter.write_line(problem, red=True, bold=True)
            if self.no_baseline:
                terminalreporter.write_line(self.no_baseline, yellow=True)
        sampled = sampling_lines(doc)
        if sampled:
            terminalreporter.write_sep("=", "llm sampling")
            for line in sampled:
                terminalreporter.write_line(line)

    # used by pytest_llm.xdist -----------------------------------------------------------

    def worker_output(self) -> dict[str, Any]:
        """What only this worker knows (its ``workeroutput``): its host, the model digests."""
        return {
            "id": self.worker_id,
            "host": public_host(self.settings.host),
            "digests": self._digests() if self._wants_files() else {},
        }

    def add_worker(self, output: Mapping[str, Any]) -> None:
        self.workers.append(dict(output))

    # the end ----------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """The report document of the whole run."""
        tests = [r.as_json() for r in self.records.values()]
        digests: dict[str, dict[str, str]] = {}
        if self.workers:
            for worker in self.workers:
                for model, by_host in worker["digests"].items():
                    digests.setdefault(model, {}).update(by_host)
        elif self._wants_files():  # this process ran the tests
            for record in self.records.values():
                self._note_servers(record)
            digests = self._digests()
        run = {
            "wall_s": round(time.perf_counter() - self._started, 3),
            "model": self.settings.model,
            "backend": self.settings.backend,
            "seed": self.settings.seed,
            "hosts": self.hosts,
            "hosts_down": hosts_down(tests),
            "workers": worker_rows(tests, {w["id"]: w["host"] for w in self.workers}),
            "digests": digests,
            "dist": self.dist,
            "filtered": self.options.filtered,
            "versions": versions(),
        }
        ladder = self.ladder.document() if self.ladder is not None and self.ladder.rungs else None
        return build_report(tests, run=run, ladder=ladder)

    def _wants_files(self) -> bool:
        return self.options.report is not None or self.options.html is not None

    def _note_servers(self, record: TestRecord) -> None:
        """Which models answered live on which server; replayed calls asked no server."""
        down = down_host(record.error, record.host)
        if down is not None:
            self.down.add(down)
        if record.host:
            live = {c["model"] for c in record.calls if not c.get("cached")}
            self.live_models.setdefault(record.host, set()).update(live)

    def _digests(self) -> dict[str, dict[str, str]]:
        """Digests of the models that answered live, from the servers this process used
        (hosts that were down skipped)."""
        found: dict[str, dict[str, str]] = {}
        for backend in self.pool.backends():
            host = public_host(backend.host)
            if host in self.down:
                continue
            for model in sorted(self.live_models.get(host, ())):
                try:
                    digest = backend.digest(model)
                except LLMError:
                    break  # the server went away since: no digests from it
                if digest:
                    found.setdefault(model, {})[host] = digest
        return found

    def _write_outputs(self) -> None:
        from .report_html import render_html

        assert self.doc is not None
        outputs: list[tuple[Path | None, str, Any]] = [
            (self.options.report, "--llm-report", lambda: json.dumps(self.doc, indent=1) + "\n"),
            (self.options.html, "--llm-html", lambda: render_html(self.doc, self.comparison)),
        ]
        for path, option, render in outputs:
            if path is None:
                continue
            try:
                write_text_atomic(path, render())
            except OSError as exc:
                self.problems.append(f"pytest-llm: {option}: could not write {path}: {exc}")
        if self.options.step_summary is not None and self.doc["totals"]["llm_tests"]:
            try:
                with self.options.step_summary.open("a", encoding="utf-8") as handle:
                    handle.write(markdown_summary(self.doc, self.comparison))
            except OSError as exc:
                self.problems.append(
                    f"pytest-llm: GITHUB_STEP_SUMMARY: could not append to "
                    f"{self.options.step_summary}: {exc}"
                )


def _worker_order(worker_id: str | None) -> tuple[int, str]:
    """``gw2`` before ``gw10``."""
    text = worker_id or ""
    number = text[2:]
    return (int(number), text) if text.startswith("gw") and number.isdigit() else (-1, text)


# --- rendering: terminal and Markdown --------------------------------------------------------

#: (title, figure in ``models``, how to show it)
_MODEL_COLUMNS = (
    ("tests", "tests", "count"),
    ("passed", "passed", "count"),
    ("score", "mean_score", "score"),
    ("p50 ms", "p50_ms", "ms"),
    ("p95 ms", "p95_ms", "ms"),
    ("ttft p50", "p50_ttft_ms", "ms"),
    ("tokens in", "tokens_in", "tokens"),
    ("tokens out", "tokens_out", "count"),
    ("retries", "retries", "count"),
    ("escalated", "escalations", "count"),
    ("replayed", "cached", "count"),
)


def fmt(value: Any, kind: str = "count") -> str:
    """A figure for people: ``-`` when unknown (``tokens``: ``unknown``, the server told
    none), a ``score`` with 2 decimals, ``ms`` whole."""
    if value is None:
        return "unknown" if kind == "tokens" else "-"
    if kind == "score":
        return f"{value:.2f}"
    if kind == "ms":
        return f"{value:.0f}"
    return str(value)


def model_rows(doc: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["model"] + [title for title, _, _ in _MODEL_COLUMNS]
    rows = [
        [model] + [fmt(figures[key], kind) for _, key, kind in _MODEL_COLUMNS]
        for model, figures in doc["models"].items()
    ]
    return header, rows


def columns(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, text: int = 1, indent: str = ""
) -> list[str]:
    """A plain-text table: the first ``text`` columns left-aligned, the others (figures) right."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        indent
        + "  ".join(
            cell.ljust(widths[i]) if i < text else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in [header, *rows]
    ]


def outcome_counts(totals: Mapping[str, Any]) -> str:
    names = {"error": "errors"}
    parts = [f"{totals[names.get(o, o)]} {o}" for o in OUTCOMES if totals[names.get(o, o)]]
    return ", ".join(parts) or "nothing ran"


def host_lines(doc: Mapping[str, Any]) -> list[str]:
    """Traffic per host when more than one host served the run."""
    traffic: dict[str, list[Any]] = {}
    for test in doc["tests"]:
        if test["host"] and test["llm"]:
            calls, workers = traffic.setdefault(test["host"], [0, set()])
            traffic[test["host"]][0] = calls + test["calls"]
            if test["worker"]:
                workers.add(test["worker"])
    if len(doc["run"]["hosts"]) < 2 and len(traffic) < 2:
        return []
    lines = []
    for host in dict.fromkeys([*doc["run"]["hosts"], *traffic]):
        calls, workers = traffic.get(host, [0, set()])
        on = f" ({', '.join(sorted(workers, key=_worker_order))})" if workers else ""
        lines.append(f"host {host}: {calls} calls{on}")
    return lines


def down_lines(doc: Mapping[str, Any]) -> list[str]:
    return [
        f"HOST DOWN {host}: {entry['tests']} test(s) errored with {_DOWN}"
        + (f" on {', '.join(entry['workers'])}" if entry["workers"] else "")
        + "; start the server there or remove it from --llm-host"
        for host, entry in doc["run"]["hosts_down"].items()
    ]


def regression_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    header = ["regression", "test or model", "baseline", "now", "allowed"]
    rows = [[r.kind, r.subject, r.before, r.now, r.limit] for r in comparison.regressions]
    return header, rows


def gate_title(comparison: Comparison) -> str:
    limits = comparison.limits
    verdict = (
        f"FAILED with {len(comparison.regressions)} regression(s)"
        if comparison.failed
        else "passed"
    )
    return (
        f"baseline gate {verdict} (baseline {comparison.baseline}; max score drop "
        f"{limits.max_score_drop:g}, max latency factor x{limits.max_latency_factor:g})"
    )


def reask_mark(test: Mapping[str, Any]) -> str | None:
    """``passed after 2 re-asks`` for a test that passed only after re-asks, ``passed after
    1 rerun`` for one that passed only when pytest-rerunfailures ran it again (or both),
    else None."""
    reasks, reruns = test.get("reasks", 0), test.get("reruns", 0)
    if test["outcome"] != "passed" or not (reasks or reruns):
        return None
    after = [f"{reasks} re-ask{'' if reasks == 1 else 's'}"] if reasks else []
    after += [f"{reruns} rerun{'' if reruns == 1 else 's'}"] if reruns else []
    return f"passed after {' and '.join(after)}"


def reask_lines(doc: Mapping[str, Any]) -> list[str]:
    """One line per test that passed only after re-asks: ``nodeid: passed after 2 re-asks``."""
    marks = ((test["nodeid"], reask_mark(test)) for test in doc["tests"])
    return [f"{nodeid}: {mark}" for nodeid, mark in marks if mark]


def sampling_lines(doc: Mapping[str, Any]) -> list[str]:
    """The ``llm sampling`` section: one line per ``llm.sample`` call of the run."""
    return [
        f"{test['nodeid']}: {'passed' if sample['passed'] else 'FAILED'}: {describe(sample)}"
        for test in doc["tests"]
        for sample in test["samples"]
    ]


def answers_text(test: Mapping[str, Any] | None) -> str:
    """A test's answers, one call a line (``call 2 [model, score 0.40]: text``), as its
    records keep them (the first characters of each)."""
    if test is None:
        return "(not in this run)"
    lines = []
    for number, call in enumerate(test.get("llm", []), 1):
        score = "" if call.get("score") is None else f", score {float(call['score']):.2f}"
        verdict = "" if call.get("success", True) else ", not accepted"
        answer = call.get("answer")
        shown = "(not recorded)" if answer is None else repr(answer)
        lines.append(f"call {number} [{call['model']}{score}{verdict}]: {shown}")
    return "\n".join(lines) or "(no model calls)"


def regressed_answers(comparison: Comparison, doc: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """For each test the gate failed (now failing, score drop): its node id, the baseline's
    answers and this run's, to be shown side by side."""
    now = {t["nodeid"]: t for t in doc["tests"]}
    subjects = dict.fromkeys(
        r.subject for r in comparison.regressions if r.kind in ("now failing", "score drop")
    )
    return [
        (nodeid, answers_text(comparison.tests.get(nodeid)), answers_text(now.get(nodeid)))
        for nodeid in subjects
    ]


def _markdown_answers(comparison: Comparison, doc: Mapping[str, Any]) -> str:
    rows = regressed_answers(comparison, doc)[:_MARKDOWN_FAILURES]
    if not rows:
        return ""
    cells = "".join(
        f"<tr><td><code>{escape(nodeid)}</code></td><td><pre>{escape(before)}</pre></td>"
        f"<td><pre>{escape(after)}</pre></td></tr>\n"
        for nodeid, before, after in rows
    )
    return (
        "\n<details open><summary>Answers of the regressed tests: baseline and now"
        "</summary>\n\n<table><tr><th>test</th><th>baseline</th><th>now</th></tr>\n"
        f"{cells}</table>\n</details>\n"
    )


def score_lines(test: Mapping[str, Any]) -> list[str]:
    """A test's scores, one per line: scorer, value, threshold, verdict, model, reason.
    Scores of answers a low score rejected say so (the test is scored by its accepted
    answers)."""
    lines = []
    for s in test.get("scores", []):
        threshold = "" if s.get("threshold") is None else f" (min {s['threshold']:g})"
        verdict = (
            "rejected the answer"
            if s.get("attempt") == "rejected"
            else ("passed" if s.get("passed", True) else "FAILED")
        )
        model = f" [{s['model']}]" if s.get("model") else ""
        reason = f": {s['reason']}" if s.get("reason") else ""
        lines.append(f"{s['scorer']} {float(s['value']):.2f}{threshold} {verdict}{model}{reason}")
    return lines


def test_details(test: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Why a test ended as it did, as (title, text) blocks for the HTML and Markdown reports:
    its failure message, its model calls, earlier runs' failures (reruns), its scores and
    its pass rates. Texts are bounded when recorded; renderers escape them."""
    blocks: list[tuple[str, str]] = []
    failure = test.get("failure")
    if failure:
        blocks.append((f"{test['outcome']} ({failure['when']})", failure["message"]))
        if failure.get("transcript"):
            blocks.append((TRANSCRIPT_SECTION, failure["transcript"]))
    for run, earlier in enumerate(test.get("rerun_failures", []), 1):
        blocks.append((f"run {run} failed ({earlier['when']}), then rerun", earlier["message"]))
    scores = score_lines(test)
    if scores:
        blocks.append(("scores", "\n".join(scores)))
    if test.get("samples"):
        rates = [f"{'passed' if s['passed'] else 'FAILED'}: {describe(s)}" for s in test["samples"]]
        blocks.append(("pass rate", "\n".join(rates)))
    return blocks


#: How many failed tests the step summary details (the JSON report has them all).
_MARKDOWN_FAILURES = 50


def markdown_tests(doc: Mapping[str, Any]) -> str:
    """The step summary's part on tests: each failed or errored test with why (message,
    model calls, scores, pass rate), then the sampled tests' pass rates. HTML-escaped
    inside ``<details>``/``<pre>``, where GitHub reads no Markdown."""
    failing = [t for t in doc["tests"] if t["outcome"] in ("failed", "error")]
    parts = []
    if failing:
        parts.append(f"\n### Failed and errored tests ({len(failing)})\n\n")
        for test in failing[:_MARKDOWN_FAILURES]:
            parts.append(_markdown_details(test, test_details(test)))
        if len(failing) > _MARKDOWN_FAILURES:
            more = len(failing) - _MARKDOWN_FAILURES
            parts.append(f"\n{more} more in the JSON report (--llm-report).\n")
    sampled = [t for t in doc["tests"] if t["samples"] and t not in failing]
    if sampled:
        parts.append(f"\n### Sampled tests ({len(sampled)})\n\n")
        for test in sampled[:_MARKDOWN_FAILURES]:
            parts.append(_markdown_details(test, test_details(test)))
    return "".join(parts)


def _markdown_details(test: Mapping[str, Any], blocks: Sequence[tuple[str, str]]) -> str:
    head = f"<code>{escape(test['nodeid'])}</code>: {escape(reask_mark(test) or test['outcome'])}"
    body = "".join(f"<b>{escape(title)}</b>\n<pre>{escape(text)}</pre>\n" for title, text in blocks)
    return f"<details><summary>{head}</summary>\n\n{body}</details>\n"


def summary_lines(
    doc: Mapping[str, Any], comparison: Comparison | None
) -> list[tuple[str, str | None]]:
    """The ``llm summary`` section: (line, colour or None)."""
    totals, run = doc["totals"], doc["run"]
    lines: list[tuple[str, str | None]] = []
    if doc["models"]:
        lines += [(line, None) for line in columns(*model_rows(doc))]
        lines.append(("", None))
    lines.append(
        (
            f"{totals['llm_tests']} of {totals['tests']} tests called a model: "
            f"{calls_text(totals)}, {fmt(totals['tokens_in'], 'tokens')} tokens in, "
            f"{totals['tokens_out']} tokens out, {totals['retries']} retries, "
            f"{totals['escalations']} escalations, {totals['cached']} replayed",
            None,
        )
    )
    workers = f" on {len(run['workers'])} workers" if run["workers"] else ""
    lines.append((f"{model_time(totals, run)}{workers}: {parallelism(totals)}", None))
    lines += [(line, None) for line in host_lines(doc)]
    lines += [(line, "red") for line in down_lines(doc)]
    lines += [(line, "yellow") for line in reask_lines(doc)]
    if comparison is not None:
        lines.append(("", None))
        lines.append((gate_title(comparison), "red" if comparison.failed else "green"))
        if comparison.regressions:
            lines += [
                (line, "red") for line in columns(*regression_rows(comparison), text=5, indent="  ")
            ]
        for title, ids in comparison.listed():
            lines.append((f"{title} ({len(ids)}, not gated):", None))
            lines += [(f"  {nodeid}", None) for nodeid in ids]
    return lines


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(markdown_text(c) for c in cells) + " |"

    return "\n".join([row(header), row(["---"] * len(header)), *map(row, rows)]) + "\n"


#: What makes tags, entities, links, images, code spans or table cells in GitHub's Markdown.
_MARKDOWN_SPECIAL = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;"} | {c: f"\\{c}" for c in "\\`[]|"}
)


def markdown_text(text: object) -> str:
    """``text`` (a test id, a model name, a host, a message) shown as itself in Markdown
    text: one line, and no tag, image, link, code span or table cell comes out of it."""
    return " ".join(str(text).splitlines()).translate(_MARKDOWN_SPECIAL)


def markdown_code(text: object) -> str:
    """``text`` in monospace, as :func:`markdown_text` (``<code>`` reads Markdown inside)."""
    return f"<code>{markdown_text(text)}</code>"


def calls_text(totals: Mapping[str, Any]) -> str:
    """``9 calls``, or ``9 calls (12 requests)`` when retries and escalations asked more."""
    requests = totals.get("requests", totals["calls"])
    more = f" ({requests} requests)" if requests != totals["calls"] else ""
    return f"{totals['calls']} calls{more}"


def model_time(totals: Mapping[str, Any], run: Mapping[str, Any]) -> str:
    return f"model time {totals['model_ms'] / 1000:.2f} s in {run['wall_s']:.2f} s wall"


def parallelism(totals: Mapping[str, Any]) -> str:
    """How much parallelism bought: the server's busy time over the wall time, for the live
    calls (replayed ones cost no model time). Without the server's own durations it is not
    claimed: the client's time counts the wait for a free slot as model time."""
    replayed = f", {totals['cached']} replayed calls left out" if totals["cached"] else ""
    queued = totals.get("queue_ms")
    waited = f", {queued / 1000:.2f} s queued at the server" if queued and queued >= 5 else ""
    if totals["parallelism"] is None:
        if not totals["calls"]:
            return "no model calls"
        if totals["cached"] >= totals["calls"]:
            return "every call replayed from cassettes"
        return f"parallelism not measured (the server tells no durations){replayed}"
    busy = f"server busy {totals['server_ms'] / 1000:.2f} s"
    return f"x{totals['parallelism']:.2f} from parallelism ({busy}{waited}){replayed}"


def markdown_summary(doc: Mapping[str, Any], comparison: Comparison | None) -> str:
    """The GitHub step summary: per-model table, totals, hosts down and the baseline gate."""
    totals, run = doc["totals"], doc["run"]
    parts = [
        f"\n## pytest-llm: {outcome_counts(totals)}\n\n",
        _markdown_table(*model_rows(doc)) if doc["models"] else "",
        f"\n{totals['llm_tests']} of {totals['tests']} tests called a model: "
        f"{totals['calls']} calls, {fmt(totals['tokens_in'], 'tokens')} tokens in, "
        f"{totals['tokens_out']} "
        f"tokens out. {model_time(totals, run).capitalize()} ({parallelism(totals)}).\n",
    ]
    parts += [f"\n**{markdown_text(line)}**\n" for line in down_lines(doc)]
    reasked = [(t["nodeid"], reask_mark(t)) for t in doc["tests"]]
    items = "".join(
        f"- {markdown_code(nodeid)}: {markdown_text(mark)}\n" for nodeid, mark in reasked if mark
    )
    if items:
        parts.append(f"\nAccepted only after re-asks:\n\n{items}")
    parts.append(markdown_tests(doc))
    if doc.get("ladder"):
        parts.append(f"\n### Model ladder\n\n{markdown_text(doc['ladder']['verdict'])}\n\n")
        parts.append(_markdown_table(*grid(doc["ladder"])))
    if comparison is not None:
        parts.append(f"\n### {markdown_text(gate_title(comparison))}\n\n")
        if comparison.regressions:
            parts.append(_markdown_table(*regression_rows(comparison)))
            parts.append(_markdown_answers(comparison, doc))
        for title, ids in comparison.listed():
            items = "".join(f"- {markdown_code(nodeid)}\n" for nodeid in ids)
            parts.append(
                f"\n<details><summary>{title.capitalize()} ({len(ids)})</summary>\n\n{items}"
                "\n</details>\n"
            )
    return "".join(parts) + "\n"
