"""The HTML report (``--llm-html``): one self-contained file, nothing fetched.

Plots are inline SVG drawn here from the report document (see
:mod:`pytest_llm.report`): the score distribution per model, latency per model
(a box plot over every call) and the pass rate per model against the baseline.
Under them, the per-model table and the per-test table (failures first, each test's
details under its row), with a filter box and sortable columns: a few lines of inline
script (:data:`_SCRIPT`); without it the page reads the same, unfiltered and unsorted.
A filter and a sort can come with the address: ``report.html#filter=test_city&sort=score``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from ..baseline import Comparison
from ..ladder import grid
from .figures import percentile, scored, tries
from .text import (
    CASE_ROWS,
    case_details,
    columns,
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

__all__ = ["render_html"]

_PALETTE = ("#3b6fd4", "#d9822b", "#2e9e6a", "#a54fc6", "#c43d4b", "#2b9bb0", "#8a7a2e", "#666")
_OUTCOME_COLORS = {
    "passed": "#2e9e6a",
    "failed": "#c43d4b",
    "error": "#b35c00",
    "skipped": "#888",
    "xfailed": "#888",
    "xpassed": "#d9822b",
    "flagged": "#c9a227",
}
_NO_COLOR = "#666"  # a model not in this run's figures (never expected)
_LABEL_W = 150  # room for model names left of every plot
_PLOT_W = 420
_ROW_H = 34

#: Filter box and sortable columns of the tests table. A test's row, its details row
#: (``tr.details``) and its dataset cases' rows (``tr.case``) move and hide together;
#: numbers sort as numbers, ``-`` last.
_SCRIPT = """
(function () {
  var table = document.getElementById("tests"), box = document.getElementById("filter");
  if (!table || !box) return;
  var body = table.tBodies[0];
  function groups() {
    var out = [], rows = Array.prototype.slice.call(body.rows);
    rows.forEach(function (r) {
      var under = r.classList.contains("details") || r.classList.contains("case");
      if (under && out.length) out[out.length - 1].push(r);
      else out.push([r]);
    });
    return out;
  }
  function filter() {
    var q = box.value.toLowerCase();
    groups().forEach(function (g) {
      var hit = !q || g.some(function (r) { return r.textContent.toLowerCase().indexOf(q) >= 0; });
      g.forEach(function (r) { r.style.display = hit ? "" : "none"; });
    });
  }
  function key(g, i) {
    var t = (g[0].cells[i] || {textContent: ""}).textContent.trim(), n = parseFloat(t);
    return isNaN(n) ? [1, t.toLowerCase()] : [0, n];
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
    th.style.cursor = "pointer";
    th.addEventListener("click", function () {
      var up = th.getAttribute("data-sort") !== "up";
      th.setAttribute("data-sort", up ? "up" : "down");
      groups().sort(function (a, b) {
        var x = key(a, i), y = key(b, i), c = x[0] - y[0] || (x[1] < y[1] ? -1 : x[1] > y[1]);
        return up ? c : -c;
      }).forEach(function (g) { g.forEach(function (r) { body.appendChild(r); }); });
    });
  });
  box.addEventListener("input", filter);
  var m = /[#&]filter=([^&]*)/.exec(location.hash);
  if (m) { box.value = decodeURIComponent(m[1]); filter(); }
  var s = /[#&]sort=([^&]*)/.exec(location.hash);
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
    if (s && th.textContent === decodeURIComponent(s[1])) th.click();
  });
})();
"""

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px;
       color: #222; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.muted { color: #666; } .bad { color: #c43d4b; font-weight: 600; }
.good { color: #2e9e6a; font-weight: 600; }
.box { border: 1px solid #ddd; border-radius: 6px; padding: 10px 14px; margin: 12px 0; }
.box.fail { border-color: #c43d4b; background: #fff4f5; }
.box.pass { border-color: #2e9e6a; background: #f3fbf6; }
.plots { display: flex; flex-wrap: wrap; gap: 18px; }
figure { margin: 0; border: 1px solid #e4e4e4; border-radius: 6px; padding: 8px; }
figcaption { font-weight: 600; margin-bottom: 4px; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: right;
         white-space: nowrap; }
th { background: #f6f6f6; position: sticky; top: 0; }
td:first-child, th:first-child { text-align: left; }
td.id { text-align: left; white-space: normal; overflow-wrap: anywhere; min-width: 260px;
        max-width: 560px; }
.box td, .box th { text-align: left; }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; color: #fff;
         font-size: 12px; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; }
tr.case td { background: #fbfbfd; } tr.case td.id { padding-left: 22px; }
tr.details td { text-align: left; white-space: normal; max-width: 1100px; }
tr.details pre { white-space: pre-wrap; overflow-wrap: anywhere; margin: 4px 0 8px; }
tr.details details { max-width: 1040px; }
table.answers td { text-align: left; vertical-align: top; white-space: normal; }
table.answers pre { white-space: pre-wrap; overflow-wrap: anywhere; max-width: 480px; margin: 0; }
"""


def render_html(doc: Mapping[str, Any], comparison: Comparison | None = None) -> str:
    """The whole report page as a string."""
    totals, run = doc["totals"], doc["run"]
    title = f"pytest-llm report: {outcome_counts(totals)}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="muted">{escape(doc["created"])} · {escape(models_text(doc))} · '
        f"{totals['llm_tests']} of "
        f"{totals['tests']} tests called a model · {totals['calls']} calls · "
        f"{fmt(totals['tokens_in'], 'tokens')} tokens in, {totals['tokens_out']} out · "
        f"{escape(model_time(totals, run))} ({escape(parallelism(totals))})</p>",
    ]
    parts += [f'<div class="box fail">{escape(line)}</div>' for line in down_lines(doc)]
    if comparison is not None:
        parts.append(_gate(comparison, doc))
    parts += [
        '<h2>Plots</h2><div class="plots">',
        _figure("Score distribution per model", _score_plot(doc)),
        _figure("Latency per model (every call)", _latency_plot(doc)),
        _figure("Pass rate per model, against baseline", _pass_rate_plot(doc, comparison)),
        "</div>",
        "<h2>Models</h2>",
        _table(*model_rows(doc)),
        *_ladder(doc),
        "<h2>Tests</h2>",
        '<p><input id="filter" type="search" placeholder="filter tests: id, outcome, model'
        '..." size="48"> <span class="muted">click a column title to sort</span></p>',
        _tests_table(doc, comparison),
        "<h2>Run</h2>",
        _run_details(doc),
        f"<script>{_SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


# --- page parts -------------------------------------------------------------------------------


def _gate(comparison: Comparison, doc: Mapping[str, Any]) -> str:
    kind = "fail" if comparison.failed else "pass"
    out = [f'<div class="box {kind}"><b>{escape(gate_title(comparison))}</b>']
    if comparison.regressions:
        out.append(_table(*regression_rows(comparison)))
    answers = regressed_answers(comparison, doc)
    if answers:  # what the model said then and now, for each test the gate failed
        rows = "".join(
            f'<tr><td class="id">{escape(nodeid)}</td><td><pre>{escape(before)}</pre></td>'
            f"<td><pre>{escape(after)}</pre></td></tr>"
            for nodeid, before, after in answers
        )
        out.append(
            "<details open><summary>Answers of the regressed tests: baseline and now</summary>"
            '<table class="answers"><thead><tr><th>test</th><th>baseline</th><th>now</th>'
            f"</tr></thead><tbody>{rows}</tbody></table></details>"
        )
    for title, ids in comparison.listed():
        items = "".join(f"<li><code>{escape(i)}</code></li>" for i in ids)
        out.append(f"<details><summary>{title.capitalize()} ({len(ids)}, not gated)</summary>")
        out.append(f"<ul>{items}</ul></details>")
    out.append("</div>")
    return "".join(out)


def _ladder(doc: Mapping[str, Any]) -> list[str]:
    """The model ladder: the test x model grid (cells coloured by outcome) and the verdict."""
    ladder = doc.get("ladder")
    if not ladder:
        return []
    header, rows = grid(ladder)
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = [f'<td class="id">{escape(row[0])}</td>']
        for cell in row[1:-1]:
            outcome = cell.split(" ", 1)[0]
            color = _OUTCOME_COLORS.get(outcome)
            style = f' style="border-left:4px solid {color}"' if color else ""
            cells.append(f"<td{style}>{escape(cell)}</td>")
        cells.append(f"<td><b>{escape(row[-1])}</b></td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return [
        "<h2>Model ladder</h2>",
        f'<div class="box">{escape(ladder["verdict"])}</div>',
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>",
    ]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _badge(outcome: str, label: str | None = None) -> str:
    color = _OUTCOME_COLORS.get(outcome, "#888")
    return f'<span class="badge" style="background:{color}">{escape(label or outcome)}</span>'


def _tests_table(doc: Mapping[str, Any], comparison: Comparison | None) -> str:
    header = ["test", "outcome", "model", "route", "judge", "attempts", "tokens in", "tokens out"]
    header += ["latency ms", "ttft ms", "score", "host", "worker"]
    if comparison is not None:
        header += ["baseline", "baseline score"]
    rows = []
    failing_first = sorted(doc["tests"], key=lambda t: t["outcome"] not in ("failed", "error"))
    for test in failing_first:
        cells = [
            f'<td class="id">{escape(test["nodeid"])}</td>',
            f"<td>{_badge(test['outcome'], reask_mark(test))}</td>",  # passed after N re-asks
        ]
        values = [
            test["model"] or "",
            " → ".join(test["route"]),
            ", ".join(test.get("judges", [])),
            fmt(test["attempts"] or None),
            fmt(test["tokens_in"], "tokens")
            if test["tokens_in"] is None
            else fmt(test["tokens_in"] or None),
            fmt(test["tokens_out"] or None),
            fmt(test["latency_ms"], "ms"),
            fmt(test["ttft_ms"], "ms"),
            fmt(test["score"], "score"),
            test["host"] or "",
            test["worker"] or "",
        ]
        cells += [f"<td>{escape(v)}</td>" for v in values]
        if comparison is not None:
            old = comparison.tests.get(test["nodeid"])
            cells.append(f"<td>{_badge(old['outcome']) if old else 'new'}</td>")
            cells.append(f"<td>{escape(fmt(old.get('score') if old else None, 'score'))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
        details = _details(test, len(cells))
        if details:
            rows.append(details)
        rows += _case_rows(test, len(header))
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(rows)
    return f'<table id="tests"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _case_rows(test: Mapping[str, Any], width: int) -> list[str]:
    """A dataset test's cases (``llm.evaluate``), each a row under the test's like a test's
    own: verdict, model, score, and for a failed case why (reason, expected and predicted,
    output) in a row under it. Failed cases first; at most :data:`CASE_ROWS` a dataset."""
    rows: list[str] = []
    for dataset in test.get("datasets", []):
        for case, blocks in case_details(dataset, limit=CASE_ROWS):
            verdict = "passed" if case["passed"] else "failed"
            cells = [
                f'<td class="id">↳ case {escape(str(case["id"]))}</td>',
                f"<td>{_badge(verdict)}</td>",
                f"<td>{escape(case.get('model') or '')}</td>",
            ]
            cells += ["<td></td>"] * 7 + [f"<td>{escape(fmt(case.get('score'), 'score'))}</td>"]
            cells += ["<td></td>"] * (width - len(cells))
            rows.append('<tr class="case">' + "".join(cells) + "</tr>")
            if blocks:
                body = "".join(f"<b>{escape(t)}</b><pre>{escape(x)}</pre>" for t, x in blocks)
                rows.append(
                    f'<tr class="details case"><td colspan="{width}"><details'
                    f"{'' if case['passed'] else ' open'}><summary>case {escape(str(case['id']))}"
                    f"</summary>{body}</details></td></tr>"
                )
        hidden = len(dataset.get("results", [])) - CASE_ROWS
        if hidden > 0:
            rows.append(
                f'<tr class="case"><td class="id muted" colspan="{width}">{hidden} more '
                "case(s) in the JSON report (--llm-report)</td></tr>"
            )
    return rows


def _details(test: Mapping[str, Any], width: int) -> str:
    """A row under the test's row: why it failed (message, model calls), earlier runs'
    failures, its scores and pass rates; open for a failed or errored test."""
    blocks = test_details(test, cases=0)  # the cases are rows of their own
    if not blocks:
        return ""
    failing = test["outcome"] in ("failed", "error")
    details = "dataset and details" if test.get("datasets") else "scores and details"
    summary = "why it failed" if failing else details
    body = "".join(f"<b>{escape(title)}</b><pre>{escape(text)}</pre>" for title, text in blocks)
    return (
        f'<tr class="details"><td colspan="{width}"><details{" open" if failing else ""}>'
        f"<summary>{summary}</summary>{body}</details></td></tr>"
    )


def _run_details(doc: Mapping[str, Any]) -> str:
    run = doc["run"]
    lines = [
        models_text(doc),
        f"backend {run['backend']} · seed {run['seed']} · dist {run['dist'] or 'none'}",
        f"hosts: {', '.join(run['hosts'])}",
    ]
    if run["workers"]:
        rows = [
            [w["id"], w["host"], str(w["tests"]), str(w["calls"]), fmt(w["model_ms"], "ms")]
            for w in run["workers"]
        ]
        lines += columns(["worker", "host", "tests", "calls", "model ms"], rows, text=2)
    for model, by_host in run["digests"].items():
        for host, digest in by_host.items():
            lines.append(f"digest {model} @ {host}: {digest}")
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in run["versions"].items() if v))
    return f"<pre>{escape(chr(10).join(lines))}</pre>"


# --- plots ------------------------------------------------------------------------------------


def _figure(caption: str, svg: str) -> str:
    return f"<figure><figcaption>{escape(caption)}</figcaption>{svg}</figure>"


def _svg(height: int, body: list[str]) -> str:
    width = _LABEL_W + _PLOT_W + 44
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif" font-size="12">'
        + "".join(body)
        + "</svg>"
    )


def _text(x: float, y: float, text: str, *, anchor: str = "start", color: str = "#222") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{color}">{escape(text)}</text>'
    )


def _label(y: float, model: str) -> str:
    short = model if len(model) <= 22 else model[:21] + "…"
    return _text(_LABEL_W - 8, y, short, anchor="end")


def _empty(message: str) -> str:
    return _svg(60, [_text(_LABEL_W + _PLOT_W / 2, 34, message, anchor="middle", color="#888")])


def _axis(y: float, ticks: Sequence[tuple[float, str]]) -> list[str]:
    """A horizontal axis under the rows: ``ticks`` are (fraction of the width, label)."""
    out = [f'<line x1="{_LABEL_W}" y1="{y}" x2="{_LABEL_W + _PLOT_W}" y2="{y}" stroke="#999"/>']
    for fraction, label in ticks:
        x = _LABEL_W + fraction * _PLOT_W
        out.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}" stroke="#999"/>')
        out.append(_text(x, y + 16, label, anchor="middle", color="#555"))
    return out


def _latencies(doc: Mapping[str, Any]) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {model: [] for model in doc["models"]}
    for test in doc["tests"]:
        for call in test["llm"]:
            for attempt in tries(call):  # each answer counts for the model that gave it
                if attempt.get("rejected") != "transport":
                    values.setdefault(attempt["model"], []).append(float(attempt["duration_ms"]))
    return values


def _scores(doc: Mapping[str, Any]) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {model: [] for model in doc["models"]}
    for test in doc["tests"]:
        for model, value in scored(test["scores"], test["llm"]):
            values.setdefault(model, []).append(value)
    return values


def model_colors(doc: Mapping[str, Any]) -> dict[str, str]:
    """One colour per model of the run, the same in every plot (by the model's place in
    ``models``, which is sorted by name)."""
    return {model: _PALETTE[i % len(_PALETTE)] for i, model in enumerate(doc["models"])}


def _score_plot(doc: Mapping[str, Any]) -> str:
    """Per model, a histogram of the scores in ten bins over [0, 1]."""
    colors = model_colors(doc)
    scores = {m: v for m, v in _scores(doc).items() if v}
    if not scores:
        return _empty("nothing was scored in this run")
    body: list[str] = []
    bin_w = _PLOT_W / 10
    for row, (model, values) in enumerate(scores.items()):
        top = 10 + row * _ROW_H
        counts = [0] * 10
        for value in values:
            counts[min(int(value * 10), 9)] += 1
        color = colors.get(model, _NO_COLOR)
        body.append(_label(top + _ROW_H / 2 + 4, model))
        for i, count in enumerate(counts):
            if count:
                h = (_ROW_H - 8) * count / max(counts)
                x, y = _LABEL_W + i * bin_w + 1, top + _ROW_H - 4 - h
                body.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{bin_w - 2:.1f}" height="{h:.1f}" '
                    f'fill="{color}"><title>{escape(model)}: {count} score(s) from '
                    f"{i / 10:.1f} to {(i + 1) / 10:.1f}</title></rect>"
                )
        mean = sum(values) / len(values)
        x = _LABEL_W + mean * _PLOT_W
        body.append(
            f'<line x1="{x:.1f}" y1="{top + 2}" x2="{x:.1f}" y2="{top + _ROW_H - 2}" '
            'stroke="#222" stroke-dasharray="3,2"/>'
        )
    bottom = 10 + len(scores) * _ROW_H
    body += _axis(bottom, [(i / 5, f"{i / 5:.1f}") for i in range(6)])
    body.append(_text(_LABEL_W + _PLOT_W, bottom + 32, "score (dashed: mean)", anchor="end"))
    return _svg(bottom + 40, body)


def _nice_step(span: float) -> float:
    raw = span / 5
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def _latency_plot(doc: Mapping[str, Any]) -> str:
    """Per model, a box plot of call latency: whiskers min to max, box p25 to p75, median, p95."""
    colors = model_colors(doc)
    latencies = {m: v for m, v in _latencies(doc).items() if v}
    if not latencies:
        return _empty("no model calls in this run")
    high = max(max(v) for v in latencies.values()) or 1.0
    step = _nice_step(high)
    limit = step * math.ceil(high / step)

    def x_of(ms: float) -> float:
        return _LABEL_W + ms / limit * _PLOT_W

    body: list[str] = []
    for row, (model, values) in enumerate(latencies.items()):
        mid = 10 + row * _ROW_H + _ROW_H / 2
        color = colors.get(model, _NO_COLOR)
        p = {q: percentile(values, q) or 0.0 for q in (0, 25, 50, 75, 95, 100)}
        tip = (
            f"<title>{escape(model)}: {len(values)} call(s), p50 {p[50]:.0f} ms, "
            f"p95 {p[95]:.0f} ms, max {p[100]:.0f} ms</title>"
        )
        body.append(_label(mid + 4, model))
        body.append(
            f'<line x1="{x_of(p[0]):.1f}" y1="{mid}" x2="{x_of(p[100]):.1f}" y2="{mid}" '
            f'stroke="{color}"/>'
        )
        width = max(x_of(p[75]) - x_of(p[25]), 2.0)
        body.append(
            f'<rect x="{x_of(p[25]):.1f}" y="{mid - 9}" width="{width:.1f}" height="18" '
            f'fill="{color}" fill-opacity="0.35" stroke="{color}">{tip}</rect>'
        )
        body.append(
            f'<line x1="{x_of(p[50]):.1f}" y1="{mid - 9}" x2="{x_of(p[50]):.1f}" '
            f'y2="{mid + 9}" stroke="#222" stroke-width="2"/>'
        )
        body.append(
            f'<circle cx="{x_of(p[95]):.1f}" cy="{mid}" r="3" fill="#fff" stroke="{color}"/>'
        )
    bottom = 10 + len(latencies) * _ROW_H
    ticks = [(i * step / limit, f"{i * step:g}") for i in range(round(limit / step) + 1)]
    body += _axis(bottom, ticks)
    body.append(_text(_LABEL_W + _PLOT_W, bottom + 32, "ms (circle: p95)", anchor="end"))
    return _svg(bottom + 40, body)


def _pass_rate_plot(doc: Mapping[str, Any], comparison: Comparison | None) -> str:
    """Per model, the share of its tests that passed (failed and errored ones count, those
    that errored before any answer under the model they were set to): baseline (grey)
    over this run."""
    colors = model_colors(doc)
    models = {m: f for m, f in doc["models"].items() if f["pass_rate"] is not None}
    if not models:
        return _empty("no test called a model")
    baseline = comparison.models if comparison is not None else {}
    body: list[str] = []
    for row, (model, figures) in enumerate(models.items()):
        top = 10 + row * _ROW_H
        color = colors.get(model, _NO_COLOR)
        body.append(_label(top + _ROW_H / 2 + 4, model))
        old = baseline.get(model, {})
        bars = []
        if old.get("pass_rate") is not None:
            bars.append((old, "#bbb", "baseline", top + 4))
        bars.append((figures, color, "this run", top + 15))
        for shown, fill, who, y in bars:
            rate = float(shown["pass_rate"])
            w = max(rate * _PLOT_W, 1.0)
            of = f"{shown['passed']}/{shown['tests']}" if "tests" in shown else ""
            body.append(
                f'<rect x="{_LABEL_W}" y="{y}" width="{w:.1f}" height="10" fill="{fill}">'
                f"<title>{escape(model)}, {who}: {rate:.0%} ({escape(of)} tests passed)"
                "</title></rect>"
            )
            body.append(_text(_LABEL_W + w + 4, y + 9, f"{rate:.0%} ({of})", color="#444"))
    bottom = 10 + len(models) * _ROW_H
    body += _axis(bottom, [(i / 4, f"{i * 25}%") for i in range(5)])
    legend = "grey: baseline, colour: this run" if comparison else "no baseline given"
    body.append(_text(_LABEL_W + _PLOT_W, bottom + 32, legend, anchor="end"))
    return _svg(bottom + 40, body)
