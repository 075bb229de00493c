"""The pacing of one call's attempts: the pause before a retry, and the time the call may take.

The harness retries a transport fault after :func:`pause_seconds` and bounds the whole
call, every attempt and pause, by the :class:`~pytest_llm.backends.deadline.CallScope`
of :func:`scope_for`: ``total_timeout_seconds``, by default ``timeout_seconds x attempts +
backoff`` (:attr:`HarnessConfig.worst_case_seconds`). So a test's worst case is known
whatever the server does: drips, ``Retry-After``, faults between re-asks.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable

from .backends.deadline import CallScope, Interrupt
from .config import MAX_BACKOFF_SECONDS, HarnessConfig
from .errors import BackendBusy, BackendError

__all__ = ["pause_seconds", "scope_for", "worst_case_reckoning"]


def pause_seconds(
    config: HarnessConfig,
    failures: int,
    error: BackendError,
    *,
    rng: Callable[[], float] = random.random,
) -> float:
    """The pause before the retry after ``failures`` transport faults in a row (1: the first).

    ``retry_delay_seconds``, doubling, at most 30 s, with "equal jitter": between half and
    all of it, so that workers that failed together do not all come back together. At
    least the ``Retry-After`` a busy server (429/503) asked for.
    """
    nominal = min(config.retry_delay_seconds * 2.0 ** (failures - 1), MAX_BACKOFF_SECONDS)
    pause = nominal * (0.5 + 0.5 * rng())
    retry_after = error.retry_after if isinstance(error, BackendBusy) else None
    return pause if retry_after is None else max(pause, retry_after)


def scope_for(config: HarnessConfig, interrupt: Interrupt | None = None) -> CallScope:
    """The time one call with ``config`` may take from now, named as messages show it."""
    total, worst = config.total_timeout_seconds, config.worst_case_seconds
    setting = (
        f"total_timeout_seconds={total:g}"
        if total is not None
        else f"{worst:g} s, the default of total_timeout_seconds: {worst_case_reckoning(config)}"
    )
    return CallScope.starting_now(worst, setting, interrupt, explicit=total is not None)


def worst_case_reckoning(config: HarnessConfig) -> str:
    """How the default bound of a call is reckoned: ``timeout_seconds=60 x 3 attempt(s) +
    1.5 s of backoff`` (made once per distinct config)."""
    attempts = (1 + config.max_retries) * len(config.models)
    return _reckoning(config.timeout_seconds, attempts, config.backoff_seconds)


@functools.lru_cache(maxsize=64)
def _reckoning(timeout: float, attempts: int, backoff: float) -> str:
    return f"timeout_seconds={timeout:g} x {attempts} attempt(s) + {backoff:g} s of backoff"
