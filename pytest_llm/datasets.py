"""Datasets: cases from files or lists, and one test that evaluates them all at once.

:func:`load_cases` reads a JSONL, CSV or YAML file (or a list of mappings in code) into
:class:`Case` objects, each with an ``id`` (from a field, or ``row<N>``) and its ``vars``.
They feed ``pytest.mark.parametrize`` (:func:`cases_param`: one test per case) or
:meth:`pytest_llm.Harness.evaluate` (one test for the whole dataset, every case in flight
at once up to ``concurrency``, each reported as its own subtest, the accuracy gated by
``min_accuracy``). :class:`DatasetResult` holds what ``evaluate`` found: per-case
outcomes, the accuracy with its 95% Wilson interval and, for cases with an expected
label, a confusion table with per-label precision and recall.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import properties
from ._text import shorten
from .errors import ConfigError
from .sampling import required_passes, wilson_interval

if TYPE_CHECKING:
    from _pytest.mark.structures import ParameterSet

    from .result import LLMResult

__all__ = [
    "Case",
    "CaseResult",
    "DatasetResult",
    "cases_param",
    "judge_case",
    "load_cases",
    "normalize_label",
    "render_prompt",
]

#: The ``user_properties`` name under which a dataset test's summary travels.
PROPERTY = properties.DATASETS
#: How many failed cases a failure message shows (the rest are counted).
SHOWN_FAILURES = 10
_SHOWN = 300
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".yaml": "yaml", ".yml": "yaml"}


@dataclass(frozen=True)
class Case:
    """One case of a dataset: its ``id`` and its values (``vars``), and where it came from."""

    id: str
    vars: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False)
    """``file:line`` of the row, for messages (``None`` for cases made in code)."""

    def __getitem__(self, name: str) -> Any:
        return self.vars[name]

    def __repr__(self) -> str:  # parametrize shows it in -v output and failures: keep it short
        return f"Case({self.id!r})"


def load_cases(
    source: str | Path | Iterable[Mapping[str, Any] | Case],
    *,
    id: str | None = None,
    required: Sequence[str] = (),
) -> list[Case]:
    """The cases of a JSONL, CSV or YAML file (by suffix), or of a list of mappings.

    ``id`` names the field that holds each case's id; without it the id is the row's
    number (``row1``, ``row2``, ...). ``required`` names fields every case must have. A
    relative path is read from the directory of the module that calls this (the test
    module), whatever the working directory. YAML is read with ``yaml.safe_load`` only: a
    list of mappings. Bad input is a :class:`~pytest_llm.ConfigError` naming the file, the
    line and the fix: a malformed row, a missing field, a duplicate id.
    """
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_absolute():
            path = _caller_dir() / path
        rows = _read(path)
        name = str(source)
    else:
        rows = []
        for n, item in enumerate(source, 1):
            if isinstance(item, Case):
                rows.append((None, {"__case__": item}))
            elif isinstance(item, Mapping):
                rows.append((None, dict(item)))
            else:
                raise ConfigError(
                    f"case {n} of the list is {type(item).__name__}, not a mapping: give "
                    "dicts of the case's fields (or Case objects)"
                )
        name = "the list of cases"
    return _cases(rows, name, id, tuple(required))


def cases_param(
    cases: str | Path | Iterable[Mapping[str, Any] | Case],
    *,
    id: str | None = None,
    required: Sequence[str] = (),
) -> list[ParameterSet]:
    """One ``pytest.param`` per case, with the case's id: for ``pytest.mark.parametrize``.

    ``@pytest.mark.parametrize("case", cases_param("data/tickets.jsonl", id="id"))`` makes
    one test per case (``-k``, ``--lf`` and xdist see each); ``cases`` is what
    :func:`load_cases` takes, or cases it loaded.
    """
    import pytest

    if isinstance(cases, str | Path) and not Path(cases).is_absolute():
        cases = _caller_dir() / cases
    loaded = (
        list(cases)
        if isinstance(cases, list) and all(isinstance(c, Case) for c in cases)
        else load_cases(cases, id=id, required=required)
    )
    return [pytest.param(case, id=case.id) for case in loaded]


def render_prompt(template: str | Callable[[Case], Any], case: Case) -> Any:
    """The prompt of ``case``: ``template.format(**case.vars)``, or ``template(case)``."""
    if callable(template):
        return template(case)
    try:
        return template.format_map(case.vars)
    except KeyError as exc:
        where = f" ({case.source})" if case.source else ""
        raise ConfigError(
            f"the prompt names the field {{{exc.args[0]}}}, which case {case.id!r}{where} does "
            f"not have (its fields: {', '.join(sorted(case.vars)) or 'none'}): add it to the "
            "case, or fix the prompt"
        ) from None
    except (IndexError, ValueError) as exc:
        raise ConfigError(
            f"the prompt {template!r} is no format string for a case ({exc}): name fields "
            "as {text}, and double literal braces ({{ and }})"
        ) from None


# --- reading files ------------------------------------------------------------------------

Row = tuple[int | None, dict[str, Any]]


def _caller_dir() -> Path:
    """The directory of the first module outside this one on the stack."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back  # type: ignore[assignment]
    file = frame.f_globals.get("__file__") if frame is not None else None
    return Path(file).resolve().parent if file else Path.cwd()


def _read(path: Path) -> list[Row]:
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(
            f"{path}: unknown kind of dataset file {path.suffix or '(no suffix)'!r}: use "
            ".jsonl, .csv, .yaml or .yml"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such dataset file (a relative path is read from the "
                          "test module's directory)") from None  # fmt: skip
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the dataset: {exc}") from None
    reader = {"jsonl": _jsonl, "csv": _csv, "yaml": _yaml}[kind]
    return reader(path, text)


def _jsonl(path: Path, text: str) -> list[Row]:
    rows: list[Row] = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{path}:{line_no}: malformed row, not JSON ({exc.msg} at column {exc.colno}): "
                "each line of a .jsonl file is one JSON object"
            ) from None
        if not isinstance(value, dict):
            raise ConfigError(
                f"{path}:{line_no}: malformed row, a JSON {type(value).__name__} and not an "
                'object: each line of a .jsonl file is one object, e.g. {"id": "t1", ...}'
            )
        rows.append((line_no, value))
    return rows


def _csv(path: Path, text: str) -> list[Row]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as exc:
        raise ConfigError(f"{path}:1: malformed header ({exc})") from None
    names = [h.strip() for h in header]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise ConfigError(
            f"{path}:1: the header {header!r} has an empty or repeated column name: name "
            "every column once"
        )
    rows: list[Row] = []
    start = 2
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ConfigError(f"{path}:{reader.line_num}: malformed row ({exc})") from None
        line_no, start = start, reader.line_num + 1
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != len(names):
            raise ConfigError(
                f"{path}:{line_no}: malformed row, {len(fields)} field(s) where the header has "
                f"{len(names)} ({', '.join(names)}): quote a field that holds a comma"
            )
        rows.append((line_no, dict(zip(names, fields, strict=True))))
    return rows


def _yaml(path: Path, text: str) -> list[Row]:
    import yaml

    try:
        value = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)  # nodes only: where each row starts
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: malformed YAML ({exc})") from None
    if value is None:
        return []
    if isinstance(value, dict) and isinstance(value.get("cases"), list):
        value = value["cases"]
        root = next(v for k, v in root.value if k.value == "cases")  # type: ignore[union-attr]
    if not isinstance(value, list):
        raise ConfigError(
            f"{path}:1: a YAML dataset is a list of cases (or a mapping with a 'cases' list), "
            f"not a {type(value).__name__}"
        )
    nodes = root.value if root is not None and isinstance(root.value, list) else []
    rows: list[Row] = []
    for i, item in enumerate(value):
        line_no = nodes[i].start_mark.line + 1 if i < len(nodes) else None
        if not isinstance(item, dict):
            raise ConfigError(
                f"{path}:{line_no}: malformed row, a {type(item).__name__} and not a mapping "
                "of the case's fields (- id: t1\\n  text: ...)"
            )
        rows.append((line_no, item))
    return rows


def _cases(
    rows: list[Row], name: str, id_field: str | None, required: tuple[str, ...]
) -> list[Case]:
    cases: list[Case] = []
    seen: dict[str, str] = {}
    for n, (line_no, values) in enumerate(rows, 1):
        where = f"{name}:{line_no}" if line_no is not None else f"{name}, case {n}"
        given = values.get("__case__")
        if isinstance(given, Case):
            case = given
        else:
            missing = [f for f in (*required, *([id_field] if id_field else [])) if f not in values]
            if missing:
                raise ConfigError(
                    f"{where}: missing column {', '.join(map(repr, missing))} (this row has "
                    f"{', '.join(map(repr, values)) or 'no fields'}): add it to every row"
                )
            if id_field is None:
                case_id = f"row{n}"
            else:
                raw = values[id_field]
                if raw is None or isinstance(raw, dict | list) or not str(raw).strip():
                    raise ConfigError(
                        f"{where}: the id field {id_field!r} is {raw!r}: give every case a "
                        "non-empty id"
                    )
                case_id = str(raw).strip()
            case = Case(id=case_id, vars=values, source=where if line_no is not None else None)
        if case.id in seen:
            raise ConfigError(
                f"{where}: duplicate id {case.id!r} (also at {seen[case.id]}): ids name cases "
                "in reports and on the command line, so each must be unique"
            )
        seen[case.id] = where
        cases.append(case)
    return cases


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CaseResult:
    """One case as :meth:`~pytest_llm.Harness.evaluate` judged it."""

    case: Case
    result: LLMResult | None
    """The accepted answer, or the last rejected one (``None``: the call raised)."""
    passed: bool
    reason: str | None = None
    """Why it failed: the rejection of its answer, or the expected label it missed."""
    prompt: str = ""
    expected: str | None = None
    predicted: str | None = None

    @property
    def output(self) -> str:
        return self.result.content if self.result is not None else ""

    def summary(self) -> dict[str, Any]:
        """The case in a dataset's record: id, verdict, reason, model, labels, score."""
        result = self.result
        return {
            "id": self.case.id,
            "passed": self.passed,
            "reason": _bounded(self.reason),
            "model": result.model if result is not None else None,
            "expected": self.expected,
            "predicted": self.predicted,
            "score": result.score if result is not None else None,
            "output": _bounded(self.output),
        }

    def describe(self) -> str:
        """``case t3: expected 'billing', got 'refund'`` with its prompt and output, bounded."""
        reason = (self.reason or "passed").replace("\n", "\n    ")
        model = f" [{self.result.model}]" if self.result is not None else ""
        return (
            f"case {self.case.id}{model}: {reason}\n"
            f"    prompt: {shorten(self.prompt, _SHOWN)}\n"
            f"    output: {shorten(self.output, _SHOWN)}"
        )


@dataclass(frozen=True, kw_only=True)
class DatasetResult:
    """Every case of a dataset test, the accuracy over them and the verdict.

    ``accuracy`` is the share of cases that passed (their answer was accepted and, with
    ``expected``, had the expected label); ``passed`` is ``accuracy >= min_accuracy``.
    """

    cases: tuple[CaseResult, ...]
    min_accuracy: float
    labelled: bool = False
    """Whether the cases have expected labels (a classification: ``confusion`` applies)."""

    @property
    def total(self) -> int:
        return len(self.cases)

    @property
    def passes(self) -> int:
        return sum(c.passed for c in self.cases)

    @property
    def failures(self) -> tuple[CaseResult, ...]:
        return tuple(c for c in self.cases if not c.passed)

    @property
    def accuracy(self) -> float:
        return self.passes / self.total if self.total else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        """The 95% Wilson interval of the accuracy."""
        return wilson_interval(self.passes, self.total)

    @property
    def passed(self) -> bool:
        return self.passes >= required_passes(self.total, self.min_accuracy)

    @property
    def labels(self) -> list[str]:
        """Every expected and predicted label, sorted (no answer: ``(none)``)."""
        found = {c.expected for c in self.cases if c.expected is not None}
        found |= {c.predicted or _NONE for c in self.cases if c.expected is not None}
        return sorted(found)

    @property
    def confusion(self) -> dict[str, dict[str, int]]:
        """``confusion[expected][predicted]``: how many cases of each label got which."""
        table = {e: dict.fromkeys(self.labels, 0) for e in self.labels}
        for c in self.cases:
            if c.expected is not None:
                table[c.expected][c.predicted or _NONE] += 1
        return table

    def per_label(self) -> dict[str, dict[str, Any]]:
        """Precision, recall and support of each label (``None`` where undefined: 0/0)."""
        table = self.confusion
        out: dict[str, dict[str, Any]] = {}
        for label in self.labels:
            hits = table[label][label]
            predicted = sum(row[label] for row in table.values())
            support = sum(table[label].values())
            out[label] = {
                "precision": round(hits / predicted, 6) if predicted else None,
                "recall": round(hits / support, 6) if support else None,
                "support": support,
            }
        return out

    def summary(self) -> dict[str, Any]:
        """The JSON-friendly record carried in the test report (``llm_dataset``)."""
        low, high = self.interval
        doc: dict[str, Any] = {
            "cases": self.total,
            "passes": self.passes,
            "accuracy": round(self.accuracy, 6),
            "interval": [round(low, 6), round(high, 6)],
            "min_accuracy": self.min_accuracy,
            "passed": self.passed,
            "failed_cases": [
                {"id": c.case.id, "reason": _bounded(c.reason), "output": _bounded(c.output)}
                for c in self.failures
            ],
            "results": [c.summary() for c in self.cases],
        }
        if self.labelled:
            doc["labels"] = self.labels
            doc["confusion"] = self.confusion
            doc["per_label"] = self.per_label()
        return doc

    def __str__(self) -> str:
        return describe(self.summary())

    def report(self) -> str:
        """Why the dataset failed: the verdict, then the failed cases first, bounded."""
        lines = [str(self)]
        shown = self.failures[:SHOWN_FAILURES]
        if shown:
            lines.append(f"failed cases ({len(self.failures)} of {self.total}):")
            lines += ["  " + c.describe().replace("\n", "\n  ") for c in shown]
        if len(self.failures) > len(shown):
            lines.append(f"  ... and {len(self.failures) - len(shown)} more failed case(s)")
        if self.labelled:
            lines += confusion_lines(self.summary())
        return "\n".join(lines)


_NONE = "(none)"
_HEADER = "expected \\ got"


def normalize_label(value: Any) -> str:
    """A label as compared: no surrounding white space, quotes or punctuation, casefolded."""
    return str(value).strip().strip(".,;:!?\"'`*").strip().casefold()


def judge_case(
    case: Case,
    outcome: LLMResult | BaseException,
    prompt: str,
    expected: str | None,
    label: str | Callable[[Any], Any] | None,
) -> CaseResult:
    """Whether ``case`` passed: its answer was accepted and, with ``expected``, had the
    label of the case's field ``expected``."""
    want = None
    if expected is not None:
        if expected not in case.vars:
            where = f" ({case.source})" if case.source else ""
            raise ConfigError(
                f"evaluate(expected={expected!r}): case {case.id!r}{where} has no field "
                f"{expected!r} (its fields: {', '.join(sorted(case.vars))}): add it, or name "
                "the field that holds the expected label"
            )
        want = normalize_label(case.vars[expected])
    if isinstance(outcome, BaseException):  # a QualityFailure: the answer was not accepted
        result = getattr(outcome, "result", None)
        return CaseResult(
            case=case, result=result, passed=False, reason=str(outcome), prompt=prompt,
            expected=want,
        )  # fmt: skip
    if want is None:
        return CaseResult(case=case, result=outcome, passed=True, prompt=prompt)
    got = normalize_label(_label_of(outcome, label))
    reason = None if got == want else f"expected label {want!r}, got {got!r}"
    return CaseResult(
        case=case, result=outcome, passed=reason is None, reason=reason, prompt=prompt,
        expected=want, predicted=got,
    )  # fmt: skip


def _label_of(result: LLMResult, label: str | Callable[[Any], Any] | None) -> Any:
    value = result.parsed if result.parsed is not None else result.content
    if label is None:
        return value
    if callable(label):
        return label(value)
    if isinstance(value, Mapping):
        return value.get(label, "")
    return getattr(value, label, "")


def _bounded(text: str | None) -> str | None:
    if text is None or len(text) <= _SHOWN:
        return text
    return text[: _SHOWN - 3] + "..."


def describe(summary: Mapping[str, Any]) -> str:
    """``7/8 cases passed: accuracy 88% (95% CI 53%-98%), min_accuracy 75%``."""
    low, high = summary["interval"]
    return (
        f"{summary['passes']}/{summary['cases']} cases passed: accuracy "
        f"{summary['accuracy']:.0%} (95% CI {low:.0%}-{high:.0%}), "
        f"min_accuracy {summary['min_accuracy']:.0%}"
    )


def confusion_lines(summary: Mapping[str, Any]) -> list[str]:
    """The confusion table (rows: expected, columns: predicted) and precision/recall."""
    labels: list[str] = summary.get("labels") or []
    if not labels:
        return []
    width = max(len(label) for label in [*labels, _HEADER])
    cell = max(5, *(len(label) for label in labels))
    lines = [f"{_HEADER:<{width}}  " + "  ".join(f"{lb:>{cell}}" for lb in labels)]
    for label in labels:
        row = summary["confusion"][label]
        lines.append(f"{label:<{width}}  " + "  ".join(f"{row[p]:>{cell}}" for p in labels))
    for label in labels:
        stats = summary["per_label"][label]
        lines.append(
            f"{label}: precision {_rate(stats['precision'])}, recall {_rate(stats['recall'])} "
            f"({stats['support']} case(s))"
        )
    return lines


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"
