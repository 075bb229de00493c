"""Harness overhead per call against the raw ``ollama`` client, side by side in one run.

Budget (DESIGN.md): the harness adds at most 0.5 ms per call over the raw client streaming
the same answer. Both sides talk to one FakeOllama (no delays, in its own process) over
loopback, with one client each (connections reused), alternating call by call so machine
noise hits both alike.

    python bench/overhead.py [--calls 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json

import ollama
from _side_by_side import alternate, fake_in_subprocess

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with fake_in_subprocess(ANSWER) as url:
        client = ollama.Client(host=url, timeout=30)
        harness = Harness(HarnessConfig(host=url, timeout_seconds=30))
        ms = alternate(
            {"raw": lambda: raw_call(client), "ours": lambda: harness_call(harness)},
            calls=args.calls,
            rounds=args.rounds,
        )
        harness.close()
        client.close()
    r, h = ms["raw"], ms["ours"]
    print(f"raw ollama client : {r:.3f} ms/call (median of {args.rounds} rounds x {args.calls})")
    print(f"pytest-llm harness: {h:.3f} ms/call (JSON parse + validation included)")
    print(f"overhead          : {h - r:+.3f} ms/call  ratio {h / r:.3f}  (budget +0.5 ms)")


if __name__ == "__main__":
    main()
