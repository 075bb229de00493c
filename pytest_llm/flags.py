"""Flag instead of fail: ``on_low_quality="flag"`` turns a quality shortfall into a flag.

A flagged test does not fail the run and is never silent: the plugin reports it as
``flagged`` (its own status, counted in pytest's final line), with the reason in the JUnit
property ``llm_flagged``, the run reports and the ladder. Only quality shortfalls are
flagged: a score under ``min_score`` after every retry and escalation (``ScoreTooLow``) and
a pass rate under ``min_pass_rate`` (``PassRateTooLow``); with ``"flag-all"`` also invalid
output (``OutputInvalid``). Infrastructure errors and the test's own asserts never are.
"""

from __future__ import annotations

from .config import HarnessConfig
from .errors import OutputInvalid, PassRateTooLow, ScoreTooLow

__all__ = ["flag_reason"]

_SHOWN = 300


def flag_reason(error: BaseException, config: HarnessConfig | None) -> str | None:
    """The first line of ``error`` if the test's ``on_low_quality`` flags it, else ``None``."""
    if config is None or config.on_low_quality == "fail":
        return None
    flagged: tuple[type[BaseException], ...] = (ScoreTooLow, PassRateTooLow)
    if config.on_low_quality == "flag-all":
        flagged += (OutputInvalid,)
    if not isinstance(error, flagged):
        return None
    line = (str(error).splitlines() or [type(error).__name__])[0]
    line = f"{type(error).__name__}: {line}"
    return line if len(line) <= _SHOWN else line[: _SHOWN - 3] + "..."
