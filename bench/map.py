"""``Harness.map`` against a bare asyncio loop over ``ollama.AsyncClient``, side by side.

Budget (DESIGN.md): ``Harness.map`` reaches the server's limit as a bare asyncio loop does.
A FakeOllama with N parallel slots and a fixed latency per answer (in its own process)
serves both; the ideal wall time is prompts x latency / N.

    python -m bench.map [--prompts 32] [--slots 4] [--latency 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import ollama

from bench._side_by_side import fake_in_subprocess
from pytest_llm import Harness, HarnessConfig


async def bare_loop(url: str, prompts: list[str], slots: int) -> None:
    client = ollama.AsyncClient(host=url, timeout=30)
    limit = asyncio.Semaphore(slots)

    async def one(prompt: str) -> str:
        async with limit:
            parts = []
            stream = await client.chat(
                model="llama3.2", messages=[{"role": "user", "content": prompt}], stream=True
            )
            async for chunk in stream:
                parts.append(chunk.message.content or "")
            return "".join(parts)

    await asyncio.gather(*(one(p) for p in prompts))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args()
    prompts = [f"prompt {i}" for i in range(args.prompts)]
    replies = "a short answer"
    with fake_in_subprocess(replies, parallel=args.slots, first_token_delay=args.latency) as url:
        harness = Harness(HarnessConfig(host=url, concurrency=args.slots))
        harness.map(prompts[: args.slots])  # warm up
        start = time.perf_counter()
        asyncio.run(bare_loop(url, prompts, args.slots))
        bare = time.perf_counter() - start
        start = time.perf_counter()
        harness.map(prompts)
        ours = time.perf_counter() - start
        harness.close()
    ideal = args.prompts * args.latency / args.slots
    print(f"ideal (prompts x latency / slots): {ideal:.3f} s")
    print(f"bare asyncio + AsyncClient       : {bare:.3f} s  ({bare / ideal:.2f} x ideal)")
    print(
        f"Harness.map (concurrency={args.slots})     : {ours:.3f} s  ({ours / ideal:.2f} x ideal)"
    )
    print(f"Harness.map / bare loop          : {ours / bare:.3f}")


if __name__ == "__main__":
    main()
