"""pytest-html integration: each test's model, score, tokens and model calls in its report.

Registered by the plugin only when pytest-html writes a report (``--html``). pytest-html
builds a test's rows when its teardown report arrives; this object reads the ``llm``
and ``llm_scores`` properties of that report first (``tryfirst``), so the table hooks
find them: three sortable columns (model, score, tokens; their data keys ``llm_*``)
and, under the row, one line per call.
A failed test's ``llm calls`` section already shows there, as a report section. Every
text is escaped; a test's figures are dropped once its rows are built.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

import pytest

from . import properties
from .report import fmt, scored

__all__ = ["PytestHtmlHooks"]

_COLUMNS = ("model", "score", "tokens")


class PytestHtmlHooks:
    """pytest-html's table hooks, fed from the test reports."""

    def __init__(self) -> None:
        self._tests: dict[str, dict[str, Any]] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "teardown" or str(report.outcome) == "rerun":
            return
        calls: list[dict[str, Any]] = []
        scores: list[dict[str, Any]] = []
        for name, value in report.user_properties:
            if name == properties.CALLS:
                calls.extend(json.loads(str(value)))
            elif name == properties.SCORES:
                scores.extend(json.loads(str(value)))
        if calls or scores:
            self._tests[report.nodeid] = {"calls": calls, "scores": scores}

    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        for i, title in enumerate(_COLUMNS):
            cells.insert(2 + i, f'<th class="sortable" data-column-type="llm_{title}">{title}</th>')

    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        test = self._tests.get(report.nodeid, {"calls": [], "scores": []})
        calls = test["calls"]
        models = " → ".join(dict.fromkeys(c["model"] for c in calls))
        values = [value for _, value in scored(test["scores"], calls)]
        score = fmt(sum(values) / len(values), "score") if values else ""
        tokens_in = [c.get("total_tokens_in", c.get("tokens_in")) for c in calls]
        tokens_out = sum(int(c.get("total_tokens_out", c.get("tokens_out", 0))) for c in calls)
        known_in = None if None in tokens_in else sum(t or 0 for t in tokens_in)
        tokens = f"{fmt(known_in, 'tokens')} in / {tokens_out} out" if calls else ""
        for i, text in enumerate((models, score, tokens)):
            cells.insert(2 + i, f'<td class="col-llm_{_COLUMNS[i]}">{escape(text)}</td>')

    def pytest_html_results_table_html(self, report: pytest.TestReport, data: list[str]) -> None:
        test = self._tests.get(report.nodeid)
        if test is None:
            return
        if report.when == "call":
            lines = [_call_line(number, c) for number, c in enumerate(test["calls"], 1)]
            if lines:
                text = escape("\n".join(lines))
                data.append(f'<div class="llm-calls"><pre>{text}</pre></div>')
        elif report.when == "teardown":
            del self._tests[report.nodeid]  # its last row is built


def _call_line(number: int, call: dict[str, Any]) -> str:
    """``call 1: llama3.2, 251 ms, 12 in / 7 out, 2 attempts, score 0.90: 'Paris'``."""
    route = " -> ".join(call.get("route") or [call["model"]])
    parts = [f"call {number}: {route}", f"{fmt(call.get('duration_ms'), 'ms')} ms"]
    tokens_in = call.get("total_tokens_in", call.get("tokens_in"))
    parts.append(f"{fmt(tokens_in, 'tokens')} in / {call.get('total_tokens_out', 0)} out")
    if call.get("attempts", 1) > 1:
        parts.append(f"{call['attempts']} attempts")
    if call.get("score") is not None:
        parts.append(f"score {float(call['score']):.2f}")
    if call.get("cached"):
        parts.append("replayed")
    answer = call.get("answer")
    return ", ".join(parts) + ("" if answer is None else f": {answer!r}")
