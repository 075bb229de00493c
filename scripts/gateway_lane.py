"""The gateway lane's helpers (used by scripts/gateway-lane.sh; run with the project's Python).

    python scripts/gateway_lane.py upstreams WORK [--first-token-delay S] [--token-delay S]
        two FakeOllama servers serving one model ("llama3.2", the second with another digest,
        as if its tag had been re-pulled), plus a static file server for WORK/static; writes
        WORK/upstreams.json once serving and logs every chat request an upstream answered, with
        the tokens it counted, to WORK/upstreams.jsonl. Serves until SIGTERM (or --max-seconds).
    python scripts/gateway_lane.py config WORK
        writes WORK/gateway.yaml, the LiteLLM proxy config: each model name of GATEWAY_MODELS
        routed over both upstreams (openai/<model> at <upstream>/v1), the master key read from
        $GATEWAY_LANE_KEY.
    python scripts/gateway_lane.py wait URL SECONDS PID OUT
        waits (at most SECONDS) until the gateway at URL answers /health/liveliness, lists
        every model of GATEWAY_MODELS at /v1/models (with the key) and answers one chat; writes
        the /v1/models answer to OUT.
        Exit 1 at the deadline, or as soon as the process PID is gone.
    python scripts/gateway_lane.py served WORK
        exit 0 when each upstream answered at least one chat request, 1 saying which did not.
    python scripts/gateway_lane.py costmap SRC OUT MODEL
        a copy of LiteLLM's model cost map SRC in which MODEL's max_input_tokens is halved (what
        a newer map fetched at a gateway's start-up does to its /v1/models answer).
    python scripts/gateway_lane.py changed BEFORE AFTER MODEL
        exit 0 when MODEL's /v1/models entry differs between the two answers (so the identity
        check that follows is not vacuous), printing what changed.
    python scripts/gateway_lane.py compare LIVE_XML REPLAY_XML
        exit 0 when every answer kept in the live JUnit report is replayed identically.

Why ``openai/<model>`` at ``/v1`` and not ``ollama_chat/<model>``: the lane checks what the
gateway does to pytest-llm's OpenAI backend, so the upstreams speak the same API and LiteLLM
forwards their streams, usage chunks and finish reasons as they are; ``ollama_chat/`` would
test LiteLLM's translation of Ollama's API instead (and that route is the Ollama backend's,
pointed at Ollama itself). It is also how a gateway fronts vLLM, llama.cpp or Ollama's /v1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
import xml.etree.ElementTree as ET
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

#: The names the gateway serves -> the upstream model each is routed to. ``gw-model`` is
#: unknown to LiteLLM's cost map; ``gw-priced`` is known to it, so LiteLLM adds the map's
#: ``mode``, ``max_input_tokens`` and ``max_output_tokens`` to its /v1/models entry.
GATEWAY_MODELS = {"gw-model": "llama3.2", "gw-priced": "gpt-4o-mini"}
KEY_ENV = "GATEWAY_LANE_KEY"
WARM_UP = [{"role": "user", "content": "gateway lane warm-up"}]
#: The second upstream's digest of every model: one server re-pulled the tag.
REPULLED = "sha256:" + "ab" * 32
_TOKEN = re.compile(r"\s*\S+")


def answer_to(prompt: str) -> str:
    """What both upstreams answer (they serve the same model): a JSON object when asked for
    JSON, else a sentence of a few words that repeats the prompt's last word."""
    if "JSON" in prompt:
        return '{"city": "Lyon", "country": "France"}'
    last = prompt.split()[-1].strip(".?!") if prompt.split() else "nothing"
    return f"Heard you say {last} just now."


def count_tokens(text: str) -> int:
    """The upstreams' tokenizer: one token per character. No real tokenizer (LiteLLM's
    tiktoken) and no count of streamed chunks (one per word) gives these numbers, so a test
    that finds them came from the upstream's usage."""
    return len(text)


# --- upstreams -------------------------------------------------------------------------------


def upstreams(work: Path, first_token_delay: float, token_delay: float, max_seconds: float) -> int:
    from pytest_llm.testing import FakeOllama, RecordedRequest, Reply

    log_path = work / "upstreams.jsonl"
    log_lock = threading.Lock()

    def replies(index: int) -> Any:
        def reply(request: RecordedRequest) -> Reply:
            messages = request.messages
            prompt = str(messages[-1].get("content", "")) if messages else ""
            content = answer_to(prompt)
            tokens_in = sum(count_tokens(str(m.get("content", ""))) for m in messages)
            tokens_out = count_tokens(content)
            entry = {
                "upstream": index,
                "path": request.path,
                "model": request.model,
                "prompt": prompt,
                "content": content,
                "tokens_in": tokens_in,
                "tokens_out": tokens_out,
                "stream": request.stream,
                "authorization": request.headers.get("authorization"),
                "words": len(_TOKEN.findall(content)),
                "time": time.time(),
            }
            with log_lock, log_path.open("a") as log:
                log.write(json.dumps(entry) + "\n")
            return Reply(content=content, tokens_in=tokens_in, tokens_out=tokens_out)

        return reply

    models = list(dict.fromkeys(GATEWAY_MODELS.values()))
    fakes = [
        FakeOllama(
            replies(i), models=models, first_token_delay=first_token_delay, token_delay=token_delay
        )
        for i in range(2)
    ]
    fakes[1].digests.update({m: REPULLED for m in models})
    static = work / "static"
    static.mkdir(exist_ok=True)
    files = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietFiles, directory=str(static)))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    try:
        for fake in fakes:
            fake.start()
        state = {
            "urls": [fake.url for fake in fakes],
            "static": f"http://127.0.0.1:{files.server_address[1]}",
            "first_token_delay": first_token_delay,
            "token_delay": token_delay,
            "pid": os.getpid(),
        }
        tmp = work / ".upstreams.json.tmp"
        tmp.write_text(json.dumps(state))
        tmp.replace(work / "upstreams.json")
        print(f"upstreams serving at {', '.join(state['urls'])}", flush=True)
        stop.wait(max_seconds)
    finally:
        for fake in fakes:
            fake.stop()
        files.shutdown()
        files.server_close()
    return 0


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


# --- the gateway's config ----------------------------------------------------------------------


def config(work: Path) -> int:
    import yaml

    state = json.loads((work / "upstreams.json").read_text())
    model_list = [
        {
            "model_name": name,
            "litellm_params": {
                "model": f"openai/{upstream_model}",
                "api_base": f"{url}/v1",
                "api_key": "unused",  # the upstreams take any key; LiteLLM wants one for openai/
                "timeout": 30,
                "stream_timeout": 30,
            },
        }
        for name, upstream_model in GATEWAY_MODELS.items()
        for url in state["urls"]
    ]
    document = {
        "model_list": model_list,
        "router_settings": {"routing_strategy": "simple-shuffle"},  # LiteLLM's default, said
        "general_settings": {"master_key": f"os.environ/{KEY_ENV}"},
    }
    (work / "gateway.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return 0


# --- waiting for the gateway -------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie has died


def wait(url: str, seconds: float, pid: int, out: Path) -> int:
    import httpx

    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {os.environ[KEY_ENV]}"}
    last = "no answer yet"
    while True:
        try:
            live = httpx.get(f"{url}/health/liveliness", timeout=5)
            if live.status_code != 200:
                raise ValueError(f"/health/liveliness answered {live.status_code}")
            models = httpx.get(f"{url}/v1/models", headers=headers, timeout=5)
            if models.status_code != 200:
                raise ValueError(f"/v1/models answered {models.status_code}: {models.text[:200]}")
            listed = {row.get("id") for row in models.json()["data"]}
            missing = sorted(set(GATEWAY_MODELS) - listed)
            if missing:
                raise ValueError(f"/v1/models does not list {missing} yet (it lists {listed})")
            # one streamed chat through it before the tests, as pytest-llm asks: LiteLLM's
            # first one is slow (a second or so before its first token, measured here), and
            # would be the first test's TTFT
            body = {
                "model": next(iter(GATEWAY_MODELS)),
                "messages": WARM_UP,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            left = max(1.0, deadline - time.monotonic())
            with httpx.stream(
                "POST", f"{url}/v1/chat/completions", headers=headers, json=body, timeout=left
            ) as warm:
                text = "".join(warm.iter_text())
                if warm.status_code != 200 or "[DONE]" not in text:
                    raise ValueError(f"a first chat answered {warm.status_code}: {text[:200]}")
            out.write_text(models.text)
            return 0
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if not _alive(pid):
            print(f"the gateway (pid {pid}) exited before it was ready ({last})", file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            print(f"the gateway was not ready within {seconds:g} s ({last})", file=sys.stderr)
            return 1
        time.sleep(0.25)


# --- checks ------------------------------------------------------------------------------------


def served(work: Path) -> int:
    state = json.loads((work / "upstreams.json").read_text())
    counts = [0] * len(state["urls"])
    log = work / "upstreams.jsonl"
    for line in log.read_text().splitlines() if log.exists() else []:
        counts[json.loads(line)["upstream"]] += 1
    shown = ", ".join(f"{url} {n}" for url, n in zip(state["urls"], counts, strict=True))
    print(f"chat requests served per upstream: {shown}")
    idle = [url for url, n in zip(state["urls"], counts, strict=True) if n == 0]
    if idle:
        print(f"the gateway sent no request to {', '.join(idle)}", file=sys.stderr)
        return 1
    return 0


def costmap(src: Path, out: Path, model: str) -> int:
    cost_map = json.loads(src.read_text())
    entry = cost_map.get(model)
    if not isinstance(entry, dict) or not isinstance(entry.get("max_input_tokens"), int):
        print(f"{src} has no max_input_tokens for {model!r}", file=sys.stderr)
        return 1
    old = entry["max_input_tokens"]
    entry["max_input_tokens"] = old // 2
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(cost_map))
    print(f"cost map: {model} max_input_tokens {old} -> {old // 2}")
    return 0


def _entry(path: Path, model: str) -> dict[str, Any]:
    rows = json.loads(path.read_text())["data"]
    found = [row for row in rows if row.get("id") == model]
    if not found:
        sys.exit(f"{path} lists no {model!r}")
    entry: dict[str, Any] = found[0]
    return entry


def changed(before: Path, after: Path, model: str) -> int:
    old, new = _entry(before, model), _entry(after, model)
    diff = {
        k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
    }
    if not diff:
        print(f"the gateway's /v1/models entry of {model!r} did not change: {old}", file=sys.stderr)
        return 1
    shown = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in diff.items())
    print(f"the gateway's /v1/models entry of {model!r} changed: {shown}")
    return 0


def _answers(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for case in ET.parse(path).iter("testcase"):
        kept = [p.get("value") or "" for p in case.iter("property") if p.get("name") == "answer"]
        if kept:
            out[f"{case.get('classname')}::{case.get('name')}"] = kept
    return out


def compare(live_xml: Path, replay_xml: Path) -> int:
    live, replay = _answers(live_xml), _answers(replay_xml)
    if not live:
        print(f"no answers were kept in {live_xml}", file=sys.stderr)
        return 1
    differ = [t for t in sorted(set(live) | set(replay)) if live.get(t) != replay.get(t)]
    for test in differ:
        print(f"{test}:\n  live:   {live.get(test)}\n  replay: {replay.get(test)}")
    if differ:
        print(f"{len(differ)} test(s) replayed other answers than live", file=sys.stderr)
        return 1
    print(f"{sum(map(len, live.values()))} answers of {len(live)} tests replayed identically")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gateway_lane.py")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("upstreams")
    up.add_argument("work", type=Path)
    up.add_argument("--first-token-delay", type=float, default=0.4)
    up.add_argument("--token-delay", type=float, default=0.25)
    up.add_argument("--max-seconds", type=float, default=1800)
    commands.add_parser("config").add_argument("work", type=Path)
    w = commands.add_parser("wait")
    w.add_argument("url")
    w.add_argument("seconds", type=float)
    w.add_argument("pid", type=int)
    w.add_argument("out", type=Path)
    commands.add_parser("served").add_argument("work", type=Path)
    c = commands.add_parser("costmap")
    c.add_argument("src", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("model")
    ch = commands.add_parser("changed")
    ch.add_argument("before", type=Path)
    ch.add_argument("after", type=Path)
    ch.add_argument("model")
    cmp = commands.add_parser("compare")
    cmp.add_argument("live", type=Path)
    cmp.add_argument("replay", type=Path)
    args = parser.parse_args(argv)
    if args.command == "upstreams":
        return upstreams(args.work, args.first_token_delay, args.token_delay, args.max_seconds)
    if args.command == "config":
        return config(args.work)
    if args.command == "wait":
        return wait(args.url, args.seconds, args.pid, args.out)
    if args.command == "served":
        return served(args.work)
    if args.command == "costmap":
        return costmap(args.src, args.out, args.model)
    if args.command == "changed":
        return changed(args.before, args.after, args.model)
    return compare(args.live, args.replay)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
