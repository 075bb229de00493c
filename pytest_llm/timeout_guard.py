"""One warning when pytest-timeout would stop a test before its llm calls can give up.

A call may take :attr:`HarnessConfig.worst_case_seconds` (``total_timeout_seconds``, by
default ``timeout_seconds x attempts + backoff``) before it ends with the server's fault
as a test error. A shorter pytest-timeout limit stops it first, and the test fails as a
timeout that names no server. Said once per run, for the first such test.
"""

from __future__ import annotations

import threading
import warnings
from importlib import import_module
from typing import Any

import pytest

from .config import HarnessConfig
from .errors import LLMWarning

__all__ = ["TimeoutGuard"]


class TimeoutGuard:
    """Compares each ``llm`` test's worst case with its pytest-timeout limit, warns once."""

    def __init__(self, config: pytest.Config) -> None:
        self._active = config.pluginmanager.hasplugin("timeout")
        self._default: float | None = None
        if self._active:
            plugin: Any = import_module("pytest_timeout")  # installed: it is registered
            self._default = plugin.get_env_settings(config).timeout
        self._warned = False
        self._lock = threading.Lock()

    def check(self, item: pytest.Item, config: HarnessConfig) -> None:
        if not self._active or self._warned:
            return
        limit = _limit(item, self._default)
        worst = config.worst_case_seconds
        if limit is None or limit <= 0 or limit >= worst:
            return
        with self._lock:
            if self._warned:
                return
            self._warned = True
        from .pacing import worst_case_reckoning

        how = (
            f"total_timeout_seconds={config.total_timeout_seconds:g}"
            if config.total_timeout_seconds is not None
            else worst_case_reckoning(config)
        )
        warnings.warn(
            LLMWarning(
                f"pytest-timeout stops {item.nodeid} after {limit:g} s, before one of its llm "
                f"calls could give up: a call may take {worst:g} s ({how}). Stopped, the test "
                "fails as a timeout instead of erroring with the server's fault. Lower "
                "timeout_seconds or set total_timeout_seconds (@pytest.mark.llm(...), "
                "--llm-timeout), or raise the pytest-timeout limit. (Said once per run.)"
            ),
            stacklevel=2,
        )


def _limit(item: pytest.Item, default: float | None) -> float | None:
    """The item's pytest-timeout limit: its ``timeout`` marker, else the run's setting."""
    marker = item.get_closest_marker("timeout")
    value: Any = default
    if marker is not None:
        value = marker.args[0] if marker.args else marker.kwargs.get("timeout", default)
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):  # pytest-timeout reports a bad value itself
        return None
