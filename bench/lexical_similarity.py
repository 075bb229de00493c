"""Why lexical similarity uses rapidfuzz, not difflib: the two side by side in one run.

Both compute a word-level ``2·matches / (len a + len b)`` between a text and a lightly
edited copy (every tenth word replaced). difflib's ``SequenceMatcher`` (with
``autojunk=False``: with autojunk, common words are ignored and long texts score ~0) is
quadratic on long, similar texts; rapidfuzz's ``Indel`` is bit-parallel. Prints the
time of each and the ratio per size; difflib is skipped above ``--difflib-max`` words.

    python bench/lexical_similarity.py [--difflib-max 20000]
"""

from __future__ import annotations

import argparse
import difflib
import random
import time
from collections.abc import Callable

from rapidfuzz.distance import Indel


def timed(
    measure: Callable[[list[str], list[str]], float], a: list[str], b: list[str]
) -> tuple[float, float]:
    start = time.perf_counter()
    value = measure(a, b)
    return time.perf_counter() - start, value


def fast_ratio(a: list[str], b: list[str]) -> float:
    return float(Indel.normalized_similarity(a, b))


def difflib_ratio(a: list[str], b: list[str]) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--difflib-max", type=int, default=20_000)
    args = parser.parse_args()
    rng = random.Random(1)
    vocabulary = ["".join(rng.choices("abcdefghij", k=rng.randint(2, 8))) for _ in range(3000)]
    print(f"{'words':>7}  {'difflib s':>10}  {'rapidfuzz s':>11}  {'ratio':>7}  values")
    for size in (100, 1_000, 5_000, 20_000, 100_000):
        words = rng.choices(vocabulary, k=size)
        edited = [w if i % 10 else "zzz" for i, w in enumerate(words)]
        fast, fast_value = timed(fast_ratio, words, edited)
        if size <= args.difflib_max:
            slow, slow_value = timed(difflib_ratio, words, edited)
            ratio = f"x{slow / fast:,.0f}" if fast else "-"
            print(f"{size:>7}  {slow:>10.4f}  {fast:>11.4f}  {ratio:>7}  {slow_value:.3f}")
        else:
            print(f"{size:>7}  {'skipped':>10}  {fast:>11.4f}  {'-':>7}  {fast_value:.3f}")


if __name__ == "__main__":
    main()
