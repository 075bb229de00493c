"""OpenAI-compatible servers (vLLM, llama.cpp, LM Studio, Ollama's ``/v1``) over plain ``httpx``.

Why ``httpx`` and not the ``openai`` package: ``httpx`` is already installed (the
``ollama`` client is built on it), so this backend adds no dependency; one
``httpx.Client`` per server gives connection reuse and explicit timeouts; and the
wire format we need — one streamed ``POST /chat/completions`` read as server-sent
events, ``POST /embeddings`` and the ``{"error": {...}}`` bodies — is small and
stable, while the ``openai`` client would bring its own retry loop (which would
fight the harness's retries and backoff), its own exception tree to translate and
a pydantic model per chunk on the hot path.

``host`` is the base URL, as the ``openai`` client's ``base_url``:
``http://127.0.0.1:8000/v1``. A URL without a path gets ``/v1``, where every
server above serves the API. The API key is read from the environment variable
named by ``api_key_env`` (``OPENAI_API_KEY`` by default) when the backend is
created; it is sent as a bearer token and never stored anywhere else.

Servers differ in two places, handled here:

* a JSON Schema is sent as ``response_format`` ``json_schema`` (strict); a server
  that rejects that with an error naming ``response_format`` gets
  ``{"type": "json_object", "schema": ...}`` (llama-cpp-python, which answers
  ``json_schema`` with a 500, enforces a schema given so), then plain
  ``json_object``; the first style the server accepts is remembered;
* token counts come from the usage chunk that ``stream_options.include_usage``
  asks for; a server that ignores it (llama-cpp-python) leaves ``tokens_in`` at 0,
  ``tokens_out`` is then the number of streamed chunks (one token each on
  llama.cpp, vLLM and Ollama) and ``metadata["usage_reported"]`` is False.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from ..config import public_host
from ..errors import BackendError, BackendResponseError, BackendTimeout
from ..result import Completion
from . import ChatRequest, Deadline, authorization, key_advice, status_error, timeout_message
from ._deadline_transport import DeadlineTransport
from ._turns import Turns
from .deadline import current_deadline
from .http import sse_events, transport_error

__all__ = ["DEFAULT_API_KEY_ENV", "SCHEMA_STYLES", "OpenAIBackend"]

#: The variable the key is read from unless ``api_key_env`` names another one.
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"

T = TypeVar("T")

_SCHEMA_NAME_BAD_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
#: How a JSON Schema is sent, best first (see the module docstring).
SCHEMA_STYLES = ("json_schema", "json_object_schema", "json_object")


class _StreamError(Exception):
    """The stream itself reported an error (an ``{"error": ...}`` event)."""


class _HTTPStatusError(Exception):
    """The server answered an error status; ``message`` is what its body said."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


#: What a call can raise below our errors: HTTP statuses, a stream's error event, httpx
#: transport errors and timeouts, and a garbled answer.
_CLIENT_ERRORS = (_HTTPStatusError, _StreamError, httpx.HTTPError, ValueError, KeyError, TypeError)


class OpenAIBackend:
    """Streams ``/chat/completions`` so that time to first token is measured, not guessed."""

    name = "openai"

    def __init__(
        self,
        *,
        host: str,
        timeout_seconds: float,
        api_key_env: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``transport`` replaces the network (``httpx.MockTransport`` in tests); the
        call's deadline still bounds it."""
        self.host = public_host(_base_url(host))  # credentials go in the header only
        self.timeout_seconds = timeout_seconds
        self.api_key_env = api_key_env or DEFAULT_API_KEY_ENV
        key = os.environ.get(self.api_key_env, "").strip()
        self._key_advice = key_advice(host, self.api_key_env, bool(key))
        self._client = httpx.Client(
            base_url=self.host + "/",
            timeout=httpx.Timeout(timeout_seconds),
            headers=authorization(host, key),
            transport=DeadlineTransport.around(transport, self.host),  # deadlines bound it
        )
        #: Chats take turns once the server interrupted an answer for another request
        #: (llama-cpp-python): in this process and across the run's xdist workers.
        self._turns = Turns(self.host)
        #: The first of SCHEMA_STYLES this server accepted: later calls start there.
        self.schema_style = SCHEMA_STYLES[0]
        self._identities: dict[str, str] | None = None
        self._identities_lock = threading.Lock()

    # --- Backend protocol ----------------------------------------------------------------

    def chat(self, request: ChatRequest) -> Completion:
        styles: tuple[str | None, ...] = (None,)
        if isinstance(request.format, dict):
            styles = SCHEMA_STYLES[SCHEMA_STYLES.index(self.schema_style) :]
        # one bound on the whole answer, fallbacks included: the transport cuts a dripping
        # or silent stream, and an error after it passed is a timeout
        with Deadline(model=request.model, host=self.host, timeout_seconds=self.timeout_seconds):
            try:
                for style in styles[:-1]:
                    try:
                        return self._chat_in_style(request, style)
                    except _HTTPStatusError as exc:
                        if not _rejects_response_format(exc):
                            raise
                return self._chat_in_style(request, styles[-1])
            except BackendError:
                raise
            except _CLIENT_ERRORS as exc:
                raise self._convert(exc, request.model) from exc

    def embed(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        body = {"model": model, "input": list(texts)}
        with Deadline(model=model, host=self.host, timeout_seconds=self.timeout_seconds):
            try:
                payload = self._json(self._client.post("embeddings", json=body))
                rows = sorted(payload["data"], key=lambda row: row["index"])
                vectors = [[float(v) for v in row["embedding"]] for row in rows]
            except _CLIENT_ERRORS as exc:
                raise self._convert(exc, model) from exc
        if len(vectors) != len(texts):
            raise BackendResponseError(
                f"{self.host} returned {len(vectors)} embeddings for {len(texts)} texts"
            )
        return vectors

    def digest(self, model: str) -> str | None:
        """An identity assembled from ``GET /models`` (the API tells no content digest).

        The model's entry without its volatile fields: ``id``, ``owned_by`` and whatever
        else the server adds (vLLM's ``root`` and ``max_model_len``, llama.cpp's ``meta``),
        and ``created`` unless it is the server's clock (vLLM and llama.cpp send the time of
        the response; Ollama the time of the pull). Read once per backend; a failed read
        raises once, later calls answer ``None``. ``model_version`` adds what it cannot see.
        """
        with self._identities_lock:
            if self._identities is None:
                self._identities = {}
                seconds = min(self.timeout_seconds, 10)
                with Deadline(model=model, host=self.host, timeout_seconds=seconds, session=True):
                    try:
                        response = self._client.get("models", timeout=seconds)
                        rows = self._json(response)["data"]
                        clock = _server_clock(response.headers.get("date"))
                        self._identities = {
                            str(row["id"]): _identity(row, clock)
                            for row in rows
                            if isinstance(row, dict) and "id" in row
                        }
                    except _CLIENT_ERRORS as exc:
                        raise self._convert(exc, model) from exc
            # Ollama's /v1 lists "llama3.2:latest" for "llama3.2", as its own API does
            latest = None if ":" in model else self._identities.get(f"{model}:latest")
            return self._identities.get(model, latest)

    def close(self) -> None:
        self._client.close()

    # --- the request -----------------------------------------------------------------------

    def _body(self, request: ChatRequest, schema_style: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [dict(m) for m in request.messages],
            "temperature": request.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.format is not None:
            body["response_format"] = _response_format(request.format, schema_style)
        body.update(request.options)  # pass-through settings such as top_p win
        return body

    # --- the answer ------------------------------------------------------------------------

    def _chat_in_style(self, request: ChatRequest, schema_style: str | None) -> Completion:
        body = self._body(request, schema_style)
        if not self._turns.on:
            completion = self._stream(request.model, body, request.on_delta)
        else:
            deadline = current_deadline()  # entered by chat(): the wait for a turn counts
            wait = self.timeout_seconds if deadline is None else deadline.remaining()
            with self._turns.turn(wait) as mine:
                if not mine:
                    waited = self._timeout_message(request.model)
                    raise BackendTimeout(f"{waited} (waiting for its turn: the server takes one)")
                completion = self._stream(request.model, body, request.on_delta)
        if schema_style is not None:
            self.schema_style = schema_style
        return completion

    def _stream(
        self, model: str, body: dict[str, Any], on_delta: Callable[[str], None] | None = None
    ) -> Completion:
        parts: list[str] = []
        ttft_ms: float | None = None
        finish_reason: str | None = None
        usage: Mapping[str, Any] = {}
        calls: dict[int, dict[str, str]] = {}  # tool calls, their arguments in pieces
        chunks = 0
        done = False
        deadline = current_deadline()  # entered by chat()
        assert deadline is not None
        started = time.perf_counter()
        with self._client.stream("POST", "chat/completions", json=body) as response:
            if response.status_code >= 400:
                response.read()
                raise _HTTPStatusError(response.status_code, _error_text(response))
            # every line counts against the deadline: keep-alive comments too
            # read to the end of the body, past [DONE], so the connection can serve the
            # next call (httpx drops a connection whose response was left unread)
            for data in sse_events(response.iter_lines()):
                if done or data == "[DONE]":
                    done = True
                    continue
                event = json.loads(data)
                if not isinstance(event, dict):
                    raise ValueError(f"a stream event is JSON but not an object: {data[:80]!r}")
                if "error" in event:
                    raise _StreamError(_error_message(event))
                for choice in _shaped(event.get("choices") or [], list, "its choices", data):
                    choice = _shaped(choice, dict, "a choice", data)
                    delta = _shaped(choice.get("delta") or {}, dict, "a delta", data)
                    text = delta.get("content")
                    if text:
                        parts.append(text)
                        if on_delta is not None:
                            on_delta(text)
                    for call in _shaped(
                        delta.get("tool_calls") or [], list, "its tool calls", data
                    ):
                        _add_tool_call(calls, _shaped(call, dict, "a tool call", data))
                    thinking = delta.get("reasoning_content") or delta.get("reasoning")
                    if text or thinking or delta.get("tool_calls"):
                        chunks += 1
                        if ttft_ms is None:
                            ttft_ms = (time.perf_counter() - started) * 1000
                    finish_reason = choice.get("finish_reason") or finish_reason
                usage = _shaped(event.get("usage") or usage, dict, "its usage", data)
        duration_ms = (time.perf_counter() - started) * 1000
        if finish_reason is None:  # cut off: [DONE] alone is not a finished answer
            if done:  # interrupted: retried, in turn
                self._turns.switch_on()
            raise BackendResponseError(
                f"{self.host} ended the answer of {model!r} without a finish_reason"
                + (
                    " (the server interrupted it, e.g. llama-cpp-python's server does when"
                    " another request arrives unless started with --interrupt_requests False;"
                    " from now on this run sends it one request at a time, but other"
                    " processes can still interrupt it)"
                    if done
                    else " or [DONE]"
                )
            )
        return Completion(
            content="".join(parts),
            model=model,
            tokens_in=int(usage.get("prompt_tokens") or 0),
            tokens_out=int(usage.get("completion_tokens") or 0) if usage else chunks,
            duration_ms=duration_ms,
            ttft_ms=ttft_ms,
            done_reason=finish_reason,
            metadata={"usage_reported": bool(usage)}
            | ({"tool_calls": _tool_calls(calls)} if calls else {}),
        )

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise _HTTPStatusError(response.status_code, _error_text(response))
        return response.json()

    # --- errors ----------------------------------------------------------------------------

    def _timeout_message(self, model: str) -> str:
        return timeout_message(model, self.host, self.timeout_seconds)

    def _convert(self, exc: Exception, model: str) -> BackendError:
        """Map HTTP statuses and ``httpx`` exceptions to ours: the single place that knows them."""
        if isinstance(exc, _HTTPStatusError | _StreamError):
            status = exc.status if isinstance(exc, _HTTPStatusError) else None  # None: mid-stream
            text = str(exc)
            return status_error(
                status,
                text,
                server=self.host,
                model=model,
                key_advice=self._key_advice,
                model_missing=(
                    f"model {model!r} is not served at {self.host} (server said: {text}); "
                    f"check the name against GET {self.host}/models, and that the URL is the "
                    "API's base (it usually ends in /v1)"
                ),
            )
        if isinstance(exc, json.JSONDecodeError):
            return BackendResponseError(
                f"{self.host} sent a malformed answer for {model!r}: it is not JSON "
                f"({exc.msg}): {exc.doc[:80]!r}"
            )
        if isinstance(exc, ValueError | KeyError | TypeError):  # ValueError: ours, say it
            what = str(exc) if type(exc) is ValueError else f"{type(exc).__name__}: {exc}"
            return BackendResponseError(
                f"{self.host} sent a malformed answer for {model!r}: {what}"
            )
        return transport_error(
            exc,
            host=self.host,
            model=model,
            timeout_seconds=self.timeout_seconds,
            unreachable=f"nothing answers at {self.host}: start the OpenAI-compatible server "
            "(vLLM, llama.cpp, LM Studio, `ollama serve`), or point --llm-host at its base URL",
        )


# --- helpers -------------------------------------------------------------------------------


#: Fields of a ``/models`` entry that say nothing about which weights answer. ``mode``,
#: ``max_input_tokens`` and ``max_output_tokens`` are what a LiteLLM gateway copies from its
#: model cost map, which it fetches anew at each start-up: a newer map changes them, not the
#: weights behind the gateway.
_VOLATILE_FIELDS = frozenset(
    {"object", "created", "permission", "permissions"}
    | {"mode", "max_input_tokens", "max_output_tokens"}
)


def _server_clock(date: str | None) -> float | None:
    """The server's time from its ``Date`` header, as Unix seconds (``None`` if absent)."""
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(date).timestamp() if date else None
    except (TypeError, ValueError):
        return None


def _identity(row: Mapping[str, Any], clock: float | None) -> str:
    """``id=smollm2:135m owned_by=me``: a model's ``/models`` entry as one stable line."""
    fields = {k: v for k, v in row.items() if k not in _VOLATILE_FIELDS}
    created = row.get("created")
    now = time.time() if clock is None else clock
    if isinstance(created, int | float) and abs(created - now) > 5:  # not the server's clock
        fields["created"] = created
    return " ".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v, sort_keys=True, separators=(',', ':'))}"
        for k, v in sorted(fields.items())
    )


def _response_format(format: str | dict[str, Any], style: str | None) -> dict[str, Any]:
    """``"json"`` → ``json_object``; a JSON Schema → the ``response_format`` of ``style``."""
    if isinstance(format, str) or style == "json_object":
        return {"type": "json_object"}
    if style == "json_object_schema":
        return {"type": "json_object", "schema": format}
    title = format.get("title")
    name = _SCHEMA_NAME_BAD_CHARS.sub("_", title)[:64] if isinstance(title, str) else ""
    return {
        "type": "json_schema",
        "json_schema": {"name": name or "response", "schema": format, "strict": True},
    }


def _rejects_response_format(exc: _HTTPStatusError) -> bool:
    """The server refused the request because of its ``response_format``."""
    return "response_format" in exc.message or "json_schema" in exc.message


def _base_url(host: str) -> str:
    """The API base URL: ``http://h:8000`` → ``http://h:8000/v1``; a given path is kept."""
    host = host.strip().rstrip("/")
    return host if urlsplit(host).path else host + "/v1"


def _shaped(value: Any, kind: type[T], what: str, data: str) -> T:
    """``value`` if it is a ``kind`` (``dict``: a JSON object, ``list``: an array), else
    ``ValueError``: a badly shaped event is a broken answer, not a crash."""
    if not isinstance(value, kind):
        shape = "an object" if kind is dict else "an array"
        raise ValueError(f"{what} is not {shape} in the stream event {data[:80]!r}")
    return value


def _add_tool_call(calls: dict[int, dict[str, str]], delta: Mapping[str, Any]) -> None:
    """One streamed piece of a tool call: the first names it, the others add arguments."""
    function = delta.get("function")
    if not isinstance(function, Mapping):
        function = {}
    call = calls.setdefault(int(delta.get("index", len(calls))), {"name": "", "arguments": ""})
    call["name"] += str(function.get("name") or "")
    call["arguments"] += str(function.get("arguments") or "")


def _tool_calls(calls: Mapping[int, Mapping[str, str]]) -> list[dict[str, Any]]:
    """``[{"name": ..., "arguments": {...}}]``: the arguments parsed (kept as text when they
    are not JSON), as the Ollama backend hands them over."""
    found = []
    for _, call in sorted(calls.items()):
        try:
            arguments: Any = json.loads(call["arguments"] or "{}")
        except ValueError:
            arguments = call["arguments"]
        found.append({"name": call["name"], "arguments": arguments})
    return found


def _error_message(body: Mapping[str, Any]) -> str:
    """The message of an error body: ``{"error": {"message": ...}}``, ``{"error": "..."}``,
    or FastAPI's ``{"detail": ...}``."""
    error = body.get("error", body.get("detail", body.get("message")))
    if isinstance(error, Mapping):
        error = error.get("message", error)
    return str(error)


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        return _error_message(body)
    text = response.text.strip()
    return text[:200] if text else response.reason_phrase
