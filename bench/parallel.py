"""Parallel runs reach the server's limit: ``pytest -n N`` against a server with N slots.

Budget (DESIGN.md): 32 tests x 250 ms against a server serving 4 requests at once,
under ``-n 4``, take close to 32 x 0.25 / 4 = 2 s plus xdist start-up. Side by side,
alternating, the script runs

* the *start-up* suite: the same 32 tests with -n 4 against a server that answers at once
  (what xdist, the plugin and 32 HTTP round trips cost without any model time), and
* the *loaded* suite: every answer takes 250 ms and FakeOllama serves 4 at a time,

and compares the loaded wall time with the ideal (2 s + start-up) as a ratio. The run's
own ``--llm-report`` gives the parallelism the plugin measured (the server's busy time
over the wall time).

    python bench/parallel.py [--runs 3] [--tests 32] [--latency 0.25] [--workers 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_llm.testing import FakeOllama

SUITE = """
import pytest

@pytest.mark.parametrize("i", range({tests}))
def test_answer(llm, i):
    assert llm.chat(f"question {{i}}").content == "ok"
"""


def session(cwd: Path, fake: FakeOllama, workers: int) -> tuple[float, dict[str, float]]:
    report = cwd / "report.json"
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(workers)]
    args += [f"--llm-host={fake.url}", f"--llm-report={report}"]
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"the benchmark suite failed:\n{done.stdout}\n{done.stderr}")
    totals = json.loads(report.read_text())["totals"]
    return wall, totals


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tests", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.25, help="seconds per answer")
    parser.add_argument("--workers", type=int, default=4, help="-n and the server's slots")
    args = parser.parse_args()
    ideal = args.tests * args.latency / args.workers
    startup_walls, loaded_walls, parallelism = [], [], []
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeOllama("ok") as instant,
        FakeOllama("ok", first_token_delay=args.latency, parallel=args.workers) as loaded,
    ):
        cwd = Path(tmp)
        (cwd / "test_parallel.py").write_text(SUITE.format(tests=args.tests))
        for _ in range(args.runs):
            startup_walls.append(session(cwd, instant, args.workers)[0])
            wall, totals = session(cwd, loaded, args.workers)
            loaded_walls.append(wall)
            parallelism.append(totals["parallelism"])
        slots_used = loaded.max_in_flight
    startup = statistics.median(startup_walls)
    measured = statistics.median(loaded_walls)
    target = ideal + startup
    print(
        f"{args.tests} tests x {args.latency * 1000:.0f} ms, -n {args.workers}, "
        f"server slots {args.workers} (median of {args.runs} runs)"
    )
    print(f"start-up (same suite, instant answers): {startup:6.2f} s")
    print(f"ideal model time / slots              : {ideal:6.2f} s")
    print(f"ideal + start-up                      : {target:6.2f} s")
    print(f"measured                              : {measured:6.2f} s")
    print(f"measured / (ideal + start-up)         : {measured / target:6.3f}")
    print(f"(measured - start-up) / ideal         : {(measured - startup) / ideal:6.3f}")
    print(
        f"parallelism reported by --llm-report  : x{statistics.median(parallelism):.2f} "
        f"(server busy time / wall, start-up included); server peak {slots_used} in flight"
    )


if __name__ == "__main__":
    main()
