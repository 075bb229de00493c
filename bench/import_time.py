"""Start-up cost of the plugin for suites that never use ``llm``, side by side in one run.

Target (issue 13, row 5): loading the plugin adds at most 25 ms to ``pytest
--collect-only`` on a suite that never uses ``llm``, over the same run with ``-p no:llm``.
The two runs alternate; the figure is the median CPU time (user + sys) of each ``pytest``
process, which other processes on a shared machine do not inflate as they do wall time
(both are printed).

    python -m bench.import_time [--runs 15]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench._report import Row, Settings, verdict
from bench._side_by_side import Session, median, pytest_args, quiet_env, run

BUDGET_MS = 25.0
SUITE = """
import pytest

@pytest.mark.parametrize("n", range(10))
def test_sum(n):
    assert n + 1 > n

class TestPlain:
    def test_upper(self):
        assert "a".upper() == "A"
"""


def measure(workdir: Path, runs: int, warmup: bool = True) -> dict[str, list[Session]]:
    """``runs`` sessions of ``pytest --co`` with and without the plugin, alternating."""
    for module in ("test_one.py", "test_two.py", "test_three.py"):
        (workdir / module).write_text(SUITE)
    (workdir / "pytest.ini").write_text("[pytest]\n")
    env = quiet_env()
    sides: dict[str, list[str]] = {
        "without": pytest_args("--co", "-p", "no:llm"),
        "with": pytest_args("--co"),
    }
    for args in sides.values() if warmup else ():  # the OS file cache, not measured
        run(args, cwd=workdir, env=env, timeout=120, what="pytest --co")
    sessions: dict[str, list[Session]] = {name: [] for name in sides}
    for _ in range(runs):
        for name, args in sides.items():
            sessions[name].append(run(args, cwd=workdir, env=env, timeout=120, what="pytest --co"))
    return sessions


def rows(settings: Settings) -> list[Row]:
    runs = settings.size(max(settings.runs, 5) * 3, settings.runs)
    sessions = measure(settings.workdir, runs, warmup=not settings.smoke)
    cpu = {name: median([s.cpu_s for s in side]) * 1000 for name, side in sessions.items()}
    wall = {name: median([s.wall_s for s in side]) * 1000 for name, side in sessions.items()}
    return [
        Row(
            "collect-only-startup",
            "`pytest --collect-only`, suite never using `llm` (33 tests)",
            "ms",
            cpu["with"],
            cpu["without"],
            f"≤ +{BUDGET_MS:.0f} ms",
            verdict(settings, cpu["with"] - cpu["without"] <= BUDGET_MS),
            how=f"reference `-p no:llm`; alternating, median of {runs} runs each, CPU time of the "
            f"pytest process (wall: {wall['with']:.0f} vs {wall['without']:.0f} ms, "
            f"{wall['with'] - wall['without']:+.0f} ms)",
            extra={"wall_ms": wall},
        )
    ]


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sessions = measure(Path(tmp), args.runs)
    for clock in ("cpu_s", "wall_s"):
        a = median([getattr(s, clock) for s in sessions["without"]]) * 1000
        b = median([getattr(s, clock) for s in sessions["with"]]) * 1000
        print(
            f"{clock[:-2]:4}: -p no:llm {a:.1f} ms, with the plugin {b:.1f} ms, "
            f"added {b - a:+.1f} ms (budget +{BUDGET_MS:.0f} ms; median of {args.runs})"
        )


if __name__ == "__main__":
    main()
