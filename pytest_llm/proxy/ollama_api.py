"""Ollama's API on the proxy: ``/api/chat``, ``/api/generate``, ``/api/embed`` (and the
legacy ``/api/embeddings``), ``/api/tags``, ``/api/show``, ``/api/version`` and ``/``.

Streams are NDJSON (Ollama's default is to stream); durations are nanoseconds and left
out when zero, as Ollama does. ``options`` other than ``temperature``, ``seed`` and
``num_predict`` travel in the request's ``options`` (sent upstream, part of the cassette
key). ``/api/generate`` is asked upstream as a chat (system and prompt as messages), so
what only a raw completion has (``raw``, ``template``, ``suffix``, ``context``) is refused
with a 400, as is ``think``. ``tools`` go upstream; the model's tool calls come back in
the message's ``tool_calls``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import LLMError
from ._wire import (
    answer_chat,
    bad_request,
    inputs_field,
    int_field,
    messages_field,
    number_field,
    refuse,
    text_field,
    tool_calls,
)
from .core import Incoming, status_of

if TYPE_CHECKING:
    from ..result import Completion
    from .server import Exchange, Route

__all__ = ["ROUTES", "VERSION", "error_body", "stream_error"]

#: What ``/api/version`` answers (clients compare it to enable features).
VERSION = "0.12.0"
_NS_PER_MS = 1_000_000
_CHAT_FIELDS = frozenset(
    {"model", "messages", "stream", "format", "options", "keep_alive", "tools"}
)
_GENERATE_FIELDS = frozenset(
    {"model", "prompt", "system", "images", "stream", "format", "options", "keep_alive"}
)
_REFUSED = {
    "think": "thinking is not relayed",
    "raw": "generate is asked upstream as a chat, so a raw prompt cannot be kept",
    "template": "generate is asked upstream as a chat, so a template cannot be applied",
    "suffix": "insertion (a suffix) is not served",
    "context": "generate is asked upstream as a chat: send the conversation with /api/chat",
}


def error_body(status: int, message: str) -> dict[str, Any]:
    """Ollama's error shape: ``{"error": "..."}``."""
    return {"error": message}


def stream_error(message: str) -> bytes:
    """An error line inside a stream (the ``ollama`` client raises ``ResponseError``)."""
    return json.dumps({"error": message}, ensure_ascii=False).encode() + b"\n"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _line(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode() + b"\n"


def _incoming(
    body: Mapping[str, Any], endpoint: str, messages: tuple[Any, ...], fields: frozenset[str]
) -> Incoming:
    refuse(body, _REFUSED)
    unknown = sorted(set(body) - fields - set(_REFUSED))
    if unknown:
        raise bad_request(
            f"the pytest-llm proxy does not know the field(s) {', '.join(unknown)} of "
            f"/api/{endpoint}; it reads {', '.join(sorted(fields))}"
        )
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise bad_request(f"the field 'options' must be an object, got {options!r}")
    fmt = body.get("format")
    if fmt in ("", None):
        fmt = None
    elif not (fmt == "json" or isinstance(fmt, dict)):
        raise bad_request(f"the field 'format' must be 'json' or a JSON Schema, got {fmt!r}")
    stream = body.get("stream", True)
    if not isinstance(stream, bool):
        raise bad_request(f"the field 'stream' must be true or false, got {stream!r}")
    keep_alive = body.get("keep_alive")
    if keep_alive is not None and not isinstance(keep_alive, str | int | float):
        raise bad_request(f"the field 'keep_alive' must be a duration, got {keep_alive!r}")
    return Incoming(
        api="ollama",
        endpoint=endpoint,
        model=str(text_field(body, "model")),
        messages=messages,
        stream=stream,
        format=fmt,
        temperature=number_field(options, "temperature"),
        seed=int_field(options, "seed"),
        max_tokens=int_field(options, "num_predict", low=1),
        keep_alive=keep_alive,
        options=_options(options, body.get("tools")),
        parameters={k: v for k, v in body.items() if k not in ("model", "messages", "prompt")},
    )


def _options(options: Mapping[str, Any], tools: Any) -> dict[str, Any]:
    """The request's other options, and its ``tools`` (which the backends send as such)."""
    rest = {k: v for k, v in options.items() if k not in ("temperature", "seed", "num_predict")}
    if tools:
        if not isinstance(tools, list):
            raise bad_request(f"the field 'tools' must be a list of tools, got {tools!r}")
        rest["tools"] = tools
    return rest


def _tool_calls(completion: Completion) -> list[dict[str, Any]]:
    """The answer's tool calls in Ollama's shape (arguments as an object)."""
    calls = []
    for call in tool_calls(completion):
        arguments = call.get("arguments", {})
        if isinstance(arguments, str):
            with contextlib.suppress(ValueError):  # not JSON: given as it is
                arguments = json.loads(arguments or "{}")
        calls.append({"function": {"name": call.get("name", ""), "arguments": arguments}})
    return calls


def _metrics(completion: Completion) -> dict[str, Any]:
    """Ollama's final-chunk figures (nanoseconds, zero ones left out)."""
    meta = completion.metadata
    ttft = completion.ttft_ms or 0.0
    prompt_ms = meta.get("prompt_eval_ms", ttft)
    eval_ms = meta.get("eval_ms", max(completion.duration_ms - ttft, 0.0))
    reason = completion.done_reason or "stop"
    figures = {
        "done_reason": "stop" if reason == "tool_calls" else reason,
        "total_duration": int(meta.get("server_total_ms", completion.duration_ms) * _NS_PER_MS),
        "load_duration": int(completion.load_ms * _NS_PER_MS),
        "prompt_eval_count": completion.tokens_in,
        "prompt_eval_duration": int(prompt_ms * _NS_PER_MS),
        "eval_count": completion.tokens_out,
        "eval_duration": int(eval_ms * _NS_PER_MS),
    }
    return {k: v for k, v in figures.items() if v}


class _Chat:
    content_type = "application/x-ndjson"
    chat = True  # the answer is a message (which may call tools)

    def __init__(self, model: str) -> None:
        self.model = model

    def _text(self, text: str) -> dict[str, Any]:
        return {"message": {"role": "assistant", "content": text}}

    def piece(self, text: str) -> bytes:
        return _line({"model": self.model, "created_at": _now(), **self._text(text), "done": False})

    def last(self, completion: Completion) -> bytes:
        calls = _tool_calls(completion) if self.chat else []
        head = {"model": self.model, "created_at": _now()}
        message = {"role": "assistant", "content": "", "tool_calls": calls}
        called = _line({**head, "message": message, "done": False}) if calls else b""
        return called + _line(self.whole(completion, text=""))

    def whole(self, completion: Completion, text: str | None = None) -> dict[str, Any]:
        content = completion.content if text is None else text
        answer = {"model": self.model, "created_at": _now(), **self._text(content)}
        calls = _tool_calls(completion) if self.chat and text is None else []
        if calls:
            answer["message"]["tool_calls"] = calls
        return {**answer, "done": True, **_metrics(completion)}


class _Generate(_Chat):
    chat = False

    def _text(self, text: str) -> dict[str, Any]:
        return {"response": text}


def _chat(exchange: Exchange) -> None:
    body = exchange.body()
    incoming = _incoming(body, "chat", messages_field(body), _CHAT_FIELDS)
    answer_chat(exchange, incoming, _Chat(incoming.model))


def _generate(exchange: Exchange) -> None:
    body = exchange.body()
    prompt = body.get("prompt") or ""
    if not isinstance(prompt, str):
        raise bad_request(f"the field 'prompt' must be a string, got {prompt!r}")
    user: dict[str, Any] = {"role": "user", "content": prompt}
    if body.get("images"):
        user["images"] = body["images"]
    system = body.get("system")
    messages = ({"role": "system", "content": system},) if system else ()
    incoming = _incoming(body, "generate", (*messages, user), _GENERATE_FIELDS)
    if not prompt:  # Ollama loads the model and answers at once
        load = {"model": incoming.model, "created_at": _now(), "response": "", "done": True}
        exchange.send_json(200, {**load, "done_reason": "load"})
        return
    answer_chat(exchange, incoming, _Generate(incoming.model))


def _embed(exchange: Exchange) -> None:
    body = exchange.body()
    model = str(text_field(body, "model"))
    texts = inputs_field(body, "input")
    vectors = _vectors(exchange, model, texts)
    if vectors is not None:
        exchange.send_json(200, {"model": model, "embeddings": vectors})


def _embeddings(exchange: Exchange) -> None:
    """The legacy ``/api/embeddings``: one ``prompt``, one ``embedding``."""
    body = exchange.body()
    model = str(text_field(body, "model"))
    text = str(text_field(body, "prompt"))
    vectors = _vectors(exchange, model, [text])
    if vectors is not None:
        exchange.send_json(200, {"embedding": vectors[0]})


def _vectors(exchange: Exchange, model: str, texts: list[str]) -> list[list[float]] | None:
    try:
        return exchange.test_proxy.embed("ollama", model, texts)
    except LLMError as exc:
        exchange.error(status_of(exc), f"pytest-llm proxy: {exc}")
        return None


def _entry(exchange: Exchange, name: str) -> dict[str, Any]:
    identity = exchange.test_proxy.identity(name) or name
    digest = identity if identity.startswith("sha256:") else hashlib.sha256(identity.encode())
    return {
        "name": name,
        "model": name,
        "modified_at": _now(),
        "size": 0,
        "digest": digest if isinstance(digest, str) else digest.hexdigest(),
        "details": {"format": "gguf", "family": "", "parameter_size": "", "quantization_level": ""},
    }


def _tags(exchange: Exchange) -> None:
    models = [_entry(exchange, name) for name in exchange.test_proxy.known_models()]
    exchange.send_json(200, {"models": models})


def _show(exchange: Exchange) -> None:
    body = exchange.body()
    name = str(text_field(body, "model", required=False) or text_field(body, "name"))
    entry = _entry(exchange, name)
    exchange.send_json(
        200,
        {
            "modelfile": "",
            "parameters": "",
            "template": "{{ .Prompt }}",
            "details": entry["details"],
            "model_info": {},
            "capabilities": ["completion"],
            "modified_at": entry["modified_at"],
        },
    )


def _version(exchange: Exchange) -> None:
    exchange.send_json(200, {"version": VERSION})


def _root(exchange: Exchange) -> None:
    exchange.send_text(200, "Ollama is running")


ROUTES: dict[tuple[str, str], Route] = {
    ("POST", "/api/chat"): _chat,
    ("POST", "/api/generate"): _generate,
    ("POST", "/api/embed"): _embed,
    ("POST", "/api/embeddings"): _embeddings,
    ("GET", "/api/tags"): _tags,
    ("POST", "/api/show"): _show,
    ("GET", "/api/version"): _version,
    ("GET", "/"): _root,
}
