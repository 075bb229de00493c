"""Start-up cost of the plugin for suites that never use ``llm``, side by side in one run.

Budget (DESIGN.md): loading the plugin adds at most 50 ms to ``pytest`` start-up. Runs
``pytest --co`` on a one-test suite with and without ``-p no:llm``, alternating, and
compares medians.

    python bench/import_time.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(args: list[str], cwd: Path) -> float:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, env=env)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        (cwd / "test_plain.py").write_text("def test_plain():\n    assert 1 + 1 == 2\n")
        base = [sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider"]
        without, with_plugin = [], []
        for _ in range(args.runs):
            without.append(timed([*base, "-p", "no:llm"], cwd))
            with_plugin.append(timed(base, cwd))
    a, b = statistics.median(without), statistics.median(with_plugin)
    print(f"pytest --co without the plugin: {a:.1f} ms (median of {args.runs})")
    print(f"pytest --co with the plugin   : {b:.1f} ms")
    print(f"added by pytest-llm           : {b - a:+.1f} ms  ratio {b / a:.3f}  (budget +50 ms)")


if __name__ == "__main__":
    main()
