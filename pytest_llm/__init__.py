"""pytest-llm: test the output of language models as plain pytest cases.

The plugin itself lives in :mod:`pytest_llm.plugin`; this module only names the
public API. Each name's module is imported when the name is first used (PEP 562), so
that ``pytest`` starts fast for suites that never use ``llm``: nothing here imports
``ollama``, ``httpx`` or ``jsonschema``, nor the harness, the scorers or the assertions,
until a test asks for them. A new public name goes in ``_WHERE``, in the
``TYPE_CHECKING`` imports and in ``__all__``.
"""

from __future__ import annotations

import importlib
import typing

import pytest

pytest.register_assert_rewrite("pytest_llm.assertions")

if typing.TYPE_CHECKING:
    from .assertions import (
        assert_contains,
        assert_json,
        assert_matches,
        assert_schema,
        assert_score,
        assert_similar,
    )
    from .config import HarnessConfig
    from .datasets import Case, DatasetResult, cases_param, load_cases
    from .errors import (
        AccuracyTooLow,
        BackendAuthError,
        BackendBusy,
        BackendError,
        BackendResponseError,
        BackendTimeout,
        BackendUnreachable,
        CassetteError,
        CheckError,
        ConfigError,
        JudgeError,
        LLMError,
        LLMWarning,
        ModelNotFound,
        OutputInvalid,
        PassRateTooLow,
        QualityFailure,
        ScoreTooLow,
    )
    from .harness import Harness
    from .proxy import LLMProxy
    from .result import Attempt, LLMResult
    from .sampling import SampleResult
    from .scoring import Score, Scorer

#: The module of each public name, imported when the name is first used.
_WHERE = {
    "AccuracyTooLow": "errors",
    "Attempt": "result",
    "BackendAuthError": "errors",
    "BackendBusy": "errors",
    "BackendError": "errors",
    "BackendResponseError": "errors",
    "BackendTimeout": "errors",
    "BackendUnreachable": "errors",
    "Case": "datasets",
    "CassetteError": "errors",
    "CheckError": "errors",
    "ConfigError": "errors",
    "DatasetResult": "datasets",
    "Harness": "harness",
    "HarnessConfig": "config",
    "JudgeError": "errors",
    "LLMError": "errors",
    "LLMProxy": "proxy",
    "LLMResult": "result",
    "LLMWarning": "errors",
    "ModelNotFound": "errors",
    "OutputInvalid": "errors",
    "PassRateTooLow": "errors",
    "QualityFailure": "errors",
    "SampleResult": "sampling",
    "Score": "scoring",
    "ScoreTooLow": "errors",
    "Scorer": "scoring",
    "assert_contains": "assertions",
    "assert_json": "assertions",
    "assert_matches": "assertions",
    "assert_schema": "assertions",
    "assert_score": "assertions",
    "assert_similar": "assertions",
    "cases_param": "datasets",
    "load_cases": "datasets",
}

__all__ = [
    "AccuracyTooLow",
    "Attempt",
    "BackendAuthError",
    "BackendBusy",
    "BackendError",
    "BackendResponseError",
    "BackendTimeout",
    "BackendUnreachable",
    "Case",
    "CassetteError",
    "CheckError",
    "ConfigError",
    "DatasetResult",
    "Harness",
    "HarnessConfig",
    "JudgeError",
    "LLMError",
    "LLMProxy",
    "LLMResult",
    "LLMWarning",
    "ModelNotFound",
    "OutputInvalid",
    "PassRateTooLow",
    "QualityFailure",
    "SampleResult",
    "Score",
    "ScoreTooLow",
    "Scorer",
    "assert_contains",
    "assert_json",
    "assert_matches",
    "assert_schema",
    "assert_score",
    "assert_similar",
    "cases_param",
    "load_cases",
]


def __getattr__(name: str) -> typing.Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # not kept in globals(): a module imported again (pytester's in-process runs drop
    # the modules they imported) would leave the name pointing into the old one
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
