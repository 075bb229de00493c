"""The bench's rows, its settings, the machine it ran on, and the table and JSON it writes."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Settings:
    """What every benchmark is given: smoke mode (small sizes, no verdicts), how many
    alternating runs to take the median of, a scratch directory and a progress log."""

    smoke: bool
    runs: int
    workdir: Path
    install: bool = True
    """May the promptfoo row install promptfoo (and Node) with npm?"""
    log: Callable[[str], None] = field(default=print)

    def size(self, full: int, smoke: int) -> int:
        return smoke if self.smoke else full


@dataclass
class Row:
    """One line of the table: a figure of ours against its reference and the target."""

    id: str
    figure: str
    unit: str
    ours: float | None
    reference: float | None
    target: str
    met: bool | None
    """``None`` in smoke mode and when the row was skipped."""
    how: str = ""
    """How the figures were taken (medians of what, which clock)."""
    skipped: str | None = None
    """Why the row has no figures (a missing tool); ``None`` when it ran."""
    error: str | None = None
    """Why the benchmark failed; ``None`` when it ran."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.reference:
            return None
        return self.ours / self.reference

    @property
    def difference(self) -> float | None:
        if self.ours is None or self.reference is None:
            return None
        return self.ours - self.reference

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "difference": self.difference}


def verdict(settings: Settings, met: bool) -> bool | None:
    """``met``, or ``None`` in smoke mode (small sizes say nothing about the targets)."""
    return None if settings.smoke else met


def skipped(id: str, figure: str, target: str, why: str) -> Row:
    return Row(id, figure, "", None, None, target, None, skipped=why)


def machine() -> dict[str, Any]:
    """Where the bench ran: cores, CPU model, Python, OS, date, load."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import pytest_llm

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "commit": commit or "unknown",
        "pytest_llm": str(Path(pytest_llm.__file__).parent),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    magnitude = abs(value)
    digits = 3 if magnitude < 1 else 2 if magnitude < 100 else 0
    return f"{value:.{digits}f} {unit}".strip()


def _met(row: Row) -> str:
    if row.error is not None:
        return "error"
    if row.skipped is not None:
        return "skipped"
    return {True: "yes", False: "**no**", None: "-"}[row.met]


def markdown(rows: Sequence[Row], info: dict[str, Any], *, smoke: bool) -> str:
    """The table, then one line per skipped or failed row, then how each figure was taken."""
    lines = [
        "| # | figure | ours | reference | ratio | target | met? |",
        "|---|---|---|---|---|---|---|",
    ]
    notes = []
    for number, row in enumerate(rows, 1):
        ratio = "-" if row.ratio is None else f"{row.ratio:.3f}"
        if row.difference is not None:
            ratio += f" ({row.difference:+.3g} {row.unit})"
        lines.append(
            f"| {number} | {row.figure} | {_number(row.ours, row.unit)} | "
            f"{_number(row.reference, row.unit)} | {ratio} | {row.target} | {_met(row)} |"
        )
        if row.error is not None:
            notes.append(f"{number}. **error**: {row.error.splitlines()[0]}")
        elif row.skipped is not None:
            notes.append(f"{number}. skipped: {row.skipped}")
        elif row.how:
            notes.append(f"{number}. {row.how}")
    header = (
        f"Machine: {info['nproc']} cores ({info['cpu']}), Python {info['python']}, "
        f"{info['platform']}, {info['date']}, load average at start {info['load_average']}; "
        f"commit {info['commit']}, pytest_llm from {info['pytest_llm']}"
    )
    if smoke:
        header += " — **smoke mode**: small sizes, no verdicts"
    return "\n".join([header, "", *lines, "", *notes]) + "\n"


def write_json(path: Path, rows: Sequence[Row], info: dict[str, Any], *, smoke: bool) -> None:
    """The same as the table, as JSON, written whole (a temporary file renamed)."""
    document = {"smoke": smoke, "machine": info, "rows": [row.as_json() for row in rows]}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    temporary.replace(path)
