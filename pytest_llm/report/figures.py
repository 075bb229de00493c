"""Figures over finished test records: per model, per run, per worker, the hosts that were
down, and the report document itself (:func:`build_report`). Pure functions: no pytest,
no I/O. They read test records as the report holds them (:class:`~.document.ReportedTest`,
or the same loaded back from a JSON file) and return the typed parts of
:mod:`~pytest_llm.report.document`."""

from __future__ import annotations

import math
import platform
from array import array
from collections import defaultdict
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
    "RunFigures",
    "build_report",
    "down_host",
    "hosts_down",
    "is_judge",
    "judges",
    "model_figures",
    "models_used",
    "percentile",
    "reask_mark",
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


class _Sum:
    """A running sum that is unknown (None) once one of its values is (``_sum_known``)."""

    __slots__ = ("total", "unknown")

    def __init__(self) -> None:
        self.total: Any = 0
        self.unknown = False

    def add(self, value: float | None) -> None:
        if value is None:
            self.unknown = True
        else:
            self.total += value or 0  # as _sum_known: 0.0 counts as 0

    @property
    def value(self) -> Any:
        return None if self.unknown else self.total


class _Model:
    """One model's running figures (see :func:`model_figures`)."""

    __slots__ = (
        "cached",
        "calls",
        "decodes",
        "durations",
        "escalations",
        "passed",
        "queues",
        "retries",
        "score_sum",
        "scores",
        "servers",
        "tests",
        "tokens_in",
        "tokens_out",
        "ttfts",
    )

    def __init__(self) -> None:
        self.tests = self.passed = self.calls = self.scores = 0
        self.score_sum: float = 0
        self.retries = self.escalations = self.cached = self.tokens_out = 0
        self.tokens_in = _Sum()
        # the answered attempts' figures, 8 bytes each: the percentiles need every value
        self.durations, self.ttfts = array("d"), array("d")
        self.servers, self.queues, self.decodes = array("d"), array("d"), array("d")

    def figures(self) -> ModelFigures:
        return {
            "tests": self.tests,
            "passed": self.passed,
            "pass_rate": round(self.passed / self.tests, 4) if self.tests else None,
            "calls": self.calls,
            "mean_score": round(self.score_sum / self.scores, 4) if self.scores else None,
            "p50_ms": percentile(self.durations, 50),
            "p95_ms": percentile(self.durations, 95),
            "p50_ttft_ms": percentile(self.ttfts, 50),
            "p50_server_ms": percentile(self.servers, 50),
            "p50_queue_ms": percentile(self.queues, 50),
            "p50_decode_ms": percentile(self.decodes, 50),
            "tokens_in": self.tokens_in.value,
            "tokens_out": self.tokens_out,
            "retries": self.retries,
            "escalations": self.escalations,
            "cached": self.cached,
        }


class _Share:
    """One xdist worker's share of the tests (``run.workers``)."""

    __slots__ = ("calls", "llm_tests", "model_ms", "tests")

    def __init__(self) -> None:
        self.tests = self.llm_tests = self.calls = 0
        self.model_ms: float = 0


class _Traffic:
    """What one host served (the summary's ``host`` lines): calls, and on which workers."""

    __slots__ = ("calls", "workers")

    def __init__(self) -> None:
        self.calls = 0
        self.workers: set[str] = set()


class RunFigures:
    """The run's figures kept as tests end (:meth:`add`), without keeping the tests: counts,
    sums and, for the percentiles, each answer's timings in ``array("d")`` (8 bytes a
    value). :func:`run_totals`, :func:`model_figures`, :func:`hosts_down` and
    :func:`worker_rows` are these figures over a list of tests, so a report written as
    its tests end and one built from a list (a merge) have the same figures."""

    def __init__(self) -> None:
        self.tests = self.llm_tests = self.rung_failed = self.reruns = 0
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.calls = self.requests = self.tokens_out = self.retries = 0
        self.escalations = self.cached = self.reasks = self.live = 0
        self.tokens_in, self.server_ms, self.queue_ms = _Sum(), _Sum(), _Sum()
        self.model_ms: float = 0
        self._models: defaultdict[str, _Model] = defaultdict(_Model)
        self._down: dict[str, HostDown] = {}
        self._moved: dict[str, set[str]] = {}
        self._shares: defaultdict[str, _Share] = defaultdict(_Share)
        # what the terminal's summary lists of the tests, so that it reads none back
        #: Per host, its calls and workers.
        self.traffic: defaultdict[str, _Traffic] = defaultdict(_Traffic)
        #: The tests that passed only after re-asks or reruns: nodeid, :func:`reask_mark`.
        self.reasked: list[tuple[str, str]] = []
        #: Every ``llm.sample`` call of the run, with its test's nodeid.
        self.sampled: list[tuple[str, Mapping[str, Any]]] = []

    @classmethod
    def over(cls, tests: Iterable[Mapping[str, Any]]) -> RunFigures:
        figures = cls()
        for test in tests:
            figures.add(test)
        return figures

    def add(self, test: Mapping[str, Any]) -> None:
        """Count one finished test (a ``tests[]`` record)."""
        calls: Sequence[Mapping[str, Any]] = test["llm"]
        outcome = test["outcome"]
        self.tests += 1
        llm_test = bool(calls) or test["error"] is not None
        self.llm_tests += llm_test
        if outcome in self.outcomes:
            self.outcomes[outcome] += 1
        self.rung_failed += bool(test.get("rung_failed"))
        self.reruns += test.get("reruns", 0)
        worker = test["worker"]
        share = self._shares[worker] if worker else None
        for call in calls:
            self._add_call(call)
            ms = _model_ms(call)
            self.model_ms += ms  # call by call, in order: the same sum as over a list
            if share is not None:
                share.model_ms += ms
        route = test["route"] or (
            [test["model"]] if test.get("model") and outcome in _FAILING else []
        )
        for model in route:
            figures = self._models[model]
            figures.tests += 1
            figures.passed += outcome == "passed"
        for model, value in scored(test.get("scores", []), calls):
            figures = self._models[model]
            figures.score_sum += value
            figures.scores += 1
        self._add_down(test)
        self._add_listed(test, len(calls))
        if share is not None:
            share.tests += 1
            share.llm_tests += llm_test
            share.calls += len(calls)

    def _add_listed(self, test: Mapping[str, Any], calls: int) -> None:
        nodeid = test["nodeid"]
        if test["host"] and calls:
            traffic = self.traffic[test["host"]]
            traffic.calls += calls
            if test["worker"]:
                traffic.workers.add(test["worker"])
        mark = reask_mark(test)
        if mark is not None:
            self.reasked.append((nodeid, mark))
        self.sampled += ((nodeid, sample) for sample in test.get("samples", ()))

    def _add_call(self, call: Mapping[str, Any]) -> None:
        self.calls += 1
        self.tokens_in.add(_tokens_in(call))
        self.tokens_out += _tokens_out(call)
        self.retries += call.get("retries", 0)
        route = _route(call)
        self.escalations += len(route) > 1
        self.cached += bool(call.get("cached"))
        if call.get("success", True):
            self.reasks += call.get("reasks", 0)
        per_model: dict[str, int] = {}
        for attempt in tries(call):
            self.requests += 1
            name = attempt["model"]
            per_model[name] = per_model.get(name, 0) + 1
            figures = self._models[name]
            figures.calls += 1
            figures.cached += bool(attempt.get("cached"))
            if attempt.get("rejected") == "transport":
                continue
            duration, ttft = attempt["duration_ms"], attempt.get("ttft_ms")
            figures.durations.append(duration)
            if ttft is not None:
                figures.ttfts.append(float(ttft))
                figures.decodes.append(max(duration - ttft, 0.0))
            for key, values in (("server_ms", figures.servers), ("queue_ms", figures.queues)):
                if attempt.get(key) is not None:
                    values.append(float(attempt[key]))
            figures.tokens_in.add(attempt.get("tokens_in", 0))
            figures.tokens_out += attempt.get("tokens_out", 0)
            if not attempt.get("cached"):
                self.live += 1
                server = attempt.get("server_ms")
                self.server_ms.add(
                    None if server is None else server + float(attempt.get("load_ms") or 0.0)
                )
                self.queue_ms.add(attempt.get("queue_ms"))
        for name, count in per_model.items():
            self._models[name].retries += count - 1
        for name in route[:-1]:
            self._models[name].escalations += 1

    def _add_down(self, test: Mapping[str, Any]) -> None:
        def entry(host: str, message: str, reason: str | None) -> HostDown:
            found = self._down.get(host)
            if found is None:
                found = self._down[host] = {
                    "tests": 0,
                    "workers": [],
                    "message": message,
                    "reason": reason,
                    "moved": [],
                }
                self._moved[host] = set()
            return found

        hit: list[str] = []
        for move in test.get("moved_from") or ():
            found = entry(move["host"], move["message"] or "", move["reason"])
            moved = self._moved[move["host"]]
            if test["outcome"] != "error" and test["nodeid"] not in moved:
                moved.add(test["nodeid"])
                found["moved"].append(test["nodeid"])
            hit.append(move["host"])
        host = down_host(test["error"], test["host"])
        for each in host.split(",") if host is not None else ():  # every host of a pool
            found = entry(each, test["error"]["message"], "refused the connection")
            found["tests"] += 1
            hit.append(each)
        for each in dict.fromkeys(hit):
            workers = self._down[each]["workers"]
            if test["worker"] and test["worker"] not in workers:
                workers.append(test["worker"])

    def totals(self, wall_s: float) -> Totals:
        """``totals``: see the schema (and :func:`run_totals`)."""
        live, server_ms, queue_ms = self.live, self.server_ms.value, self.queue_ms.value
        return {
            "tests": self.tests,
            "llm_tests": self.llm_tests,
            "passed": self.outcomes["passed"],
            "failed": self.outcomes["failed"],
            "errors": self.outcomes["error"],
            "skipped": self.outcomes["skipped"],
            "xfailed": self.outcomes["xfailed"],
            "xpassed": self.outcomes["xpassed"],
            "flagged": self.outcomes["flagged"],
            "rung_failed": self.rung_failed,
            "reruns": self.reruns,
            "calls": self.calls,
            "requests": self.requests,
            "tokens_in": self.tokens_in.value,
            "tokens_out": self.tokens_out,
            "retries": self.retries,
            "escalations": self.escalations,
            "cached": self.cached,
            "reasks": self.reasks,
            "model_ms": round(self.model_ms, 3),
            "server_ms": None if not live or server_ms is None else round(server_ms, 3),
            "queue_ms": None if not live or queue_ms is None else round(queue_ms, 3),
            "parallelism": (
                round(server_ms / 1000 / wall_s, 3) if wall_s > 0 and live and server_ms else None
            ),
        }

    def models(self) -> dict[str, ModelFigures]:
        """``models``: see the schema (and :func:`model_figures`), in name order."""
        return {
            name: figures.figures()
            for name, figures in sorted(self._models.items())
            if figures.tests or figures.calls  # a model only scored or escalated from is not
        }

    def hosts_down(self) -> dict[str, HostDown]:
        """``run.hosts_down`` (see :func:`hosts_down`)."""
        return {
            host: {**found, "workers": sorted(found["workers"]), "moved": sorted(found["moved"])}
            for host, found in self._down.items()
        }

    def workers(self, hosts: Mapping[str, str]) -> list[Worker]:
        """``run.workers`` for the workers that ended their session (see :func:`worker_rows`)."""
        rows: list[Worker] = []
        for worker in sorted(hosts, key=_worker_order):
            share = self._shares.get(worker) or _Share()
            rows.append(
                {
                    "id": worker,
                    "host": hosts[worker],
                    "tests": share.tests,
                    "llm_tests": share.llm_tests,
                    "calls": share.calls,
                    "model_ms": round(share.model_ms, 3),
                }
            )
        return rows


def model_figures(tests: Iterable[Mapping[str, Any]]) -> dict[str, ModelFigures]:
    """Per model: see ``models`` in the schema. Every attempt is charged to the model that
    made it: its requests, latency, tokens and retries (answers of that model after its
    first in a call); an escalation to the model that was moved on from. A model's tests
    are those whose route used it, and those that failed or errored before any answer
    from the model they were set to ask (``model``): a server that was down lowers the
    pass rate of the model nobody could ask."""
    return RunFigures.over(tests).models()


def run_totals(tests: Iterable[Mapping[str, Any]], wall_s: float) -> Totals:
    """Session totals: see ``totals`` in the schema. ``parallelism`` is the server's busy
    time (its own durations of the live answers) over the wall time: what the wall clock
    shows, never the client's time, which counts the wait for a slot as model time."""
    return RunFigures.over(tests).totals(wall_s)


def down_host(error: Mapping[str, Any] | None, host: str | None) -> str | None:
    """The host a test's infrastructure ``error`` says refused connections, if it does."""
    if error is None or error["type"] != _DOWN:
        return None
    return str(error["host"] or host or "?")


def hosts_down(tests: Iterable[Mapping[str, Any]]) -> dict[str, HostDown]:
    """Hosts that failed, each once: why (``reason``, the first ``message``), the tests
    whose calls moved to other hosts of the pool (``moved``, sorted ids) and how many tests
    errored with it (``tests``, refused connections), on which ``workers``."""
    return RunFigures.over(tests).hosts_down()


def worker_rows(tests: Iterable[Mapping[str, Any]], hosts: Mapping[str, str]) -> list[Worker]:
    """``run.workers``: for each xdist worker that ended its session (``hosts``: the host
    each was given, from its ``workeroutput``), its share of the tests."""
    return RunFigures.over(tests).workers(hosts)


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
    figures: RunFigures | None = None,
) -> Report:
    """The report document from finished test records, the run metadata and the ladder;
    ``figures`` are those of ``tests`` when the caller kept them as the tests ended."""
    if figures is None:
        figures = RunFigures.over(tests)
    return {
        "schema": SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "run": cast(Run, dict(run)),
        "totals": figures.totals(run["wall_s"]),
        "models": figures.models(),
        "tests": cast(Sequence[ReportedTest], tests),
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
