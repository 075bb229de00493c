"""The proxy's cost per call over calling the upstream server directly, side by side.

Target (issue 14): ``llm_proxy`` adds at most 1 ms per call. One application client (an
``httpx.Client``, connections reused) sends the same request either straight to the
upstream server (FakeOllama, no delays, in its own process) or to the proxy, which answers
it through the test's backend from the same server, in the same API: Ollama's
``/api/chat`` through the Ollama backend, or ``/v1/chat/completions`` through the OpenAI
backend. The two sides alternate call by call so machine noise hits both alike. The proxy
runs in the bench's process, as it runs in the test process under pytest, with no cassette
(record mode ``off``: a cassette lookup is the harness's, measured by the replay rows).

    python -m bench.proxy_overhead [--calls 300] [--rounds 5] [--api ollama|openai] [--stream]
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from bench._report import Row, Settings, verdict
from bench._side_by_side import alternate, fake_in_subprocess
from pytest_llm import HarnessConfig, LLMProxy
from pytest_llm.backends import Backend
from pytest_llm.backends.ollama import OllamaBackend
from pytest_llm.backends.openai import OpenAIBackend
from pytest_llm.proxy.server import ProxyServer

ANSWER = "The capital of France is Paris, a city of two million people."
MESSAGES = [{"role": "user", "content": "Capital of France?"}]
BUDGET_MS = 1.0
#: The route each API's client calls, below the server's root.
ROUTES = {"ollama": "/api/chat", "openai": "/v1/chat/completions"}


def body(api: str, stream: bool) -> dict[str, Any]:
    if api == "ollama":
        options = {"temperature": 0, "seed": 42}
        return {"model": "llama3.2", "messages": MESSAGES, "stream": stream, "options": options}
    return {"model": "llama3.2", "messages": MESSAGES, "temperature": 0, "seed": 42,
            "stream": stream}  # fmt: skip


def call(client: httpx.Client, url: str, api: str, stream: bool) -> str:
    if stream:
        with client.stream("POST", url, json=body(api, True)) as response:
            return "".join(response.iter_lines())
    answer = client.post(url, json=body(api, False)).json()
    if api == "ollama":
        return str(answer["message"]["content"])
    return str(answer["choices"][0]["message"]["content"])


@contextmanager
def proxy_to(upstream: str, api: str) -> Iterator[LLMProxy]:
    """The proxy of one test whose backend speaks ``api`` to the server at ``upstream``."""
    host = upstream if api == "ollama" else upstream + "/v1"
    backend: Backend = (
        OllamaBackend(host=host, timeout_seconds=30)
        if api == "ollama"
        else OpenAIBackend(host=host, timeout_seconds=30)
    )
    config = HarnessConfig(backend=api, host=host)
    with ProxyServer() as server:
        proxy = LLMProxy(url=server.url, backend=backend, config=config, test="bench")
        try:
            with server.serving(proxy):
                yield proxy
        finally:
            backend.close()


def measure(
    *, calls: int, rounds: int, api: str, warmup: int = 20, stream: bool = False
) -> dict[str, float]:
    """ms per call of each side (``direct``, ``proxy``): the median of ``rounds`` alternating."""
    with fake_in_subprocess(ANSWER) as upstream, proxy_to(upstream, api) as proxy:
        direct_url, proxied_url = upstream + ROUTES[api], proxy.url + ROUTES[api]
        with httpx.Client(timeout=30) as direct, httpx.Client(timeout=30) as proxied:
            # the same answer both ways
            assert call(direct, direct_url, api, False) == call(proxied, proxied_url, api, False)
            return alternate(
                {
                    "direct": lambda: call(direct, direct_url, api, stream),
                    "proxy": lambda: call(proxied, proxied_url, api, stream),
                },
                calls=calls,
                rounds=rounds,
                warmup=warmup,
            )


def rows(settings: Settings) -> list[Row]:
    calls, rounds = settings.size(300, 20), max(settings.runs, 1 if settings.smoke else 5)
    found = []
    for api, backend in (("ollama", "Ollama"), ("openai", "OpenAI")):
        ms = measure(calls=calls, rounds=rounds, api=api, warmup=settings.size(20, 3))
        found.append(
            Row(
                f"proxy-per-call-{api}",
                f"`llm_proxy` per call (`{ROUTES[api]}`, not streamed)",
                "ms",
                ms["proxy"],
                ms["direct"],
                f"≤ +{BUDGET_MS:g} ms",
                verdict(settings, ms["proxy"] - ms["direct"] <= BUDGET_MS),
                how=f"the same httpx request straight to FakeOllama (own process) or through "
                f"the proxy ({backend} backend upstream, no cassette); call by call "
                f"alternating, median of {rounds} rounds x {calls} calls, wall clock",
            )
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--api", choices=sorted(ROUTES), default="ollama")
    parser.add_argument("--stream", action="store_true", help="streamed requests")
    args = parser.parse_args()
    ms = measure(calls=args.calls, rounds=args.rounds, api=args.api, stream=args.stream)
    d, p = ms["direct"], ms["proxy"]
    kind = f"{ROUTES[args.api]}, {'streamed' if args.stream else 'not streamed'}"
    print(
        f"direct to the server : {d:.3f} ms/call ({kind}; median of {args.rounds} x {args.calls})"
    )
    print(f"through llm_proxy    : {p:.3f} ms/call")
    print(f"overhead             : {p - d:+.3f} ms/call  ratio {p / d:.3f}  "
          f"(budget +{BUDGET_MS:g} ms)")  # fmt: skip


if __name__ == "__main__":
    main()
