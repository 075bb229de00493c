"""Cost of replaying a recorded answer, per test, beside a live call; and memory as tests grow.

Budget (DESIGN.md): replaying a recorded answer costs well under a millisecond per test,
and memory stays flat as the number of tests grows. Each "test" here does what the
``llm`` fixture does in record mode ``none``: open its cassette (one JSON file with a
real-sized answer), replay one chat call, save (nothing to write) and drop it. Beside
it, the same call made live against FakeOllama over loopback (no delays), alternating
test by test so machine noise hits both alike.

    python bench/cassette_replay.py [--tests 500]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from pytest_llm.backends import ChatRequest, create_backend
from pytest_llm.cassettes import Cassette, CassetteSettings
from pytest_llm.testing import FakeOllama

ANSWER = "Lyon is a city in France, at the confluence of the Rhône and the Saône. " * 12


def request(i: int) -> ChatRequest:
    return ChatRequest(model="llama3.2", messages=({"role": "user", "content": f"Question {i}?"},))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tests", type=int, default=500)
    args = parser.parse_args()
    with FakeOllama(ANSWER) as fake, tempfile.TemporaryDirectory() as tmp:
        live = create_backend("ollama", fake.url, timeout_seconds=10)
        record = CassetteSettings(mode="once", rootpath=Path(tmp), invocation_dir=Path(tmp))
        replay = CassetteSettings(mode="none", rootpath=Path(tmp), invocation_dir=Path(tmp))
        paths = [Path(tmp, f"test_{i}.json") for i in range(args.tests)]
        for i in range(args.tests):  # record one cassette per test
            cassette = Cassette(paths[i], record, test=f"test_{i}")
            cassette.wrap(live).chat(request(i))
            cassette.save()

        def replayed(i: int) -> float:
            start = time.perf_counter()
            cassette = Cassette(paths[i], replay, test=f"test_{i}")
            completion = cassette.wrap(live).chat(request(i))
            cassette.save()
            assert completion.cached and completion.content == ANSWER
            return (time.perf_counter() - start) * 1000

        def called(i: int) -> float:
            start = time.perf_counter()
            live.chat(request(i))
            return (time.perf_counter() - start) * 1000

        replays, calls = [], []
        for i in range(args.tests):
            replays.append(replayed(i))
            calls.append(called(i))

        tracemalloc.start()  # after one pass over every test (warm-up above)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(10):
            for i in range(args.tests):
                replayed(i)
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        live.close()

    r, c = statistics.median(replays), statistics.median(calls)
    print(f"replay one test from its cassette : {r * 1000:.0f} us (median of {args.tests})")
    print(f"live call to FakeOllama (loopback): {c * 1000:.0f} us")
    print(f"replay / live                     : {r / c:.2f}  (budget: replay well under 1 ms)")
    replays_measured = args.tests * 10
    print(
        f"memory over {replays_measured} more replays: {(after - before) / 1024:+.1f} KiB "
        f"retained, {peak / 1024:.0f} KiB peak (flat: each cassette is dropped at its end)"
    )


if __name__ == "__main__":
    main()
