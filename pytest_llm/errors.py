"""Every error pytest-llm raises, drawn as one tree.

::

    LLMError                         base of everything below
    ├── ConfigError (ValueError)     a bad marker keyword, option or ini value
    ├── BackendError                 infrastructure: the test *errors*, with a one-line fix
    │   ├── BackendUnreachable       the server refused the connection
    │   ├── ModelNotFound            the model is not pulled / not served
    │   ├── BackendTimeout           no answer within timeout_seconds, after retries
    │   ├── BackendAuthError         the server rejected our credentials
    │   └── BackendResponseError     any other error answer (5xx, error line mid-stream, …)
    │       └── BackendBusy          429/503: the server is overloaded (retried with backoff)
    ├── CassetteError                a cassette is missing, unreadable or cannot be written
    ├── JudgeError                   the judge model never gave a valid verdict: the test *errors*
    ├── CheckError                   a check= itself broke (not a rejection): the test *errors*
    └── QualityFailure (AssertionError)   the model answered, but not well enough: the test *fails*
        ├── OutputInvalid            invalid output after every retry and escalation
        ├── ScoreTooLow              score under min_score after every retry and escalation
        └── PassRateTooLow           too few of llm.sample's calls passed (min_pass_rate)
            └── AccuracyTooLow       too few of llm.evaluate's cases passed (min_accuracy)

    LLMWarning (UserWarning)         a setting that empties a verdict (sampling at temperature 0)

Backends convert their client library's exceptions into these at one place each
(``raise X from exc``); nothing above the backend layer sees ``ollama`` or
``httpx`` exceptions. The plugin reports ``BackendError``, ``CassetteError``,
``JudgeError`` and ``CheckError`` as test errors (``E``; ``CheckError`` with the check's
traceback) and ``QualityFailure`` as ordinary failures.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AccuracyTooLow",
    "BackendAuthError",
    "BackendBusy",
    "BackendError",
    "BackendResponseError",
    "BackendTimeout",
    "BackendUnreachable",
    "CassetteError",
    "CheckError",
    "ConfigError",
    "JudgeError",
    "LLMError",
    "LLMWarning",
    "ModelNotFound",
    "OutputInvalid",
    "PassRateTooLow",
    "QualityFailure",
    "ScoreTooLow",
]


class LLMError(Exception):
    """Base class of every pytest-llm error."""


class ConfigError(LLMError, ValueError):
    """A configuration value (marker keyword, command-line option, ini setting) is invalid."""


class BackendError(LLMError):
    """The model server could not give an answer: an infrastructure fault, not a quality one."""

    #: Whether the harness may try the same call again after ``retry_delay_seconds``.
    retryable: bool = False
    #: The server that failed, when known (the harness sets it), for the run's summary.
    host: str | None = None


class BackendUnreachable(BackendError):
    """Nothing answers at the configured host."""


class ModelNotFound(BackendError):
    """The server does not have the requested model."""


class BackendTimeout(BackendError):
    """The server did not answer within the timeout."""

    retryable = True


class BackendAuthError(BackendError):
    """The server refused the credentials (HTTP 401/403)."""


class BackendResponseError(BackendError):
    """The server answered with an error."""

    retryable = True

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class BackendBusy(BackendResponseError):
    """The server is overloaded (HTTP 429 or 503); worth retrying after a pause."""

    #: Seconds the server asked to wait (its ``Retry-After``), when it said; the harness
    #: pauses at least that long before the next attempt.
    retry_after: float | None = None


class CassetteError(LLMError):
    """A cassette is missing in replay-only mode, cannot be parsed, or cannot be written."""


class JudgeError(LLMError):
    """The judge model never answered a valid verdict: the quality could not be measured."""


class CheckError(LLMError):
    """A ``check`` raised something other than a rejection: a bug in the test, not in the model.

    Only ``AssertionError``, ``ValueError`` (pydantic's ``ValidationError`` included) and a
    ``False`` return reject an answer; the check's own exception is the ``__cause__``.
    """


class QualityFailure(LLMError, AssertionError):
    """The model answered but the answer was rejected every time: a test failure.

    ``result`` holds the unsuccessful ``LLMResult`` (every attempt, the route).
    """

    result: Any = None


class OutputInvalid(QualityFailure):
    """Every attempt produced output that failed validation."""


class ScoreTooLow(QualityFailure):
    """Every attempt scored under ``min_score``."""


class PassRateTooLow(QualityFailure):
    """Fewer than ``min_pass_rate`` of the sampled calls passed (``result``: the SampleResult)."""


class AccuracyTooLow(PassRateTooLow):
    """Fewer than ``min_accuracy`` of a dataset's cases passed (``result``: the DatasetResult)."""


class LLMWarning(UserWarning):
    """A setting that makes a verdict mean less than it seems (e.g. sampling at temperature 0).

    Not an error: filter it with ``-W ignore::pytest_llm.LLMWarning`` once understood.
    """
