"""Harness overhead per call against the raw ``ollama`` client, side by side in one run.

Target (issue 13, row 3): the harness adds at most 0.1 ms per call over the raw client
streaming the same answer. Both sides talk to one FakeOllama (no delays, in its own process) over
loopback, with one client each (connections reused), alternating call by call so machine
noise hits both alike.

    python -m bench.overhead [--calls 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json

import ollama

from bench._report import Row, Settings, verdict
from bench._side_by_side import alternate, fake_in_subprocess
from pytest_llm import Harness, HarnessConfig

ANSWER = '{"name": "Lyon", "country": "France", "population": 513275}'
MESSAGES = [{"role": "user", "content": "Describe Lyon as JSON."}]


def raw_call(client: ollama.Client) -> str:
    parts = []
    for chunk in client.chat(model="llama3.2", messages=MESSAGES, stream=True, format="json",
                             options={"temperature": 0, "seed": 42}):  # fmt: skip
        if chunk.message.content:
            parts.append(chunk.message.content)
    text = "".join(parts)
    json.loads(text)  # the same parse the harness does, so only the harness's own work differs
    return text


def harness_call(harness: Harness) -> str:
    return harness.chat(MESSAGES, json_mode=True).content


BUDGET_MS = 0.1


def measure(*, calls: int, rounds: int, warmup: int = 20) -> dict[str, float]:
    """ms per call of each side (``raw``, ``ours``): the median of ``rounds`` alternating."""
    with fake_in_subprocess(ANSWER) as url:
        client = ollama.Client(host=url, timeout=30)
        harness = Harness(HarnessConfig(host=url, timeout_seconds=30))
        try:
            return alternate(
                {"raw": lambda: raw_call(client), "ours": lambda: harness_call(harness)},
                calls=calls,
                rounds=rounds,
                warmup=warmup,
            )
        finally:
            harness.close()
            client.close()


def rows(settings: Settings) -> list[Row]:
    calls, rounds = settings.size(300, 20), max(settings.runs, 1 if settings.smoke else 5)
    ms = measure(calls=calls, rounds=rounds, warmup=settings.size(20, 3))
    return [
        Row(
            "harness-per-call",
            "`Harness.chat` per call (JSON answer, streamed)",
            "ms",
            ms["ours"],
            ms["raw"],
            f"≤ +{BUDGET_MS} ms",
            verdict(settings, ms["ours"] - ms["raw"] <= BUDGET_MS),
            how=f"raw `ollama.Client` streaming the same answer from FakeOllama (own process); "
            f"call by call alternating, median of {rounds} rounds x {calls} calls, wall clock",
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    ms = measure(calls=args.calls, rounds=args.rounds)
    r, h = ms["raw"], ms["ours"]
    print(f"raw ollama client : {r:.3f} ms/call (median of {args.rounds} rounds x {args.calls})")
    print(f"pytest-llm harness: {h:.3f} ms/call (JSON parse + validation included)")
    print(f"overhead          : {h - r:+.3f} ms/call  ratio {h / r:.3f}  (budget +0.1 ms)")


if __name__ == "__main__":
    main()
