"""Whole pytest sessions replayed from cassettes, beside plain tests of the same shape.

Targets (issue 13's table, rows 4 and 6):

* 1,000 tests that each replay one recorded answer (``--llm-record-mode=none``,
  no server running) cost at most 0.3 ms more per test than 1,000 plain tests of the
  same shape (the same parametrized function asserting on the same text, no ``llm``).
  The two sessions alternate; the figure is each session's median CPU time (user + sys),
  which other processes on a shared machine do not inflate as they do wall time.
* the peak memory (``VmHWM``) of 5,000 such replayed tests with ``--llm-report`` grows by
  at most 2 MiB over the same at 500 tests, beyond what pytest itself grows by for as many
  plain tests without the plugin (``-p no:llm``; their growth is subtracted: pytest keeps
  every item and every report, whatever the plugin does).

The cassettes are recorded once against FakeOllama (``--llm-record-mode=once``) and
reused by every replay.

    python -m bench.replay [--tests 1000] [--runs 5] [--memory 500,5000]
    python -m bench.replay --tests 0 --runs 3 --memory 500,5000   # the memory row only
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench._report import Row, Settings, verdict
from bench._side_by_side import (
    BenchError,
    chat_calls,
    closed_port_url,
    median,
    pytest_args,
    quiet_env,
    run,
)
from pytest_llm.testing import FakeOllama

PER_TEST_BUDGET_MS = 0.3
MEMORY_BUDGET_MIB = 2.0
ANSWER = "Lyon is a city in France, at the confluence of the Rhone and the Saone. " * 6

REPLAYED = """
import pytest

ANSWER = {answer!r}

@pytest.mark.parametrize("i", range({tests}))
def test_answer(llm, i):
    assert llm.chat(f"Question {{i}}?").content == ANSWER
"""
PLAIN = """
import pytest

ANSWER = {answer!r}

def answer(prompt):
    return ANSWER

@pytest.mark.parametrize("i", range({tests}))
def test_answer(i):
    assert answer(f"Question {{i}}?") == ANSWER
"""


#: A plugin that writes the session's peak resident memory (``VmHWM``) to ``.bench-peak``.
#: ``ru_maxrss`` would not do: a child's counts the parent's memory at the fork, before
#: its exec, and the bench process is larger than a small session.
PEAK_PLUGIN = """
import pytest

@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(".bench-peak", "w") as out:
        out.write(peak)
"""


def make_suites(workdir: Path, tests: int) -> tuple[Path, Path]:
    """A replayed suite (its cassettes recorded now) and a plain one, of ``tests`` tests."""
    replayed, plain = workdir / f"replayed-{tests}", workdir / f"plain-{tests}"
    for folder, source in ((replayed, REPLAYED), (plain, PLAIN)):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "pytest.ini").write_text("[pytest]\n")
        (folder / "test_suite.py").write_text(source.format(answer=ANSWER, tests=tests))
        (folder / "_bench_peak.py").write_text(PEAK_PLUGIN)
    with FakeOllama(ANSWER) as fake:
        record = pytest_args(f"--llm-host={fake.url}", "--llm-record-mode=once", "-p", "no:xdist")
        run(record, cwd=replayed, env=quiet_env(), timeout=600, what="recording the cassettes")
        if chat_calls(fake) != tests:
            raise BenchError(f"recording made {chat_calls(fake)} calls for {tests} tests")
    return replayed, plain


def _replay_args(down: str, *extra: str) -> list[str]:
    return pytest_args(f"--llm-host={down}", "--llm-record-mode=none", "-p", "no:xdist", *extra)


def _passed(stdout: str, tests: int) -> None:
    if f"{tests} passed" not in stdout:
        raise BenchError(f"expected {tests} passed tests, the session said:\n{stdout[-1500:]}")


def per_test(workdir: Path, tests: int, runs: int, warmup: bool = True) -> dict[str, float]:
    """Median CPU and wall seconds of the replayed and the plain session, alternating."""
    replayed, plain = make_suites(workdir, tests)
    down = closed_port_url()
    sides = {
        "replayed": (replayed, _replay_args(down)),
        "plain": (plain, pytest_args("-p", "no:xdist")),
    }
    env = quiet_env()
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    wall: dict[str, list[float]] = {name: [] for name in sides}
    first = 0 if warmup else 1  # a first round warms the OS file cache, not measured
    for round_ in range(first, runs + 1):
        for name, (cwd, args) in sides.items():
            session = run(args, cwd=cwd, env=env, timeout=600, what=f"the {name} suite")
            _passed(session.stdout, tests)
            if round_:
                cpu[name].append(session.cpu_s)
                wall[name].append(session.wall_s)
    return {
        **{f"{name}_cpu_s": median(values) for name, values in cpu.items()},
        **{f"{name}_wall_s": median(values) for name, values in wall.items()},
    }


def rows(settings: Settings) -> list[Row]:
    # its sessions last about a second each: twice the rounds, for a steadier median
    tests, runs = settings.size(1000, 50), settings.size(2 * settings.runs, settings.runs)
    figures = per_test(settings.workdir, tests, runs, warmup=not settings.smoke)
    ours = figures["replayed_cpu_s"] / tests * 1000
    reference = figures["plain_cpu_s"] / tests * 1000
    wall_added = (figures["replayed_wall_s"] - figures["plain_wall_s"]) / tests * 1000
    return [
        Row(
            "replay-per-test",
            f"{tests:,} tests replayed from cassettes, per test",
            "ms",
            ours,
            reference,
            f"≤ +{PER_TEST_BUDGET_MS} ms",
            verdict(settings, ours - reference <= PER_TEST_BUDGET_MS),
            how=f"reference: {tests:,} plain tests of the same shape (plugin loaded, unused); "
            f"record mode none, server down; alternating, median of {runs} sessions each, "
            f"CPU time of the session / tests (wall: {wall_added:+.3f} ms per test)",
            extra=figures,
        )
    ]


def _peak_mib(cwd: Path) -> float:
    """The peak resident memory the last session in ``cwd`` wrote (``PEAK_PLUGIN``)."""
    peak = cwd / ".bench-peak"
    try:
        return int(peak.read_text()) / 1024
    except (OSError, ValueError):
        raise BenchError(f"the session in {cwd} wrote no peak memory to {peak}") from None


def memory(workdir: Path, sizes: tuple[int, int], runs: int) -> dict[str, float]:
    """Median peak RSS (MiB) of replayed sessions with ``--llm-report`` and of plain ones
    without the plugin (``-p no:llm``)."""
    down = closed_port_url()
    env = quiet_env()
    suites = {size: make_suites(workdir, size) for size in sizes}
    peaks: dict[str, list[float]] = {}
    for _ in range(runs):
        for size, (replayed, plain) in suites.items():
            report = replayed / "report.json"
            args = _replay_args(down, f"--llm-report={report}", "-p", "_bench_peak")
            session = run(args, cwd=replayed, env=env, timeout=900, what=f"{size} replayed tests")
            _passed(session.stdout, size)
            if len(json.loads(report.read_text())["tests"]) != size:
                raise BenchError(f"the --llm-report of {size} tests does not hold {size} tests")
            peaks.setdefault(f"replayed_{size}", []).append(_peak_mib(replayed))
            args = pytest_args("-p", "no:xdist", "-p", "no:llm", "-p", "_bench_peak")
            session = run(args, cwd=plain, env=env, timeout=900, what=f"{size} plain tests")
            _passed(session.stdout, size)
            peaks.setdefault(f"plain_{size}", []).append(_peak_mib(plain))
    return {name: median(values) for name, values in peaks.items()}


def memory_rows(settings: Settings) -> list[Row]:
    small, large = (20, 100) if settings.smoke else (500, 5000)
    runs = settings.size(max(1, min(settings.runs, 3)), 1)
    peaks = memory(settings.workdir, (small, large), runs)
    ours = peaks[f"replayed_{large}"] - peaks[f"replayed_{small}"]
    plain = peaks[f"plain_{large}"] - peaks[f"plain_{small}"]
    return [
        Row(
            "memory-growth",
            f"peak memory growth, {small:,} → {large:,} replayed tests with `--llm-report`",
            "MiB",
            ours,
            plain,
            f"≤ +{MEMORY_BUDGET_MIB:.0f} MiB",
            verdict(settings, ours - plain <= MEMORY_BUDGET_MIB),
            how=f"reference: the growth of plain sessions over as many tests without the "
            f"plugin (`-p no:llm`: pytest's own items and reports); peak RSS (VmHWM), median of "
            f"{runs} session(s) each (replayed: "
            f"{peaks[f'replayed_{small}']:.1f} → {peaks[f'replayed_{large}']:.1f} MiB, plain: "
            f"{peaks[f'plain_{small}']:.1f} → {peaks[f'plain_{large}']:.1f} MiB)",
            extra=peaks,
        )
    ]


def _sizes(text: str) -> tuple[int, int]:
    """``--memory SMALL,LARGE``: two counts of tests, the first the smaller."""
    try:
        small, large = (int(n) for n in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not SMALL,LARGE (two counts of tests, e.g. 500,5000)"
        ) from None
    if not 0 < small < large:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 0 < SMALL < LARGE, e.g. 500,5000")
    return small, large


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tests", type=int, default=1000, help="0: no per-test figures")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--memory", type=_sizes, default=None, help="SMALL,LARGE: also measure memory"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.tests:
            figures = per_test(Path(tmp), args.tests, args.runs)
            for name, value in figures.items():
                print(f"{name:18}: {value:.3f} s  ({value / args.tests * 1000:.3f} ms per test)")
            added = (figures["replayed_cpu_s"] - figures["plain_cpu_s"]) / args.tests * 1000
            print(f"replay adds {added:+.3f} ms CPU per test (budget +{PER_TEST_BUDGET_MS} ms)")
        if args.memory:
            small, large = args.memory
            peaks = memory(Path(tmp, "memory"), (small, large), args.runs)
            for name, mib in peaks.items():
                print(f"peak RSS {name:14}: {mib:.1f} MiB")
            ours = peaks[f"replayed_{large}"] - peaks[f"replayed_{small}"]
            plain = peaks[f"plain_{large}"] - peaks[f"plain_{small}"]
            print(
                f"growth {small:,} -> {large:,} tests: replayed with --llm-report {ours:.1f} MiB, "
                f"plain {plain:.1f} MiB ({ours - plain:+.1f} MiB, budget +{MEMORY_BUDGET_MIB} MiB)"
            )


if __name__ == "__main__":
    main()
