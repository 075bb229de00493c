"""Ollama through the official ``ollama`` client, always with a timeout (it has none by default)."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import ollama

from ..config import public_host
from ..errors import BackendError, BackendResponseError
from ..result import Completion
from . import ChatRequest, Deadline, authorization, key_advice, status_error, timeout_message
from ._deadline_transport import DeadlineTransport
from .http import transport_error

__all__ = ["OllamaBackend"]

_NS_PER_MS = 1_000_000
#: What the ollama client raises: HTTP errors, refused connections (builtin ConnectionError
#: when not streaming), httpx transport errors and timeouts, and a garbled stream (ValueError).
_CLIENT_ERRORS = (ollama.ResponseError, httpx.HTTPError, ConnectionError, ValueError)

T = TypeVar("T")


class _Malformed(ValueError):
    """A stream line the client could not read as a chunk (not JSON, not an object, …)."""


class OllamaBackend:
    """Streams ``/api/chat`` so that time to first token is measured, not guessed."""

    name = "ollama"

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
        self.host = public_host(host)  # credentials go in the Authorization header only
        self.timeout_seconds = timeout_seconds
        self.api_key_env = api_key_env or "OLLAMA_API_KEY"
        key = os.environ.get(self.api_key_env, "").strip()
        self._key_advice = key_advice(host, self.api_key_env, bool(key))
        self._client = _Client(
            host=self.host,
            timeout=timeout_seconds,
            headers=authorization(host, key) or None,
            transport=DeadlineTransport.around(transport, self.host),  # deadlines bound it
        )
        self._digests: dict[str, str] | None = None
        self._digests_lock = threading.Lock()

    def chat(self, request: ChatRequest) -> Completion:
        options: dict[str, Any] = {"temperature": request.temperature, **request.options}
        tools = options.pop("tools", None)  # a request field of Ollama's, not an option
        if request.seed is not None:
            options["seed"] = request.seed
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        parts: list[str] = []
        calls: list[dict[str, Any]] = []
        ttft_ms: float | None = None
        final: ollama.ChatResponse | None = None
        # a bound on the whole answer: the transport cuts a dripping or silent stream
        with Deadline(
            model=request.model, host=self.host, timeout_seconds=self.timeout_seconds
        ) as deadline:
            try:
                stream = self._client.chat(  # type: ignore[call-overload]
                    model=request.model,
                    messages=list(request.messages),
                    stream=True,
                    format=request.format,
                    options=options,
                    keep_alive=request.keep_alive,
                    tools=tools,
                )
                with closing(stream):
                    for chunk in stream:
                        message = chunk.message
                        if message.content:
                            parts.append(message.content)
                            if request.on_delta is not None:
                                request.on_delta(message.content)
                        for call in message.tool_calls or ():
                            arguments = dict(call.function.arguments or {})
                            calls.append({"name": call.function.name, "arguments": arguments})
                        first = message.content or message.thinking or message.tool_calls
                        if ttft_ms is None and first:
                            ttft_ms = deadline.elapsed_ms()
                        if chunk.done:
                            final = chunk
            except BackendError:
                raise
            except _CLIENT_ERRORS as exc:
                raise self._convert(exc, request.model) from exc
        duration_ms = deadline.elapsed_ms()
        if final is None:
            raise BackendResponseError(
                f"Ollama at {self.host} ended the answer of {request.model!r} "
                "without a final chunk",
            )
        metadata: dict[str, Any] = {
            key: value / _NS_PER_MS
            for key, value in (
                ("server_total_ms", final.total_duration),
                ("prompt_eval_ms", final.prompt_eval_duration),
                ("eval_ms", final.eval_duration),
            )
            if value
        }
        if calls:
            metadata["tool_calls"] = calls
        return Completion(
            content="".join(parts),
            model=request.model,
            tokens_in=final.prompt_eval_count or 0,
            tokens_out=final.eval_count or 0,
            duration_ms=duration_ms,
            ttft_ms=ttft_ms,
            load_ms=(final.load_duration or 0) / _NS_PER_MS,
            done_reason=final.done_reason,
            metadata=metadata,
        )

    def embed(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        with Deadline(model=model, host=self.host, timeout_seconds=self.timeout_seconds):
            try:
                response = self._client.embed(model=model, input=list(texts))
            except _CLIENT_ERRORS as exc:
                raise self._convert(exc, model) from exc
        return [list(vector) for vector in response.embeddings]

    def size(self, model: str) -> tuple[str, str] | None:
        """``(parameter_size, quantization_level)`` from ``/api/show`` (``("3.2B", "Q4_K_M")``),
        ``None`` when the server does not say; a failed request raises."""
        with Deadline(model=model, host=self.host, timeout_seconds=self.timeout_seconds):
            try:
                details = self._client.show(model).details
            except _CLIENT_ERRORS as exc:
                raise self._convert(exc, model) from exc
        if details is None or not details.parameter_size:
            return None
        return details.parameter_size, details.quantization_level or ""

    def digest(self, model: str) -> str | None:
        """From ``/api/tags``, read once per backend (``name`` and ``name:latest`` match).

        A failed read raises once; later calls answer ``None`` without asking again, so
        a server that is down costs one timeout per session, not one per test.
        """
        with self._digests_lock:
            if self._digests is None:
                self._digests = {}
                seconds = self.timeout_seconds
                with Deadline(model=model, host=self.host, timeout_seconds=seconds, session=True):
                    try:
                        listing = self._client.list()
                    except _CLIENT_ERRORS as exc:
                        raise self._convert(exc, model) from exc
                self._digests = {m.model: m.digest for m in listing.models if m.model and m.digest}
        name = model if ":" in model else f"{model}:latest"
        return self._digests.get(model) or self._digests.get(name)

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    def _timeout_message(self, model: str) -> str:
        return timeout_message(model, self.host, self.timeout_seconds)

    def _convert(self, exc: Exception, model: str) -> BackendError:
        """Map ``ollama``/``httpx`` exceptions to ours: the single place that knows them."""
        if isinstance(exc, _Malformed):
            return BackendResponseError(
                f"Ollama at {self.host} sent a malformed answer for {model!r}: {exc}"
            )
        if isinstance(exc, ollama.ResponseError):
            text = str(exc.error)
            status = None if exc.status_code == -1 else exc.status_code  # -1: mid-stream
            if status == 404 and not _says_model_missing(text):
                return self._no_api(text)
            return status_error(
                status,
                text,
                server=f"Ollama at {self.host}",
                model=model,
                key_advice=self._key_advice,
                model_missing=(
                    f"model {model!r} is not available at {self.host}: "
                    f"run `ollama pull {model}` (server said: {text})"
                ),
            )
        if isinstance(exc, ValueError):  # the client would not build the request
            error = BackendResponseError(
                f"the ollama client could not send the request for {model!r}: "
                f"{type(exc).__name__}: {exc}"
            )
            error.retryable = False
            return error
        return transport_error(
            exc,
            host=self.host,
            model=model,
            timeout_seconds=self.timeout_seconds,
            unreachable=f"Ollama is not reachable at {self.host}: start it with `ollama serve`, "
            "or point OLLAMA_HOST / --llm-host at a running server",
            server=f"Ollama at {self.host}",
        )

    def _no_api(self, text: str) -> BackendError:
        """A 404 that is not about a model: the URL does not lead to Ollama's API."""
        parts = urlsplit(self.host)
        if parts.path:
            fix = (
                f"the host must be the server's root URL, {parts.scheme}://{parts.netloc}, "
                f"without the path {parts.path!r}"
            )
            if parts.path.rstrip("/").endswith("/v1"):
                fix += " (its OpenAI-compatible API under /v1 is --llm-backend=openai)"
        else:
            fix = "is it an Ollama server? For an OpenAI-compatible one use --llm-backend=openai"
        error = BackendResponseError(
            f"there is no Ollama API at {self.host} (404: {text}): {fix}", status_code=404
        )
        error.retryable = False
        return error


def _says_model_missing(text: str) -> bool:
    """Ollama's 404 about a model (``model "x" not found, try pulling it first``), not the
    404 of a path that does not exist (``404 page not found``)."""
    lower = text.lower()
    return "model" in lower and "not found" in lower and "page not found" not in lower


_NOT_AN_OBJECT = re.compile(r"'(\w+)' object has no attribute")


class _Client(ollama.Client):
    """The ``ollama`` client, reading a stream's lines itself: one generator over the body's
    bytes in place of the client's four (its own, ``iter_lines``, ``iter_text``,
    ``iter_bytes``), each line parsed and checked as the client does. A chunk costs less
    (the proxy relays answers streamed upstream, so it pays this on every call)."""

    def _request(self, cls: type[T], *args: Any, stream: bool = False, **kwargs: Any) -> Any:
        if not stream:
            return super()._request(cls, *args, **kwargs)
        return _stream(self._client, cls, args, kwargs)


def _stream(client: httpx.Client, cls: type[T], args: Any, kwargs: Any) -> Iterator[T]:
    """The chunks of a streamed request, as the ``ollama`` client yields them: an error
    status is its ``ResponseError`` with the status, an ``{"error": ...}`` line one without
    (mid-stream), and a line it could not read as a chunk is ``_Malformed``: not JSON,
    JSON but no object (``[1, 2]``), or of the wrong shape (pydantic's ``ValidationError``)."""
    with client.stream(*args, **kwargs) as response:
        if not response.is_success:  # what the client's raise_for_status() refuses
            response.read()
            raise ollama.ResponseError(response.text, response.status_code) from None
        for line in _lines(response.iter_bytes()):
            try:
                part = json.loads(line)
                if error := part.get("error"):
                    raise ollama.ResponseError(error)
                chunk = cls(**part)
            except (AttributeError, TypeError, ValueError) as exc:
                raise _malformed(exc) from exc
            yield chunk


def _lines(data: Iterable[bytes]) -> Iterator[str]:
    """The lines of a body that arrives in ``data`` pieces, decoded (as ``iter_lines``: a
    blank line is one, the last may lack its newline)."""
    rest = b""
    for piece in data:
        if b"\n" not in piece:
            rest += piece
            continue
        *lines, rest = (rest + piece).split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r").decode(errors="replace")
    if rest:
        yield rest.rstrip(b"\r").decode(errors="replace")


def _malformed(exc: Exception) -> _Malformed:
    kind = _NOT_AN_OBJECT.match(str(exc))
    if kind is not None:
        what = f"a stream line is JSON but not an object (a {kind.group(1)})"
    elif isinstance(exc, json.JSONDecodeError):
        what = f"a stream line is not JSON ({exc.msg})"
    else:
        first = str(exc).splitlines()[0] if str(exc) else ""
        what = f"a stream line is not a chunk: {type(exc).__name__}: {first}"
    return _Malformed(what)
