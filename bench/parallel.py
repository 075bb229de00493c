"""Parallel runs reach the server's limit: ``pytest -n N`` against a server with N slots.

Target (issue 13, row 2): 64 parametrized tests x 250 ms against a server serving 8
requests at once, under ``-n 8``, take at most 1.15 x (the ideal 64 x 0.25 / 8 = 2 s plus
start-up). Side by side, alternating, the script runs

* the *start-up* suite: the same tests with the same ``-n`` against a server that answers
  at once (what xdist, the plugin and the HTTP round trips cost without any model time), and
* the *loaded* suite: every answer takes 250 ms and FakeOllama serves 8 at a time,

and compares the loaded wall time with the ideal plus start-up, as a ratio. The run's own
``--llm-report`` gives the parallelism the plugin measured (the server's busy time over the
wall time).

    python -m bench.parallel [--runs 3] [--tests 64] [--latency 0.25] [--workers 8]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench._report import Row, Settings, verdict
from bench._side_by_side import BenchError, median, pytest_args, quiet_env, run
from pytest_llm.testing import FakeOllama

FACTOR = 1.15
SUITE = """
import pytest

@pytest.mark.parametrize("i", range({tests}))
def test_answer(llm, i):
    assert llm.chat(f"question {{i}}").content == "ok"
"""


def session(cwd: Path, fake: FakeOllama, workers: int) -> tuple[float, dict[str, float]]:
    """The wall time of one ``-n workers`` session against ``fake`` and its report's totals."""
    report = cwd / "report.json"
    args = pytest_args("-n", str(workers), f"--llm-host={fake.url}", f"--llm-report={report}")
    done = run(args, cwd=cwd, env=quiet_env(), timeout=600, what="the parallel suite")
    totals: dict[str, float] = json.loads(report.read_text())["totals"]
    return done.wall_s, totals


def measure(
    workdir: Path, *, tests: int, latency: float, workers: int, runs: int, warmup: bool = True
) -> dict[str, float]:
    """Median wall seconds of the start-up and the loaded suite, alternating, and more."""
    startup_walls, loaded_walls, parallelism = [], [], []
    with (
        FakeOllama("ok") as instant,
        FakeOllama("ok", first_token_delay=latency, parallel=workers) as loaded,
    ):
        (workdir / "pytest.ini").write_text("[pytest]\n")
        (workdir / "test_parallel.py").write_text(SUITE.format(tests=tests))
        if warmup:  # bytecode and the OS file cache
            session(workdir, instant, workers)
        for _ in range(runs):
            startup_walls.append(session(workdir, instant, workers)[0])
            wall, totals = session(workdir, loaded, workers)
            loaded_walls.append(wall)
            parallelism.append(totals["parallelism"])
        if loaded.max_in_flight > workers:
            raise BenchError(f"FakeOllama served {loaded.max_in_flight} at once, over {workers}")
        peak = loaded.max_in_flight
    return {
        "startup_s": median(startup_walls),
        "loaded_s": median(loaded_walls),
        "ideal_s": tests * latency / workers,
        "parallelism": median(parallelism),
        "server_peak": peak,
    }


def rows(settings: Settings) -> list[Row]:
    tests, workers = settings.size(64, 8), settings.size(8, 2)
    latency = 0.02 if settings.smoke else 0.25
    runs = settings.runs if settings.smoke else max(3, min(settings.runs, 5))
    f = measure(
        settings.workdir,
        tests=tests,
        latency=latency,
        workers=workers,
        runs=runs,
        warmup=not settings.smoke,
    )
    reference = f["ideal_s"] + f["startup_s"]
    return [
        Row(
            "parametrized-n8",
            f"{tests} parametrized tests x {latency * 1000:.0f} ms, `-n {workers}`, "
            f"{workers} slots",
            "s",
            f["loaded_s"],
            reference,
            f"≤ {FACTOR} x (ideal + start-up)",
            verdict(settings, f["loaded_s"] <= FACTOR * reference),
            how=f"reference: the same suite against an instant server (start-up "
            f"{f['startup_s']:.2f} s) + the ideal {f['ideal_s']:.2f} s; alternating, median of "
            f"{runs} sessions each, wall clock; parallelism x{f['parallelism']:.2f}, server peak "
            f"{f['server_peak']} in flight",
            extra=f,
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tests", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.25, help="seconds per answer")
    parser.add_argument("--workers", type=int, default=8, help="-n and the server's slots")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        f = measure(Path(tmp), tests=args.tests, latency=args.latency, workers=args.workers,
                    runs=args.runs)  # fmt: skip
    target = f["ideal_s"] + f["startup_s"]
    print(
        f"{args.tests} tests x {args.latency * 1000:.0f} ms, -n {args.workers}, "
        f"server slots {args.workers} (median of {args.runs} runs)"
    )
    print(f"start-up (same suite, instant answers): {f['startup_s']:6.2f} s")
    print(f"ideal model time / slots              : {f['ideal_s']:6.2f} s")
    print(f"ideal + start-up                      : {target:6.2f} s")
    print(f"measured                              : {f['loaded_s']:6.2f} s")
    print(f"measured / (ideal + start-up)         : {f['loaded_s'] / target:6.3f}  (≤ {FACTOR})")
    beyond = (f["loaded_s"] - f["startup_s"]) / f["ideal_s"]
    print(f"(measured - start-up) / ideal         : {beyond:6.3f}")
    print(
        f"parallelism reported by --llm-report  : x{f['parallelism']:.2f} "
        f"(server busy time / wall, start-up included); server peak {f['server_peak']} in flight"
    )


if __name__ == "__main__":
    main()
