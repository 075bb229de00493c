"""The terminal's ``llm summary`` and ``llm sampling`` sections, and the text pieces the
Markdown and HTML reports share (tables, gate title, details of a test)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..baseline import Comparison
from ..datasets import confusion_lines
from ..datasets import describe as describe_dataset
from ..sampling import describe
from ..transcript import SECTION as TRANSCRIPT_SECTION
from .figures import _DOWN, OUTCOMES, RunFigures, _worker_order, judges, reask_mark

__all__ = [
    "CASE_ROWS",
    "answers_text",
    "calls_text",
    "case_details",
    "case_lines",
    "columns",
    "dataset_title",
    "down_lines",
    "fmt",
    "gate_title",
    "host_lines",
    "model_rows",
    "model_time",
    "models_text",
    "outcome_counts",
    "parallelism",
    "reask_lines",
    "reask_mark",
    "regressed_answers",
    "regression_rows",
    "sampling_lines",
    "score_lines",
    "summary_lines",
    "test_details",
]

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


def models_text(doc: Mapping[str, Any]) -> str:
    """The models the run asked, then its judges, then the default setting when no test
    used it: ``models tiny, big · judge qwen3 · default llama3.2 (not used)``."""
    default = doc["run"]["model"]
    asked = [m for m in doc["models"] if any(m in t["route"] for t in doc["tests"])]
    judged = judges(doc)
    parts = [f"model{'' if len(asked) == 1 else 's'} {', '.join(asked)}" if asked else ""]
    parts.append(f"judge{'' if len(judged) == 1 else 's'} {', '.join(judged)}" if judged else "")
    if default not in asked:
        parts.append(f"default {default} ({'not used' if asked else 'no model answered'})")
    return " · ".join(p for p in parts if p)


def outcome_counts(totals: Mapping[str, Any]) -> str:
    names = {"error": "errors"}
    parts = [f"{totals[names.get(o, o)]} {o}" for o in OUTCOMES if totals[names.get(o, o)]]
    return ", ".join(parts) or "nothing ran"


def host_lines(doc: Mapping[str, Any], figures: RunFigures) -> list[str]:
    """Traffic per host when more than one host served the run."""
    traffic = figures.traffic
    if len(doc["run"]["hosts"]) < 2 and len(traffic) < 2:
        return []
    lines = []
    for host in dict.fromkeys([*doc["run"]["hosts"], *traffic]):
        served = traffic.get(host)
        calls, workers = (served.calls, served.workers) if served else (0, set())
        on = f" ({', '.join(sorted(workers, key=_worker_order))})" if workers else ""
        lines.append(f"host {host}: {calls} calls{on}")
    return lines


def down_lines(doc: Mapping[str, Any]) -> list[str]:
    """One line per host that failed: what it cost (tests moved to other hosts of the
    pool, tests that errored), on which workers, and why."""
    lines = []
    for host, entry in doc["run"]["hosts_down"].items():
        moved, errored = entry.get("moved") or [], entry["tests"]
        cost = [f"{len(moved)} test(s) moved to other hosts of the pool"] if moved else []
        cost += [f"{errored} test(s) errored with {_DOWN}"] if errored else []
        on = f" on {', '.join(entry['workers'])}" if entry["workers"] else ""
        why = f" ({entry['reason']})" if entry.get("reason") else ""
        lines.append(
            f"HOST DOWN {host}: {', '.join(cost)}{on}{why}; "
            "start the server there or remove it from --llm-host"
        )
    return lines


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


def reask_lines(figures: RunFigures) -> list[str]:
    """One line per test that passed only after re-asks: ``nodeid: passed after 2 re-asks``."""
    return [f"{nodeid}: {mark}" for nodeid, mark in figures.reasked]


def sampling_lines(figures: RunFigures) -> list[str]:
    """The ``llm sampling`` section: one line per ``llm.sample`` call of the run."""
    return [
        f"{nodeid}: {'passed' if sample['passed'] else 'FAILED'}: {describe(sample)}"
        for nodeid, sample in figures.sampled
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


#: How many cases of a dataset the HTML and Markdown reports show (failed ones first).
CASE_ROWS = 200


def dataset_title(dataset: Mapping[str, Any]) -> str:
    """``dataset: 7/9 cases passed: accuracy 78% (95% CI 45%-94%), min_accuracy 80%: FAILED``."""
    return f"dataset: {describe_dataset(dataset)}: {'passed' if dataset['passed'] else 'FAILED'}"


def case_details(
    dataset: Mapping[str, Any], *, limit: int = CASE_ROWS
) -> list[tuple[Mapping[str, Any], list[tuple[str, str]]]]:
    """A dataset's cases, failed first (then in case order), at most ``limit``, each with
    its (title, text) blocks: for a failed case why (reason; expected and predicted for a
    labelled case), its output and its score; none for a passed case."""
    cases = sorted(dataset.get("results", []), key=lambda c: bool(c["passed"]))[:limit]
    shown: list[tuple[Mapping[str, Any], list[tuple[str, str]]]] = []
    for case in cases:
        blocks: list[tuple[str, str]] = []
        if not case["passed"]:
            if case.get("reason"):
                blocks.append(("why it failed", str(case["reason"])))
            if case.get("expected") is not None or case.get("predicted") is not None:
                expected, predicted = case.get("expected"), case.get("predicted")
                blocks.append(("label", f"expected {expected!r}, predicted {predicted!r}"))
            if case.get("output") is not None:
                blocks.append(("output", str(case["output"])))
            if case.get("score") is not None:
                blocks.append(("score", f"{float(case['score']):.2f}"))
        shown.append((case, blocks))
    return shown


def case_lines(dataset: Mapping[str, Any], *, limit: int = CASE_ROWS) -> list[str]:
    """One line per case, failed first: ``FAILED t3 [tiny] score 0.40: reason``."""
    lines = []
    for case, _ in case_details(dataset, limit=limit):
        verdict = "passed" if case["passed"] else "FAILED"
        model = f" [{case['model']}]" if case.get("model") else ""
        score = "" if case.get("score") is None else f" score {float(case['score']):.2f}"
        reason = f": {case['reason']}" if case.get("reason") and not case["passed"] else ""
        lines.append(f"{verdict} {case['id']}{model}{score}{reason}")
    hidden = len(dataset.get("results", [])) - limit
    if hidden > 0:
        lines.append(f"{hidden} more case(s) in the JSON report (--llm-report)")
    return lines


def test_details(test: Mapping[str, Any], *, cases: int = CASE_ROWS) -> list[tuple[str, str]]:
    """Why a test ended as it did, as (title, text) blocks for the HTML and Markdown reports:
    its failure message, its model calls, earlier runs' failures (reruns), its scores, its
    pass rates and its datasets (accuracy, confusion table, and one line per case for up to
    ``cases`` of them, failed first: the HTML report shows cases as rows instead). Texts are bounded
    when recorded; renderers escape them."""
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
    for dataset in test.get("datasets", []):
        lines = confusion_lines(dataset) + (case_lines(dataset, limit=cases) if cases else [])
        blocks.append((dataset_title(dataset), "\n".join(lines) or "each case is a row below"))
    return blocks


def summary_lines(
    doc: Mapping[str, Any], comparison: Comparison | None, figures: RunFigures | None = None
) -> list[tuple[str, str | None]]:
    """The ``llm summary`` section: (line, colour or None). ``figures`` are those of
    ``doc["tests"]``, when the caller kept them as the tests ended."""
    totals, run = doc["totals"], doc["run"]
    if figures is None:
        figures = RunFigures.over(doc["tests"])
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
    lines += [(line, None) for line in host_lines(doc, figures)]
    lines += [(line, "red") for line in down_lines(doc)]
    lines += [(line, "yellow") for line in reask_lines(figures)]
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
