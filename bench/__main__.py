"""``python -m bench``: every benchmark, side by side, as one Markdown table (and JSON).

    python -m bench [--smoke] [--json PATH] [--only NAME,NAME] [--runs N] [--no-install]

Each benchmark starts its own servers (FakeOllama with latency and slots), alternates the
compared sides run by run and reports medians. ``--smoke`` runs small sizes and gives no
verdicts (CI runs it so the bench does not rot). The exit status is 1 when a benchmark
failed to measure (a missed target is a ``no`` in the table, not a failure).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench._registry import BENCHMARKS, Benchmark
from bench._report import Row, Settings, machine, markdown, write_json
from bench._side_by_side import BenchError


def _load(benchmark: Benchmark) -> Callable[[Settings], list[Row]]:
    module, _, function = benchmark.target.partition(":")
    found: Callable[[Settings], list[Row]] = getattr(importlib.import_module(module), function)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes, no verdicts")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the rows as JSON")
    parser.add_argument(
        "--only",
        metavar="NAME,NAME",
        help=f"run only these: {', '.join(b.name for b in BENCHMARKS)}",
    )
    parser.add_argument("--runs", type=int, help="alternating runs per figure (default 5, smoke 1)")
    parser.add_argument(
        "--no-install", action="store_true", help="never install promptfoo (skip its row if absent)"
    )
    args = parser.parse_args(argv)
    chosen = BENCHMARKS
    if args.only:
        names = {name.strip() for name in args.only.split(",") if name.strip()}
        unknown = names - {b.name for b in BENCHMARKS}
        if unknown:
            parser.error(
                f"unknown benchmark {', '.join(sorted(unknown))}: "
                f"choose from {', '.join(b.name for b in BENCHMARKS)}"
            )
        chosen = [b for b in BENCHMARKS if b.name in names]
    runs = args.runs if args.runs is not None else (1 if args.smoke else 5)
    if runs < 1:
        parser.error(f"--runs must be at least 1, got {runs}")

    def log(message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    info = machine()
    rows: list[Row] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="pytest-llm-bench-") as tmp:
        for benchmark in chosen:
            log(f"{benchmark.name} ...")
            workdir = Path(tmp, benchmark.name)
            workdir.mkdir()
            settings = Settings(
                smoke=args.smoke, runs=runs, workdir=workdir, install=not args.no_install, log=log
            )
            load = round(os.getloadavg()[0], 1)
            try:
                found = _load(benchmark)(settings)
                for row in found:
                    row.extra["load"] = [load, round(os.getloadavg()[0], 1)]
                    row.how += f"; load average {load} → {row.extra['load'][1]}"
                rows.extend(found)
            except (BenchError, OSError) as exc:
                failed = True
                rows.append(Row(benchmark.name, benchmark.name, "", None, None, "-", None,
                                error=str(exc)))  # fmt: skip
                log(f"{benchmark.name} failed: {exc}")
            except Exception as exc:  # a bug in the benchmark: shown whole, the others still run
                failed = True
                rows.append(Row(benchmark.name, benchmark.name, "", None, None, "-", None,
                                error=f"{type(exc).__name__}: {exc}"))  # fmt: skip
                log(f"{benchmark.name} crashed:\n{traceback.format_exc()}")
    info["load_average_end"] = machine()["load_average"]
    print(markdown(rows, info, smoke=args.smoke), end="")
    if args.json is not None:
        write_json(args.json, rows, info, smoke=args.smoke)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
