"""Assertions for model output. Each failure says what was expected, what came back, and
from which model. They accept an ``LLMResult``, or plain text / parsed values."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Literal

from ._text import shorten
from .errors import QualityFailure, ScoreTooLow
from .result import LLMResult
from .scorers import DEFAULT_EMBEDDING_MODEL, embedding_similarity, lexical_similarity
from .scoring import Score, Scorer, active_harness, as_result, run_scorer, text_of
from .validation import Rejected, Schema, conform, parse_json

__all__ = [
    "assert_contains",
    "assert_json",
    "assert_matches",
    "assert_schema",
    "assert_score",
    "assert_similar",
]

_SHOWN = 500


def _origin(output: object) -> str:
    return f" (from model {output.model})" if isinstance(output, LLMResult) else ""


def _plain(value: Any) -> Any:
    """An application's object as JSON data: a pydantic model or a dataclass instance is
    dumped (so it meets a JSON Schema as well as its own class); anything else as it is."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def assert_json(output: LLMResult | str) -> Any:
    """The output parses as JSON (a fenced code block is accepted); returns the value."""
    __tracebackhide__ = True
    try:
        return parse_json(text_of(output))
    except Rejected as exc:
        raise QualityFailure(f"expected JSON{_origin(output)}, but {exc}") from None


def assert_schema(output: LLMResult | str | Any, schema: Schema) -> Any:
    """The output conforms to ``schema`` (pydantic model class or JSON Schema dict).

    Accepts an ``LLMResult`` (its ``parsed`` value, or its JSON content), JSON text,
    or an already parsed value: JSON data, a pydantic model or a dataclass instance (an
    application's own output, see ``llm_proxy``). Returns the validated value (a model instance for
    pydantic). The message lists every failing path, like ``items[2].price``.
    """
    __tracebackhide__ = True
    if isinstance(output, LLMResult):
        value = output.parsed if output.parsed is not None else assert_json(output)
        if hasattr(value, "model_dump"):
            value = value.model_dump(mode="json")
    elif isinstance(output, str):
        value = assert_json(output)
    else:
        value = _plain(output)
    conformed, errors = conform(value, schema)
    if errors:
        name = getattr(schema, "__name__", None) or schema.get("title", "the JSON Schema")  # type: ignore[union-attr]
        listing = "\n".join(f"  {path}: {message}" for path, message in errors)
        got = text_of(output) if isinstance(output, LLMResult | str) else repr(value)
        raise QualityFailure(
            f"expected output matching {name}{_origin(output)}; {len(errors)} error(s):\n"
            f"{listing}\ngot: {shorten(got, _SHOWN)}"
        )
    return conformed


def assert_contains(output: LLMResult | str, *substrings: str, case_sensitive: bool = True) -> None:
    """Every one of ``substrings`` occurs in the output."""
    __tracebackhide__ = True
    if not substrings:
        raise TypeError("assert_contains needs at least one substring")
    text = text_of(output)
    haystack = text if case_sensitive else text.casefold()
    missing = [s for s in substrings if (s if case_sensitive else s.casefold()) not in haystack]
    if missing:
        how = "" if case_sensitive else " (ignoring case)"
        raise QualityFailure(
            f"expected the output{_origin(output)} to contain {', '.join(map(repr, substrings))}"
            f"{how}; missing {', '.join(map(repr, missing))}\ngot: {shorten(text, _SHOWN)}"
        )


def assert_matches(
    output: LLMResult | str, pattern: str | re.Pattern[str], flags: int = 0
) -> re.Match[str]:
    """The regular expression ``pattern`` matches somewhere in the output; returns the match."""
    __tracebackhide__ = True
    text = text_of(output)
    compiled = re.compile(pattern, flags) if isinstance(pattern, str) else pattern
    match = compiled.search(text)
    if match is None:
        raise QualityFailure(
            f"expected the output{_origin(output)} to match /{compiled.pattern}/; "
            f"no match in: {shorten(text, _SHOWN)}"
        )
    return match


def assert_score(output: LLMResult | str, scorer: Scorer, *, min: float | None = None) -> Score:
    """``scorer`` rates the output at least ``min`` (default: the ``min_score`` setting).

    Model-backed scorers (embedding similarity, the judge) run on the test's ``llm``
    harness, which also carries the score into the test report. Returns the ``Score``.
    """
    __tracebackhide__ = True
    harness = active_harness()
    threshold = min if min is not None or harness is None else harness.config.min_score
    if threshold is None:
        raise TypeError("assert_score needs min=... (or a min_score setting for the test)")
    result = as_result(output)
    if harness is not None:
        score = harness.score(result, scorer, min_score=threshold)
    else:
        score = run_scorer(scorer, result, threshold)
    if not score.passed:
        raise ScoreTooLow(
            f"expected {score.name} >= {threshold:g}{_origin(output)}, "
            f"got {score.value:.3f}: {score.reason}\noutput: {shorten(result.content, _SHOWN)}"
        )
    return score


def assert_similar(
    output: LLMResult | str,
    reference: str,
    *,
    min: float | None = None,
    method: Literal["lexical", "embedding"] = "lexical",
    model: str | None = None,
) -> Score:
    """The output is similar to ``reference``: by words (``lexical``) or by meaning
    (``embedding``, with the embedding ``model``; default ``nomic-embed-text``)."""
    __tracebackhide__ = True
    scorer: Scorer
    if method == "lexical":
        if model is not None:
            raise TypeError("model= is for method='embedding'; lexical similarity uses no model")
        scorer = lexical_similarity(reference)
    elif method == "embedding":
        scorer = embedding_similarity(reference, model=model or DEFAULT_EMBEDDING_MODEL)
    else:
        raise ValueError(f"method must be 'lexical' or 'embedding', not {method!r}")
    return assert_score(output, scorer, min=min)
