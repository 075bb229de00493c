"""Figures over finished test records: per model, per run, per worker, the hosts that were
down, and the report document itself (:func:`build_report`). Pure functions: no pytest,
no I/O. They read test records as the report holds them (:class:`~.document.ReportedTest`,
or the same loaded back from a JSON file) and return the typed parts of
:mod:`~pytest_llm.report.document`."""

from __future__ import annotations

import math
import platform
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, cast

from ..errors import BackendUnreachable
from .document import (
    OUTCOMES,
    SCHEMA,
    HostDown,
    ModelFigures,
    Report,
    ReportedTest,
    Run,
    Totals,
    Worker,
)

__all__ = [
    "OUTCOMES",
    "SCHEMA",
    "build_report",
    "down_host",
    "hosts_down",
    "is_judge",
    "judges",
    "model_figures",
    "models_used",
    "percentile",
    "report_document",
    "run_totals",
    "scored",
    "tries",
    "versions",
    "worker_rows",
]

_DOWN = BackendUnreachable.__name__
_FAILING = ("failed", "error")
_VERSIONED = ("pytest", "pytest-llm", "pytest-xdist", "ollama", "httpx")


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


def is_judge(call: Mapping[str, Any]) -> bool:
    """Whether a call record is a judge's (``role: "judge"``): not part of a test's route."""
    return call.get("role") == "judge"


def _route(call: Mapping[str, Any]) -> list[str]:
    return list(call.get("route") or [call["model"]])


def _reasks(calls: Iterable[Mapping[str, Any]]) -> int:
    """Re-asks behind the accepted answers of ``calls`` (a failed call's are in its message)."""
    return sum(c.get("reasks", 0) for c in calls if c.get("success", True))


def _model_ms(call: Mapping[str, Any]) -> float:
    return float(call.get("total_duration_ms", call.get("duration_ms", 0.0)))


def model_figures(tests: Iterable[Mapping[str, Any]]) -> dict[str, ModelFigures]:
    """Per model: see ``models`` in the schema. Every attempt is charged to the model that
    made it: its requests, latency, tokens and retries (answers of that model after its
    first in a call); an escalation to the model that was moved on from. A model's tests
    are those whose route used it, and those that failed or errored before any answer
    from the model they were set to ask (``model``): a server that was down lowers the
    pass rate of the model nobody could ask."""
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
        route = test["route"] or (
            [test["model"]] if test.get("model") and test["outcome"] in _FAILING else []
        )
        for model in route:
            tested.setdefault(model, []).append(test["outcome"])
        for model, value in scored(test.get("scores", []), test["llm"]):
            model_scores.setdefault(model, []).append(value)
    figures: dict[str, ModelFigures] = {}
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


def run_totals(tests: Sequence[Mapping[str, Any]], wall_s: float) -> Totals:
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


def hosts_down(tests: Iterable[Mapping[str, Any]]) -> dict[str, HostDown]:
    """Hosts that failed, each once: why (``reason``, the first ``message``), the tests
    whose calls moved to other hosts of the pool (``moved``, sorted ids) and how many tests
    errored with it (``tests``, refused connections), on which ``workers``."""
    down: dict[str, HostDown] = {}

    def entry(host: str, message: str, reason: str | None) -> HostDown:
        return down.setdefault(
            host, {"tests": 0, "workers": [], "message": message, "reason": reason, "moved": []}
        )

    for test in tests:
        hit: list[str] = []
        for move in test.get("moved_from") or ():
            found = entry(move["host"], move["message"] or "", move["reason"])
            if test["outcome"] != "error" and test["nodeid"] not in found["moved"]:
                found["moved"].append(test["nodeid"])
            hit.append(move["host"])
        host = down_host(test["error"], test["host"])
        for each in host.split(",") if host is not None else ():  # every host of a pool
            found = entry(each, test["error"]["message"], "refused the connection")
            found["tests"] += 1
            hit.append(each)
        for each in dict.fromkeys(hit):
            workers = down[each]["workers"]
            if test["worker"] and test["worker"] not in workers:
                workers.append(test["worker"])
    for found in down.values():
        found["workers"].sort()
        found["moved"].sort()
    return down


def worker_rows(tests: Iterable[Mapping[str, Any]], hosts: Mapping[str, str]) -> list[Worker]:
    """``run.workers``: for each xdist worker that ended its session (``hosts``: the host
    each was given, from its ``workeroutput``), its share of the tests."""
    by_worker: dict[str, list[Mapping[str, Any]]] = {worker: [] for worker in hosts}
    for test in tests:
        if test["worker"] in by_worker:
            by_worker[test["worker"]].append(test)
    rows: list[Worker] = []
    for worker in sorted(by_worker, key=_worker_order):
        totals = run_totals(by_worker[worker], wall_s=0.0)
        rows.append(
            {
                "id": worker,
                "host": hosts[worker],
                "tests": totals["tests"],
                "llm_tests": totals["llm_tests"],
                "calls": totals["calls"],
                "model_ms": totals["model_ms"],
            }
        )
    return rows


def build_report(
    tests: Sequence[Mapping[str, Any]],
    *,
    run: Mapping[str, Any],
    ladder: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`report_document` as a plain dict (for callers that edit the document)."""
    return dict(report_document(tests, run=run, ladder=ladder))


def report_document(
    tests: Sequence[Mapping[str, Any]],
    *,
    run: Mapping[str, Any],
    ladder: Mapping[str, Any] | None = None,
) -> Report:
    """The report document from finished test records, the run metadata and the ladder."""
    return {
        "schema": SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "run": cast(Run, dict(run)),
        "totals": run_totals(tests, run["wall_s"]),
        "models": model_figures(tests),
        "tests": [cast(ReportedTest, test) for test in tests],
        "ladder": None if ladder is None else dict(ladder),
    }


def models_used(doc: Mapping[str, Any]) -> list[str]:
    """The models that answered a call of the run (judges included), in name order."""
    return [model for model, figures in doc["models"].items() if figures["calls"]]


def judges(doc: Mapping[str, Any]) -> list[str]:
    """The models that judged answers in the run (``llm_judge``, ``judge()``)."""
    return sorted({model for test in doc["tests"] for model in test.get("judges", [])})


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _worker_order(worker_id: str | None) -> tuple[int, str]:
    """``gw2`` before ``gw10``."""
    text = worker_id or ""
    number = text[2:]
    return (int(number), text) if text.startswith("gw") and number.isdigit() else (-1, text)
