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
  :mod:`pytest_llm.report.html`), each atomically; the tests are not kept in memory
  meanwhile: each is written to a temporary file as it ends
  (:mod:`pytest_llm.report.stream`), and its ``llm`` properties are taken off the item
  and, once every plugin has seen it, off the teardown report pytest keeps;
* compares with a baseline (``--llm-baseline``, :mod:`pytest_llm.baseline`) and
  fails the session when the gate fails;
* appends a Markdown summary to ``$GITHUB_STEP_SUMMARY`` when it is set.

The JSON report (``"schema": "pytest-llm-report/2"``) is typed in
:mod:`pytest_llm.report.document` (one ``TypedDict`` per part, each key explained there)
and published as a JSON Schema in the package, ``pytest-llm-report-2.schema.json``
(:data:`~pytest_llm.report.document.SCHEMA_FILE`); what changed from version 1 is listed
in that module's docstring. A test outcome is one word even when pytest counts two (a
failed test whose teardown also errors is ``failed``).

The package, one job a module: :mod:`~pytest_llm.report.options` (what the user asked
for), :mod:`~pytest_llm.report.document` (the typed document and its JSON Schema),
:mod:`~pytest_llm.report.records` (one record per test from its reports),
:mod:`~pytest_llm.report.figures` (pure figures over records, also kept as running
figures as the tests end, and the document), :mod:`~pytest_llm.report.stream` (the
finished tests on disk during the run, the JSON file written from them),
:mod:`~pytest_llm.report.text` (the terminal), :mod:`~pytest_llm.report.markdown` (the
step summary), :mod:`~pytest_llm.report.html` (the HTML file) and
:mod:`~pytest_llm.report.recorder` (the plugin object and its hooks). Reading a report
back (a baseline) is the gate's: :func:`pytest_llm.baseline.load_report`, re-exported here.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from ..baseline import load_report
    from .document import (
        COMPATIBLE,
        OUTCOMES,
        SCHEMA,
        SCHEMA_FILE,
        Report,
        ReportedTest,
        json_schema,
    )
    from .figures import (
        build_report,
        down_host,
        hosts_down,
        is_judge,
        judges,
        model_figures,
        models_used,
        percentile,
        reask_mark,
        report_document,
        run_totals,
        scored,
        tries,
        versions,
        worker_rows,
    )
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
        regressed_answers,
        regression_rows,
        sampling_lines,
        score_lines,
        summary_lines,
        test_details,
    )

#: Where each public name lives; it is imported on first use (PEP 562), so that loading
#: the plugin, which makes a Recorder, does not load the terminal, Markdown, HTML and
#: baseline parts a run may never need.
_WHERE = {
    "COMPATIBLE": ".document",
    "OUTCOMES": ".document",
    "Recorder": ".recorder",
    "Report": ".document",
    "ReportOptions": ".options",
    "ReportedTest": ".document",
    "SCHEMA": ".document",
    "SCHEMA_FILE": ".document",
    "SCORES_PROPERTY": ".records",
    "TestRecord": ".records",
    "answers_text": ".text",
    "build_report": ".figures",
    "calls_text": ".text",
    "columns": ".text",
    "down_host": ".figures",
    "down_lines": ".text",
    "error_info": ".records",
    "failure_info": ".records",
    "fmt": ".text",
    "gate_title": ".text",
    "host_lines": ".text",
    "hosts_down": ".figures",
    "is_judge": ".figures",
    "json_schema": ".document",
    "judges": ".figures",
    "load_report": "..baseline",
    "markdown_code": ".markdown",
    "markdown_summary": ".markdown",
    "markdown_tests": ".markdown",
    "markdown_text": ".markdown",
    "model_figures": ".figures",
    "model_rows": ".text",
    "model_time": ".text",
    "models_used": ".figures",
    "outcome_counts": ".text",
    "parallelism": ".text",
    "percentile": ".figures",
    "reask_lines": ".text",
    "reask_mark": ".figures",
    "regressed_answers": ".text",
    "regression_rows": ".text",
    "report_document": ".figures",
    "run_totals": ".figures",
    "sampling_lines": ".text",
    "score_lines": ".text",
    "scored": ".figures",
    "selects_part": ".options",
    "split_group": ".records",
    "summary_lines": ".text",
    "test_details": ".text",
    "tries": ".figures",
    "versions": ".figures",
    "worker_rows": ".figures",
}

__all__ = [
    "COMPATIBLE",
    "OUTCOMES",
    "SCHEMA",
    "SCHEMA_FILE",
    "SCORES_PROPERTY",
    "Recorder",
    "Report",
    "ReportOptions",
    "ReportedTest",
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
    "is_judge",
    "json_schema",
    "judges",
    "load_report",
    "markdown_code",
    "markdown_summary",
    "markdown_tests",
    "markdown_text",
    "model_figures",
    "model_rows",
    "model_time",
    "models_used",
    "outcome_counts",
    "parallelism",
    "percentile",
    "reask_lines",
    "reask_mark",
    "regressed_answers",
    "regression_rows",
    "report_document",
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


def __getattr__(name: str) -> typing.Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # not kept in globals(): a module imported again (pytester's in-process runs drop
    # the modules they imported) would leave the name pointing into the old one
    return getattr(importlib.import_module(module, __name__), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
