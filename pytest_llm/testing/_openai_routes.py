"""FakeOllama's OpenAI-compatible routes (``/v1/...``), as Ollama serves them.

Streams are server-sent events, errors have OpenAI's shape (the handler picks both for a path
under ``/v1``); ``ROUTES`` maps ``(METHOD, path)`` to each route. Standard library only.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ._engine import (
    RecordedRequest,
    Reply,
    created,
    normalize_model,
    paced,
    plan,
    token_counts,
    words,
)
from ._http import Handler, Route
from ._ollama_routes import embed_texts, require_model

__all__ = ["ROUTES"]


def _models(h: Handler, request: RecordedRequest) -> None:
    models = list(dict.fromkeys(normalize_model(m) for m in list(h.fake.models)))
    # as Ollama: ``created`` is when the model was pulled, so a re-pull changes it
    data = [
        {"id": m, "object": "model", "created": created(h.fake.digest_of(m)),
         "owned_by": "library"}
        for m in models
    ]  # fmt: skip
    h.send_json(200, {"object": "list", "data": data})


def _embeddings(h: Handler, request: RecordedRequest) -> None:
    embedded = embed_texts(h, request)
    if embedded is None:
        return
    model, texts, vectors = embedded
    tokens = sum(max(1, words(t)) for t in texts)
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    h.send_json(200, {"object": "list", "data": data, "model": model, "usage": usage})


def _chat(h: Handler, request: RecordedRequest) -> None:
    model = require_model(h, request)
    if model is None:
        return
    if not request.messages:
        h.send_error_json(400, "[] is too short - 'messages'")
        return
    h.arrival = h.fake._chat_arrived()
    reply = h.take_reply(request)
    if reply is None:
        return
    with h.slot():
        h.fake._mark_loaded(model)
        _run(h, request, reply, model)


def _run(h: Handler, request: RecordedRequest, reply: Reply, model: str) -> None:
    body = request.body
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    the_plan = plan(
        reply,
        think=body.get("think") is not False,
        limit=limit,
        first_token_delay=h.fake.first_token_delay,
        token_delay=h.fake.token_delay,
    )
    stream = request.stream
    options = body.get("stream_options")
    with_usage = isinstance(options, dict) and options.get("include_usage") is True
    head = {
        "id": f"chatcmpl-{len(h.fake.requests)}",
        "object": "chat.completion.chunk" if stream else "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_ollama",
    }
    text: dict[str, list[str]] = {"thinking": [], "content": []}
    for sent, (kind, token) in enumerate(paced(the_plan, h.pause)):
        if stream and h.fake.interrupting and h.fake._chats != h.arrival:
            h.stream_event("[DONE]")  # another chat arrived: this one is cut short
            h.end_stream()
            return
        if stream:
            h.raw_line(reply, sent)
        text[kind].append(token)
        if stream:
            delta = {"role": "assistant", "content": token if kind == "content" else ""}
            if kind == "thinking":
                delta["reasoning"] = token
            choice = {"index": 0, "delta": delta, "finish_reason": None}
            h.stream_event({**head, "choices": [choice]})
    if h.ended_by_fault(
        the_plan,
        reply,
        model,
        sent=len(text["thinking"]) + len(text["content"]),
        stream=stream,
        in_stream=lambda error: h.stream_event(h.error_body(500, error)),
        instead=lambda error: h.send_error_json(500, error),
    ):
        return

    tokens_in, tokens_out = token_counts(request, reply, the_plan, chat=True)
    usage = {
        "prompt_tokens": tokens_in,
        "completion_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
    }
    calls = [
        {"id": f"call_{i}", "type": "function",
         "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
        for i, c in enumerate(reply.tool_calls)
    ]  # fmt: skip
    reason = "tool_calls" if calls and the_plan.done_reason == "stop" else the_plan.done_reason
    h.answer_complete()
    if not stream:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(text["content"])}
        if text["thinking"]:
            message["reasoning"] = "".join(text["thinking"])
        if calls:
            message["tool_calls"] = calls
        choice = {"index": 0, "message": message, "finish_reason": reason}
        h.send_json(200, {**head, "choices": [choice], "usage": usage})
        return
    if calls:
        called = {"tool_calls": [{"index": i, **c} for i, c in enumerate(calls)]}
        h.stream_event({**head, "choices": [{"index": 0, "delta": called, "finish_reason": None}]})
    last = {"index": 0, "delta": {"role": "assistant", "content": ""}}
    h.stream_event({**head, "choices": [{**last, "finish_reason": reason}]})
    if with_usage:
        h.stream_event({**head, "choices": [], "usage": usage})
    h.stream_event("[DONE]")
    h.end_stream()


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/v1/models"): _models,
    ("POST", "/v1/embeddings"): _embeddings,
    ("POST", "/v1/chat/completions"): _chat,
}
