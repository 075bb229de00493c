"""The Markdown step summary (``$GITHUB_STEP_SUMMARY``) and Markdown escaping."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from ..baseline import Comparison
from ..ladder import grid
from .text import (
    down_lines,
    fmt,
    gate_title,
    model_rows,
    model_time,
    models_text,
    outcome_counts,
    parallelism,
    reask_mark,
    regressed_answers,
    regression_rows,
    test_details,
)

__all__ = ["markdown_code", "markdown_summary", "markdown_tests", "markdown_text"]


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


#: How many failed tests the step summary details (the JSON report has them all).
_MARKDOWN_FAILURES = 50


def markdown_tests(doc: Mapping[str, Any]) -> str:
    """The step summary's part on tests: each failed or errored test with why (message,
    model calls, scores, pass rate, dataset cases), then the sampled tests' pass rates and
    the dataset tests' cases (failed first, each with its score and reason). HTML-escaped
    inside ``<details>``/``<pre>``, where GitHub reads no Markdown."""
    failing = [t for t in doc["tests"] if t["outcome"] in ("failed", "error")]
    parts = []
    if failing:
        parts.append(f"\n### Failed and errored tests ({len(failing)})\n\n")
        for test in failing[:_MARKDOWN_FAILURES]:
            parts.append(_markdown_details(test, test_details(test, cases=_MARKDOWN_FAILURES)))
        if len(failing) > _MARKDOWN_FAILURES:
            more = len(failing) - _MARKDOWN_FAILURES
            parts.append(f"\n{more} more in the JSON report (--llm-report).\n")
    sampled = [t for t in doc["tests"] if t["samples"] and t not in failing]
    if sampled:
        parts.append(f"\n### Sampled tests ({len(sampled)})\n\n")
        for test in sampled[:_MARKDOWN_FAILURES]:
            parts.append(_markdown_details(test, test_details(test)))
    evaluated = [t for t in doc["tests"] if t.get("datasets") and t not in failing]
    if evaluated:
        parts.append(f"\n### Dataset tests ({len(evaluated)})\n\n")
        for test in evaluated[:_MARKDOWN_FAILURES]:
            parts.append(_markdown_details(test, test_details(test, cases=_MARKDOWN_FAILURES)))
    return "".join(parts)


def _markdown_details(test: Mapping[str, Any], blocks: Sequence[tuple[str, str]]) -> str:
    head = f"<code>{escape(test['nodeid'])}</code>: {escape(reask_mark(test) or test['outcome'])}"
    body = "".join(f"<b>{escape(title)}</b>\n<pre>{escape(text)}</pre>\n" for title, text in blocks)
    return f"<details><summary>{head}</summary>\n\n{body}</details>\n"


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


def markdown_summary(doc: Mapping[str, Any], comparison: Comparison | None) -> str:
    """The GitHub step summary: per-model table, totals, hosts down and the baseline gate."""
    totals, run = doc["totals"], doc["run"]
    parts = [
        f"\n## pytest-llm: {outcome_counts(totals)}\n\n",
        f"{markdown_text(models_text(doc))}\n\n",
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
