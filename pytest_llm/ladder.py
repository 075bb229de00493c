"""The model ladder: every test that uses ``llm`` runs once per model, smallest first, and
the run says which is the smallest model that passes each test and the whole suite.

``--llm-models=a,b,c`` (ini ``llm_models``; marker ``@pytest.mark.llm(models=[...])`` for
a test, class or module) turns each such test into one ordinary item per model, its id
ending in ``[model]``, so ``-k``, ``--lf``, xdist and JUnit work as usual. A test whose
marker pins ``model=`` is not multiplied unless a marker also gives ``models``.

Failing on a small model is what a ladder is for, so by default a rung that fails is
reported as ``rung-failed`` (its report stays a failure: JUnit, ``--lf`` and the reports
see it) and the run fails only when some test passes on no model of its ladder.
``--llm-ladder-require=MODEL`` makes every rung of MODEL count like a plain test;
``--llm-ladder-strict`` makes every rung count.

:class:`LadderSession` (a plugin object on the process that prints the summary) gathers
the rungs from the test reports (``user_properties`` entry ``llm_rung``), decides the exit
status, prints the ``llm ladder`` section and hands the ``ladder`` part of the JSON report.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from . import properties
from .errors import ConfigError, LLMError

__all__ = [
    "LADDERED",
    "LADDER_KEYS",
    "PROPERTY",
    "LadderOptions",
    "LadderSession",
    "grid",
    "ladder_of",
    "rung_of",
    "split_models",
]

#: The fixtures a ladder parametrizes (indirectly) with the rung's model: the first of
#: them that the test uses. A fixture of its own would cost every test of every run, ladder
#: or not, its setup and teardown.
LADDERED = ("llm", "llm_proxy")
#: The ``user_properties`` name of a rung: ``{"test", "model", "ladder"}``.
PROPERTY = properties.RUNG
_MODULE_PATH = re.compile(r"^(?:[a-z_][a-z0-9_]*\.)+(?=[A-Z]\w*:)")
#: How a ladder is ordered (``--llm-ladder-order``).
ORDERS = ("given", "size")
#: ``(parameter_size, quantization_level)`` of a model as its server tells, or ``None``.
Sizer = Callable[[str], "tuple[str, str] | None"]
#: Marker keywords that shape the ladder rather than a call.
LADDER_KEYS = ("models",)


def split_models(text: str | Sequence[str], source: str) -> tuple[str, ...]:
    """``"a, b"`` or ``["a", "b"]`` → ``("a", "b")``; duplicates and empty names are errors."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else list(text)
    if not names or any(not isinstance(n, str) or not n.strip() for n in names):
        raise ConfigError(
            f"{source}={text!r} is invalid: expected model names, smallest first, e.g. "
            "models=['smollm2:135m', 'qwen2.5:3b'] or --llm-models=smollm2:135m,qwen2.5:3b"
        )
    names = [n.strip() for n in names]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}={text!r} names a model twice")
    return tuple(names)


@dataclass(frozen=True, kw_only=True)
class LadderOptions:
    """The session's ladder: models (option > ini) and how failing rungs count."""

    models: tuple[str, ...] = ()
    require: str | None = None
    strict: bool = False
    order: str = "given"
    """``given``, or ``size``: by parameter count from the server, quantisation breaking ties."""
    sharded: bool = False
    """The run is one group of pytest-split (``--splits``): a test's other rungs may run in
    other shards, so a test this shard ran only some rungs of is judged by the merge."""

    @classmethod
    def from_config(cls, config: pytest.Config) -> LadderOptions:
        option = config.getoption("llm_models")
        ini = config.getini("llm_models")
        raw, source = (option, "--llm-models") if option else (ini, "ini llm_models")
        models = split_models(raw, source) if raw else ()
        order = config.getoption("llm_ladder_order") or "given"
        if order not in ORDERS:
            raise ConfigError(
                f"--llm-ladder-order={order!r} is invalid: expected one of {', '.join(ORDERS)}"
            )
        return cls(
            models=models,
            require=config.getoption("llm_ladder_require") or None,
            strict=bool(config.getoption("llm_ladder_strict")),
            order=order,
            sharded=(getattr(config.option, "splits", None) or 0) > 1,
        )

    def counts(self, model: str) -> bool:
        """Whether a failing rung of ``model`` fails the run like a plain test."""
        return self.strict or model == self.require


def ladder_of(node: pytest.Item | Any, options: LadderOptions) -> tuple[str, ...]:
    """The models ``node`` runs on: its closest ``models=`` marker, else the session's
    ladder unless a marker pins ``model=``; ``()`` for no ladder."""
    markers = list(node.iter_markers("llm"))
    for marker in markers:  # closest first
        if "models" in marker.kwargs:
            return split_models(marker.kwargs["models"], "@pytest.mark.llm(models=...)")
    if any("model" in marker.kwargs for marker in markers):
        return ()
    return options.models


def rung_of(item: pytest.Item) -> str | None:
    """The model of ``item``'s rung of the ladder; ``None`` when it is on none."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    for name in LADDERED:
        model: str | None = callspec.params.get(name)
        if model is not None:
            return model
    return None


def call_settings(markers: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Marker keywords without the ladder's own (which are not call settings)."""
    return [{k: v for k, v in m.items() if k not in LADDER_KEYS} for m in markers]


@dataclass
class Rung:
    """One test on one model, as the reports tell it."""

    test: str
    model: str
    ladder: tuple[str, ...]
    size: tuple[str, str] | None = None  # (parameter_size, quantization_level), if known
    outcome: str = "passed"  # passed, failed, error, flagged, skipped
    reason: str = ""
    scores: list[float] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)

    @property
    def score(self) -> float | None:
        return statistics.fmean(self.scores) if self.scores else None

    @property
    def p50_ms(self) -> float | None:
        return statistics.median(self.durations) if self.durations else None


class LadderSession:
    """The run's ladder: rungs from the reports, the verdict, the exit status."""

    def __init__(self, options: LadderOptions, *, worker: bool, sizer: Sizer | None = None) -> None:
        self.options = options
        self.worker = worker
        self.rungs: dict[tuple[str, str], Rung] = {}
        self.other_failures = 0
        self.sizes: dict[str, tuple[str, str] | None] = {}
        self._sizer = sizer

    @classmethod
    def from_documents(cls, parts: Iterable[Mapping[str, Any]]) -> LadderSession:
        """The ladder of a run made of shards (:mod:`pytest_llm.report.merge`), from the ``ladder``
        part of each shard's report: each rung ran in one shard, and its entry keeps what
        :meth:`document` is computed from (its ladder, scores and call times)."""
        session = cls(LadderOptions(), worker=False)
        for part in parts:
            sizes = part.get("sizes") or {}
            for test, entry in (part.get("tests") or {}).items():
                for r in entry["rungs"]:
                    size = sizes.get(r["model"])
                    session.rungs[test, r["model"]] = Rung(
                        test=test,
                        model=r["model"],
                        ladder=tuple(r["ladder"]),
                        size=(str(size[0]), str(size[1])) if size else None,
                        outcome=r["outcome"],
                        reason=r.get("reason") or "",
                        scores=[float(v) for v in r["scores"]],
                        durations=[float(v) for v in r["durations_ms"]],
                    )
        return session

    def ordered(self, models: tuple[str, ...]) -> tuple[str, ...]:
        """``models`` as given, or smallest first by the server's parameter size
        (``--llm-ladder-order=size``); models of unknown size keep their place at the end."""
        if self.options.order != "size" or self._sizer is None:
            return models
        for model in models:
            if model not in self.sizes:
                try:
                    self.sizes[model] = self._sizer(model)
                except LLMError:  # the server is down or cannot tell: as given
                    self.sizes[model] = None
        known = [m for m in models if self.sizes[m] is not None]
        unknown = [m for m in models if self.sizes[m] is None]
        return (*sorted(known, key=lambda m: _size_key(self.sizes[m])), *unknown)

    # --- hooks -------------------------------------------------------------------------

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        rung = self._rung(report)
        if report.failed and not getattr(report, "llm_rung_failed", False):
            self.other_failures += 1
        if rung is None:
            return
        if report.failed:
            infra = getattr(report, "llm_infrastructure", False)
            rung.outcome = "error" if report.when != "call" or infra else "failed"
            rung.reason = _first_line(report)
        elif report.skipped and rung.outcome == "passed":
            rung.outcome = "skipped"
        elif getattr(report, "llm_flagged", None) and rung.outcome == "passed":
            rung.outcome, rung.reason = "flagged", str(report.llm_flagged)
        if report.when == "teardown":
            for name, value in report.user_properties:
                if name == "llm":
                    for record in json.loads(str(value)):
                        if record.get("model") != rung.model:
                            continue  # a judge's or escalation's call
                        rung.durations.append(float(record.get("duration_ms") or 0))
                        if record.get("score") is not None:
                            rung.scores.append(float(record["score"]))

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """A run whose only failures are rungs of tests that pass on another model passes.

        A plain hook, registered after the run report's: pluggy calls it after syrupy's
        (``tryfirst``, which ORs pytest's own status back in) and before the report's
        baseline gate (:mod:`pytest_llm.report`), which can still fail the run after it."""
        if self.worker or not self.rungs:
            return
        failed = session.exitstatus == pytest.ExitCode.TESTS_FAILED
        if failed and not self.other_failures and not self.unpassed():
            session.exitstatus = pytest.ExitCode.OK

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.worker or not self.rungs:
            return
        terminalreporter.write_sep("=", "llm ladder")
        for line, color in self.lines():
            terminalreporter.write_line(line, **({color: True} if color else {}))

    # --- the verdict -------------------------------------------------------------------

    def tests(self) -> dict[str, list[Rung]]:
        """Each test's rungs, in ladder order."""
        out: dict[str, list[Rung]] = {}
        for rung in self.rungs.values():
            out.setdefault(rung.test, []).append(rung)
        for rungs in out.values():
            rungs.sort(key=lambda r: r.ladder.index(r.model))
        return dict(sorted(out.items()))

    def unpassed(self) -> list[str]:
        """Tests that passed on no model of their ladder (they fail the run). In a shard, a
        test whose other rungs ran elsewhere is left to the merge of the shards' reports
        (``python -m pytest_llm merge``), which sees every rung."""
        return [
            test
            for test, rungs in self.tests().items()
            if not any(r.outcome in ("passed", "flagged") for r in rungs)
            and not all(r.outcome == "skipped" for r in rungs)
            and not (self.options.sharded and len(rungs) < len(rungs[0].ladder))
        ]

    def document(self) -> dict[str, Any]:
        """The ``ladder`` part of the JSON report."""
        tests = self.tests()
        models = self._models()
        per_test = {}
        for test, rungs in tests.items():
            smallest = _smallest(rungs)
            per_test[test] = {
                "smallest_passing": smallest,
                "rungs": [
                    {
                        "model": r.model,
                        "outcome": r.outcome,
                        "score": r.score,
                        "p50_ms": r.p50_ms,
                        "reason": r.reason or None,
                        "ladder": list(r.ladder),
                        "scores": list(r.scores),
                        "durations_ms": list(r.durations),
                    }
                    for r in rungs
                ],
            }
        passes = {m: self._passes(tests, m) for m in models}
        sufficient = next((m for m in models if passes[m][0] == passes[m][1]), None)
        largest = models[-1] if models else None
        return {
            "models": list(models),
            "sizes": {m: self._size(m) for m in models},
            "passes": {m: {"passed": p, "tests": n} for m, (p, n) in passes.items()},
            "smallest_sufficient": sufficient,
            "needs_largest": [
                t
                for t, entry in per_test.items()
                if largest and entry["smallest_passing"] == largest
            ],
            "speedup": self._speedup(sufficient, largest),
            "tests": per_test,
            "verdict": self.verdict(),
        }

    def verdict(self) -> str:
        """The sentence a person acts on."""
        tests = self.tests()
        models = self._models()
        if not models:
            return "no ladder ran"
        parts = []
        sufficient = None
        for model in models:
            passed, total = self._passes(tests, model)
            parts.append(f"{model} passes {passed}/{total}")
            if passed == total and sufficient is None:
                sufficient = model
                break
        largest = models[-1]
        if sufficient is None:
            best = max(models, key=lambda m: self._passes(tests, m)[0])  # the smallest on ties
            on_none = [t for t, rungs in tests.items() if _smallest(rungs) is None]
            return "; ".join(parts) + (
                f": no model passes every test; {best} passes the most; "
                f"{len(on_none)} test(s) pass on none: {_listed(on_none)}"
            )
        speed = self._speedup(sufficient, largest)
        if speed is not None and sufficient != largest:
            parts[-1] += f" at {speed:.1f}x the speed of {largest}"
        needing = [
            t
            for t, rungs in tests.items()
            if _smallest(rungs) == sufficient and sufficient != models[0]
        ]
        sentence = "; ".join(parts) + f": the smallest model for this suite is {sufficient}"
        if needing:
            sentence += f"; the {len(needing)} test(s) that need it: {_listed(needing)}"
        return sentence

    def lines(self) -> list[tuple[str, str | None]]:
        """The ``llm ladder`` section: a test x model grid, failures on every model, verdict."""
        document = self.document()
        header, rows = grid(document)
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

        out: list[tuple[str, str | None]] = [(line(header), None)]
        out += [(line(row), "red" if row[-1] == "none" else None) for row in rows]
        tests = self.tests()
        for test in self.unpassed():  # these fail the run
            reasons = "; ".join(f"{r.model}: {r.reason}" for r in tests[test] if r.reason)
            out.append((f"FAILED on every model: {test} ({reasons})", "red"))
        out.append((document["verdict"], "bold"))
        return out

    # --- internals ---------------------------------------------------------------------

    def _rung(self, report: pytest.TestReport) -> Rung | None:
        for name, value in report.user_properties:
            if name == PROPERTY:
                data = json.loads(str(value))
                key = (data["test"], data["model"])
                rung = self.rungs.get(key)
                if rung is None:
                    size = data.get("size")
                    rung = Rung(
                        test=data["test"],
                        model=data["model"],
                        ladder=tuple(data["ladder"]),
                        size=(str(size[0]), str(size[1])) if size else None,
                    )
                    self.rungs[key] = rung
                return rung
        return None

    def _models(self) -> list[str]:
        """Every model of the run's ladders, in ladder order (as the rungs ran it: given, or by
        size), the longest ladder first."""
        order: list[str] = []
        for rung in sorted(self.rungs.values(), key=lambda r: -len(r.ladder)):
            for model in rung.ladder:
                if model not in order:
                    order.append(model)
        seen = {r.model for r in self.rungs.values()}
        return [m for m in order if m in seen]

    def _size(self, model: str) -> list[str] | None:
        size = next((r.size for r in self.rungs.values() if r.model == model and r.size), None)
        return list(size) if size else None

    @staticmethod
    def _passes(tests: Mapping[str, list[Rung]], model: str) -> tuple[int, int]:
        ran = [r for rungs in tests.values() for r in rungs if r.model == model]
        counted = [r for r in ran if r.outcome != "skipped"]
        return sum(r.outcome == "passed" for r in counted), len(counted)

    def _speedup(self, small: str | None, large: str | None) -> float | None:
        """How many times faster ``small`` answers than ``large`` (median call time)."""
        if small is None or large is None:
            return None
        times = {
            m: [d for r in self.rungs.values() if r.model == m for d in r.durations if d > 0]
            for m in (small, large)
        }
        if not times[small] or not times[large]:
            return None
        return statistics.median(times[large]) / statistics.median(times[small])


_UNITS = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMBT])", re.IGNORECASE)


def _size_key(size: tuple[str, str] | None) -> tuple[float, float]:
    """``("135M", "Q8_0")`` → ``(1.35e8, 8)``: parameters, then bits of the quantisation."""
    if size is None:
        return (float("inf"), float("inf"))
    params, quantization = size
    match = _SIZE.search(params)
    count = float(match.group(1)) * _UNITS[match.group(2).upper()] if match else float("inf")
    bits = re.search(r"\d+", quantization or "")
    return (count, float(bits.group()) if bits else float("inf"))


def _listed(tests: Sequence[str], shown: int = 5) -> str:
    more = f" and {len(tests) - shown} more" if len(tests) > shown else ""
    return ", ".join(tests[:shown]) + more


def _smallest(rungs: Sequence[Rung]) -> str | None:
    return next((r.model for r in rungs if r.outcome == "passed"), None)


def grid(document: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The ladder as a test x model table, from the report's ``ladder`` part: each cell the
    rung's outcome, score and median call time; the last column the smallest passing model.
    The terminal section, the HTML and the Markdown summary all show this one table."""
    models = list(document.get("models") or [])
    rows = []
    for test, entry in (document.get("tests") or {}).items():
        by_model = {r["model"]: r for r in entry["rungs"]}
        cells = [_cell(by_model[m]) if m in by_model else "-" for m in models]
        flagged = all(r["outcome"] == "flagged" for r in entry["rungs"])
        smallest = entry["smallest_passing"] or ("none (flagged)" if flagged else "none")
        rows.append([test, *cells, smallest])
    return ["test", *models, "smallest passing"], rows


def _cell(rung: Mapping[str, Any]) -> str:
    score = "" if rung.get("score") is None else f" {rung['score']:.2f}"
    p50 = "" if rung.get("p50_ms") is None else f" {rung['p50_ms']:.0f}ms"
    return f"{rung['outcome']}{score}{p50}"


def _first_line(report: pytest.TestReport) -> str:
    text = getattr(report, "longreprtext", "") or ""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("E ")]
    line = lines[0][1:].strip() if lines else (text.strip().splitlines() or [""])[-1]
    line = _MODULE_PATH.sub("", line)  # pytest_llm.errors.ScoreTooLow: → ScoreTooLow:
    return line if len(line) <= 160 else line[:157] + "..."
