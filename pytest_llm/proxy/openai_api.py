"""The OpenAI-compatible API of the proxy: ``/v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings`` and ``/v1/models``, streamed as server-sent events or whole.

A request becomes an :class:`~pytest_llm.proxy.core.Incoming`: ``response_format`` is the
project's ``format`` (``json_object`` → ``"json"``, ``json_schema`` → its schema), the
settings ``ChatRequest`` has no field for (``top_p``, ``stop``, ``presence_penalty``,
``user``, ``tools`` ...) travel in ``options`` (sent upstream and part of the cassette
key); the answer's tool calls come back as ``tool_calls``; what it could not carry (several
choices, log-probabilities, audio, legacy ``functions``) is refused with a 400 naming the
field.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from collections.abc import Mapping
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

__all__ = ["ROUTES", "error_body", "stream_error"]

#: Fields read into the request itself (the rest of the body goes into ``options``).
_READ = frozenset(
    {
        "model", "messages", "prompt", "stream", "stream_options", "temperature", "seed",
        "max_tokens", "max_completion_tokens", "response_format", "n",
    }
)  # fmt: skip
_REFUSED = {
    "functions": "the legacy function calls are not relayed: send tools",
    "function_call": "the legacy function calls are not relayed: send tool_choice",
    "logprobs": "log-probabilities are not recorded",
    "top_logprobs": "log-probabilities are not recorded",
    "audio": "audio answers are not recorded",
    "prediction": "predicted outputs are not served",
    "suffix": "insertion (a suffix) is not served",
    "echo": "echoing the prompt is not served",
    "best_of": "best_of is not served",
}
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}


def error_body(status: int, message: str) -> dict[str, Any]:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


def stream_error(message: str) -> bytes:
    """An error event inside a stream (the ``openai`` client raises ``APIError`` on it)."""
    return _event(error_body(500, message)) + b"data: [DONE]\n\n"


def _event(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def _incoming(body: Mapping[str, Any], endpoint: str, messages: tuple[Any, ...]) -> Incoming:
    refuse(body, _REFUSED)
    if body.get("n") not in (None, 1):
        raise bad_request("the pytest-llm proxy serves one choice per request: send n=1")
    if body.get("modalities") not in (None, ["text"]):
        raise bad_request("the pytest-llm proxy serves text answers only (modalities)")
    max_tokens = int_field(body, "max_completion_tokens", low=1)
    if max_tokens is None:
        max_tokens = int_field(body, "max_tokens", low=1)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request(f"the field 'stream' must be true or false, got {stream!r}")
    return Incoming(
        api="openai",
        endpoint=endpoint,
        model=str(text_field(body, "model")),
        messages=messages,
        stream=stream,
        format=_format(body.get("response_format")),
        temperature=number_field(body, "temperature"),
        seed=int_field(body, "seed"),
        max_tokens=max_tokens,
        options={k: v for k, v in body.items() if k not in _READ and k != "modalities"},
        parameters={k: v for k, v in body.items() if k not in ("model", "messages", "prompt")},
    )


def _format(value: Any) -> str | dict[str, Any] | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        schema = value.get("schema")
        return schema if isinstance(schema, dict) else "json"
    if kind == "json_schema":
        schema = (value.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            return schema
    raise bad_request(
        "the field 'response_format' must be {'type': 'text'}, {'type': 'json_object'} or "
        f"{{'type': 'json_schema', 'json_schema': {{'schema': ...}}}}, got {value!r}"
    )


def _tool_calls(completion: Completion) -> list[dict[str, Any]]:
    """The answer's tool calls in OpenAI's shape (arguments as JSON text)."""
    return [
        {
            "id": f"call_{i}",
            "type": "function",
            "function": {
                "name": call.get("name", ""),
                "arguments": arguments
                if isinstance(arguments := call.get("arguments", {}), str)
                else json.dumps(arguments, ensure_ascii=False),
            },
        }
        for i, call in enumerate(tool_calls(completion))
    ]


def _finish(completion: Completion) -> str:
    reason = completion.done_reason or "stop"
    return "tool_calls" if reason == "stop" and tool_calls(completion) else reason


def _usage(completion: Completion) -> dict[str, int]:
    return {
        "prompt_tokens": completion.tokens_in,
        "completion_tokens": completion.tokens_out,
        "total_tokens": completion.tokens_in + completion.tokens_out,
    }


class _Chat:
    content_type = "text/event-stream"
    _object = "chat.completion"

    def __init__(self, body: Mapping[str, Any], model: str) -> None:
        self.model = model
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        options = body.get("stream_options")
        self.usage = isinstance(options, dict) and options.get("include_usage") is True
        self._first = True

    def _chunk(self, choice: dict[str, Any], **extra: Any) -> bytes:
        return _event(
            {
                "id": self.id,
                "object": f"{self._object}.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [choice] if choice else [],
                **extra,
            }
        )

    def piece(self, text: str) -> bytes:
        delta: dict[str, Any] = {"content": text}
        if self._first:
            delta = {"role": "assistant", **delta}
            self._first = False
        return self._chunk({"index": 0, "delta": delta, "finish_reason": None})

    def last(self, completion: Completion) -> bytes:
        data = b""
        calls = _tool_calls(completion)
        if calls:
            delta: dict[str, Any] = {
                "tool_calls": [{"index": i, **call} for i, call in enumerate(calls)]
            }
            if self._first:
                delta = {"role": "assistant", "content": None, **delta}
                self._first = False
            data += self._chunk({"index": 0, "delta": delta, "finish_reason": None})
        last: dict[str, Any] = {"role": "assistant", "content": ""} if self._first else {}
        self._first = False
        data += self._chunk({"index": 0, "delta": last, "finish_reason": _finish(completion)})
        if self.usage:
            data += self._chunk({}, usage=_usage(completion))
        return data + b"data: [DONE]\n\n"

    def whole(self, completion: Completion) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": completion.content}
        calls = _tool_calls(completion)
        if calls:
            message = {"role": "assistant", "content": completion.content or None}
            message["tool_calls"] = calls
        return {
            "id": self.id,
            "object": self._object,
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": _finish(completion),
                    "logprobs": None,
                }
            ],
            "usage": _usage(completion),
        }


class _Completion(_Chat):
    """``/v1/completions``: the same answer as text ``choices``."""

    _object = "text_completion"

    def __init__(self, body: Mapping[str, Any], model: str) -> None:
        super().__init__(body, model)
        self.id = f"cmpl-{uuid.uuid4().hex[:24]}"

    def _text_chunk(self, text: str, reason: str | None) -> bytes:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
        return _event(
            {
                "id": self.id,
                "object": self._object,
                "created": self.created,
                "model": self.model,
                "choices": [choice],
            }
        )

    def piece(self, text: str) -> bytes:
        return self._text_chunk(text, None)

    def last(self, completion: Completion) -> bytes:
        data = self._text_chunk("", completion.done_reason or "stop")
        if self.usage:
            data += self._chunk({}, usage=_usage(completion))
        return data + b"data: [DONE]\n\n"

    def whole(self, completion: Completion) -> dict[str, Any]:
        body = super().whole(completion)
        body["choices"] = [
            {
                "index": 0,
                "text": completion.content,
                "logprobs": None,
                "finish_reason": completion.done_reason or "stop",
            }
        ]
        return body


def _chat(exchange: Exchange) -> None:
    body = exchange.body()
    incoming = _incoming(body, "chat", messages_field(body))
    answer_chat(exchange, incoming, _Chat(body, incoming.model))


def _completions(exchange: Exchange) -> None:
    body = exchange.body()
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise bad_request("the field 'prompt' must be a string (lists and tokens are not served)")
    incoming = _incoming(body, "completions", ({"role": "user", "content": prompt},))
    answer_chat(exchange, incoming, _Completion(body, incoming.model))


def _embeddings(exchange: Exchange) -> None:
    body = exchange.body()
    model = str(text_field(body, "model"))
    texts = inputs_field(body, "input")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise bad_request(f"the field 'encoding_format' must be float or base64, got {encoding!r}")
    if body.get("dimensions") is not None:
        raise bad_request("the pytest-llm proxy does not serve 'dimensions'")
    try:
        vectors = exchange.test_proxy.embed("openai", model, texts)
    except LLMError as exc:
        exchange.error(status_of(exc), f"pytest-llm proxy: {exc}")
        return
    data = [
        {"object": "embedding", "index": i, "embedding": _encoded(v, encoding)}
        for i, v in enumerate(vectors)
    ]
    usage = {"prompt_tokens": 0, "total_tokens": 0}
    exchange.send_json(200, {"object": "list", "data": data, "model": model, "usage": usage})


def _encoded(vector: list[float], encoding: str) -> Any:
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _models(exchange: Exchange) -> None:
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "pytest-llm"}
        for name in exchange.test_proxy.known_models()
    ]
    exchange.send_json(200, {"object": "list", "data": data})


ROUTES: dict[tuple[str, str], Route] = {
    ("POST", "/v1/chat/completions"): _chat,
    ("POST", "/v1/completions"): _completions,
    ("POST", "/v1/embeddings"): _embeddings,
    ("GET", "/v1/models"): _models,
}
