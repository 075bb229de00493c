"""What the user asked the run reports for: ``--llm-report``, ``--llm-html``, ``--llm-baseline``,
the gate's limits, ``$GITHUB_STEP_SUMMARY``, and whether the run selects part of the suite."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..baseline import DEFAULT_LIMITS, Limits
from ..config import ini_path
from ..errors import ConfigError

__all__ = ["ReportOptions", "selects_part", "shard_of"]


@dataclass(frozen=True, kw_only=True)
class ReportOptions:
    """What the user asked for: ``--llm-report``, ``--llm-html``, ``--llm-baseline`` …"""

    report: Path | None = None
    html: Path | None = None
    baseline: Path | None = None
    limits: Limits = DEFAULT_LIMITS
    step_summary: Path | None = None
    baseline_optional: bool = False
    """``--llm-baseline-optional``: a missing baseline file compares nothing, not an error."""
    filtered: bool = False
    """The run selects part of the suite (``-k``, ``-m``, ``::``, ``--lf``): tests of the
    baseline it did not select are "not run", not removed."""
    split: dict[str, int] | None = None
    """The run is one shard of a split suite: ``{"group": I, "splits": N}`` (:func:`shard_of`)."""

    @classmethod
    def from_config(cls, config: pytest.Config) -> ReportOptions:
        """Read the options (a path relative to the invocation directory) and the ini values
        (a path relative to the ini file: pytest's ``type="paths"``); a bad value raises
        ``ConfigError`` naming the option."""

        def path(name: str) -> Path | None:
            option = config.getoption(name)
            if option is not None:
                found = config.invocation_params.dir / Path(option).expanduser()
                source = f"--{name.replace('_', '-')}={option!r}"
            else:
                ini = ini_path(config, name)
                if ini is None:
                    return None
                found, source = ini, f"ini {name}={str(ini)!r}"
            if found.is_dir():
                raise ConfigError(f"{source} is a directory: give a file path")
            return found

        def number(name: str, default: float) -> float:
            value, source = config.getoption(name), f"--{name.replace('_', '-')}"
            if value is None:
                value, source = config.getini(name), f"ini {name}"
            if value in (None, ""):
                return default
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{source}={value!r} is not a number") from None

        def optional_number(name: str) -> float | None:
            return None if config.getoption(name) is None else number(name, 0.0)

        try:
            limits = Limits(
                max_score_drop=number("llm_max_score_drop", DEFAULT_LIMITS.max_score_drop),
                max_latency_factor=number(
                    "llm_max_latency_factor", DEFAULT_LIMITS.max_latency_factor
                ),
                latency_floor_ms=number("llm_latency_floor_ms", DEFAULT_LIMITS.latency_floor_ms),
                fail_on_new_flags=bool(config.getoption("llm_fail_on_new_flags", False)),
                max_token_factor=optional_number("llm_max_token_factor"),
            )
        except ValueError as exc:
            raise ConfigError(f"llm baseline limit {exc}") from None
        summary = os.environ.get("GITHUB_STEP_SUMMARY", "").strip()
        return cls(
            report=path("llm_report"),
            html=path("llm_html"),
            baseline=path("llm_baseline"),
            limits=limits,
            step_summary=Path(summary) if summary else None,
            baseline_optional=bool(config.getoption("llm_baseline_optional", False)),
            filtered=selects_part(config, shards=False),
            split=shard_of(config),
        )


def selects_part(config: pytest.Config, *, shards: bool = True) -> bool:
    """Whether the run selects part of the suite (``-k``, ``-m``, ``::``, ``--lf`` …, and
    with ``shards`` one shard of a split suite: :func:`shard_of`)."""
    option = config.option
    return bool(
        getattr(option, "keyword", "")
        or getattr(option, "markexpr", "")
        or getattr(option, "deselect", None)
        or getattr(option, "lf", False)
        or any("::" in str(arg) for arg in config.args)
        or (shards and shard_of(config) is not None)
    )


def shard_of(config: pytest.Config) -> dict[str, int] | None:
    """``{"group": I, "splits": N}`` when pytest-split runs group I of N (``--splits N
    --group I``), else None. Options, not deselection: an xdist controller, which collects
    nothing, knows it too."""
    splits, group = getattr(config.option, "splits", None), getattr(config.option, "group", None)
    if isinstance(splits, int) and isinstance(group, int) and splits > 1:
        return {"group": group, "splits": splits}
    return None
