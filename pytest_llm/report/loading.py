"""Reading a JSON report back (a baseline): a bad file is a ``ConfigError`` naming it."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .figures import SCHEMA

__all__ = ["load_report"]


def load_report(path: Path, *, source: str = "--llm-baseline") -> dict[str, Any]:
    """Read a JSON report written by ``--llm-report``; a bad file is a ``ConfigError``."""
    fix = "write one with --llm-report PATH (for example on your main branch)"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{source}={str(path)!r}: no such file; {fix}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{source}={str(path)!r} is not a readable JSON report: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise ConfigError(
            f"{source}={str(path)!r} is not a pytest-llm report (schema {found!r}, "
            f"expected {SCHEMA!r}); {fix}"
        )
    problem = _damage(doc)
    if problem is not None:
        raise ConfigError(f"{source}={str(path)!r} is damaged: {problem}; {fix}")
    return doc


def _damage(doc: Mapping[str, Any]) -> str | None:
    """What is wrong with a report document in the fields a baseline is read for, if anything."""
    tests, models = doc.get("tests"), doc.get("models")
    if not isinstance(tests, list) or not all(
        isinstance(t, dict) and "nodeid" in t and "outcome" in t for t in tests
    ):
        return "'tests' must be a list of test records"
    for test in tests:
        for key in ("nodeid", "outcome"):
            if not isinstance(test[key], str):
                return f"a test's {key!r} must be a string, got {test[key]!r}"
        if not _number_or_null(test.get("score")):
            return f"{test['nodeid']}: 'score' must be a number or null, got {test['score']!r}"
    if not isinstance(models, dict) or not all(isinstance(f, dict) for f in models.values()):
        return f"'models' must be an object of per-model figures, got {models!r:.80}"
    for model, figures in models.items():
        for key in ("p50_ms", "p50_server_ms", "p50_decode_ms", "pass_rate"):
            if not _number_or_null(figures.get(key)):
                return f"model {model}: {key!r} must be a number or null, got {figures[key]!r}"
    return None


def _number_or_null(value: Any) -> bool:
    """``None`` or a finite number: a NaN or infinite figure would switch its check off."""
    if value is None:
        return True
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
