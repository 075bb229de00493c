"""pytest-llm: test the output of language models as plain pytest cases.

The plugin itself lives in :mod:`pytest_llm.plugin`; this module only names the
public API. Nothing here imports ``ollama``, ``httpx`` or ``jsonschema``.
"""

import pytest

pytest.register_assert_rewrite("pytest_llm.assertions")

from .assertions import assert_contains, assert_json, assert_matches, assert_schema  # noqa: E402
from .config import HarnessConfig  # noqa: E402
from .errors import (  # noqa: E402
    BackendAuthError,
    BackendBusy,
    BackendError,
    BackendResponseError,
    BackendTimeout,
    BackendUnreachable,
    CassetteError,
    ConfigError,
    LLMError,
    ModelNotFound,
    OutputInvalid,
    QualityFailure,
    ScoreTooLow,
)
from .harness import Harness  # noqa: E402
from .result import Attempt, LLMResult  # noqa: E402
from .scoring import Score, Scorer  # noqa: E402

__all__ = [
    "Attempt",
    "BackendAuthError",
    "BackendBusy",
    "BackendError",
    "BackendResponseError",
    "BackendTimeout",
    "BackendUnreachable",
    "CassetteError",
    "ConfigError",
    "Harness",
    "HarnessConfig",
    "LLMError",
    "LLMResult",
    "ModelNotFound",
    "OutputInvalid",
    "QualityFailure",
    "Score",
    "ScoreTooLow",
    "Scorer",
    "assert_contains",
    "assert_json",
    "assert_matches",
    "assert_schema",
]
