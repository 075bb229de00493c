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
  :mod:`pytest_llm.report.html`), each atomically (``_files.write_text_atomic``);
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
        "hosts_down": {                      # hosts that failed calls, each once:
          "http://gpu2:11434": {"tests": 0,  # tests that errored with it (refused)
            "moved": ["tests/t.py::test_a"], # tests whose calls moved to other hosts of
                                             # the pool (sorted)
            "reason": "timed out",           # refused the connection, timed out,
                                             # answered 503, broke the answer
            "workers": ["gw1", "gw3"], "message": "..."}
        },
        "workers": [                         # one per xdist worker that did not crash;
                                             # [] without xdist
          {"id": "gw0", "host": "http://gpu1:11434", "tests": 8, "llm_tests": 8,
           "calls": 8, "model_ms": 2011.4}
        ],
        "digests": {"llama3.2": {"http://gpu1:11434": "a80c4f17..."}},  # when the server
                                             # tells, of models that answered live
        "dist": "load",                      # xdist --dist mode, null without xdist
        "filtered": false,                   # -k, -m, ::, --lf selected part of the suite
        "split": {"group": 2, "splits": 3},  # one shard (pytest-split), else null
        "shards": [...],                     # a merged report only (pytest_llm.report.merge)
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
          "moved_from": [],                  # hosts of the pool that failed its calls, which
                                             # then moved: {"host", "reason", "message", "down"}
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

The package, one job a module: :mod:`~pytest_llm.report.options` (what the user asked
for), :mod:`~pytest_llm.report.records` (one record per test from its reports),
:mod:`~pytest_llm.report.figures` (pure figures over records, and the document),
:mod:`~pytest_llm.report.loading` (reading a report back),
:mod:`~pytest_llm.report.text` (the terminal), :mod:`~pytest_llm.report.markdown` (the
step summary), :mod:`~pytest_llm.report.html` (the HTML file) and
:mod:`~pytest_llm.report.recorder` (the plugin object and its hooks).
"""

from __future__ import annotations

from .figures import (
    OUTCOMES,
    SCHEMA,
    build_report,
    down_host,
    hosts_down,
    model_figures,
    percentile,
    run_totals,
    scored,
    tries,
    versions,
    worker_rows,
)
from .loading import load_report
from .markdown import markdown_code, markdown_summary, markdown_tests, markdown_text
from .options import ReportOptions, selects_part
from .recorder import Recorder
from .records import SCORES_PROPERTY, TestRecord, error_info, failure_info, split_group
from .text import (
    answers_text,
    calls_text,
    columns,
    down_lines,
    fmt,
    gate_title,
    host_lines,
    model_rows,
    model_time,
    outcome_counts,
    parallelism,
    reask_lines,
    reask_mark,
    regressed_answers,
    regression_rows,
    sampling_lines,
    score_lines,
    summary_lines,
    test_details,
)

__all__ = [
    "OUTCOMES",
    "SCHEMA",
    "SCORES_PROPERTY",
    "Recorder",
    "ReportOptions",
    "TestRecord",
    "answers_text",
    "build_report",
    "calls_text",
    "columns",
    "down_host",
    "down_lines",
    "error_info",
    "failure_info",
    "fmt",
    "gate_title",
    "host_lines",
    "hosts_down",
    "load_report",
    "markdown_code",
    "markdown_summary",
    "markdown_tests",
    "markdown_text",
    "model_figures",
    "model_rows",
    "model_time",
    "outcome_counts",
    "parallelism",
    "percentile",
    "reask_lines",
    "reask_mark",
    "regressed_answers",
    "regression_rows",
    "run_totals",
    "sampling_lines",
    "score_lines",
    "scored",
    "selects_part",
    "split_group",
    "summary_lines",
    "test_details",
    "tries",
    "versions",
    "worker_rows",
]
