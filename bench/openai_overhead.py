"""The OpenAI-compatible backend's overhead per call against a bare httpx SSE loop, side by side.

Budget (DESIGN.md): the harness adds at most 0.5 ms per call over a raw client streaming the
same answer. Here the raw client is the least code that streams ``/v1/chat/completions``
(httpx, one ``json.loads`` per event); the other side is ``Harness`` with ``backend="openai"``.
Both talk to one FakeOllama ``/v1`` (no delays, in its own process) over loopback, with one
client each (connections reused), alternating call by call so machine noise hits both alike.

    python -m bench.openai_overhead [--calls 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json

import httpx

from bench._side_by_side import alternate, fake_in_subprocess
from pytest_llm import Harness, HarnessConfig

ANSWER = '{"name": "Lyon", "country": "France", "population": 513275}'
MESSAGES = [{"role": "user", "content": "Describe Lyon as JSON."}]
BODY = {
    "model": "llama3.2",
    "messages": MESSAGES,
    "stream": True,
    "stream_options": {"include_usage": True},
    "response_format": {"type": "json_object"},
    "temperature": 0,
    "seed": 42,
}


def raw_call(client: httpx.Client) -> str:
    parts = []
    with client.stream("POST", "/v1/chat/completions", json=BODY) as response:
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[6:])["choices"]:
                parts.append(choice["delta"].get("content") or "")
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
        client = httpx.Client(base_url=url, timeout=30)
        harness = Harness(HarnessConfig(backend="openai", host=url, timeout_seconds=30))
        ms = alternate(
            {"raw": lambda: raw_call(client), "ours": lambda: harness_call(harness)},
            calls=args.calls,
            rounds=args.rounds,
        )
        harness.close()
        client.close()
    r, h = ms["raw"], ms["ours"]
    print(f"raw httpx SSE loop       : {r:.3f} ms/call (median of {args.rounds} x {args.calls})")
    print(f"harness, openai backend  : {h:.3f} ms/call (JSON parse + validation included)")
    print(f"overhead                 : {h - r:+.3f} ms/call  ratio {h / r:.3f}  (budget +0.5 ms)")


if __name__ == "__main__":
    main()
