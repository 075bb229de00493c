"""pytest-llm: test the output of language models as plain pytest cases.

The plugin itself lives in :mod:`pytest_llm.plugin`; this module only names the
public API. Nothing here imports ``ollama``, ``httpx`` or ``jsonschema``.
"""

import pytest

pytest.register_assert_rewrite("pytest_llm.assertions")

from .assertions import (  # noqa: E402
    assert_contains,
    assert_json,
    assert_matches,
    assert_schema,
    assert_score,
    assert_similar,
)
from .config import HarnessConfig  # noqa: E402
from .datasets import Case, DatasetResult, cases_param, load_cases  # noqa: E402
from .errors import (  # noqa: E402
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
from .harness import Harness  # noqa: E402
from .proxy import LLMProxy  # noqa: E402
from .result import Attempt, LLMResult  # noqa: E402
from .sampling import SampleResult  # noqa: E402
from .scoring import Score, Scorer  # noqa: E402

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
