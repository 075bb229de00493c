"""A scriptable, in-process fake of the Ollama HTTP server, for tests.

:class:`FakeOllama` runs a *real* HTTP/1.1 server on ``127.0.0.1`` (a random free port) in
background threads and speaks Ollama's wire format, so the official ``ollama`` client (or
``httpx``, ``curl`` ...) works against it unchanged. It uses the standard library only.

Usage::

    import ollama
    from pytest_llm.testing import FakeOllama, Reply

    def test_answer() -> None:
        replies = ["Paris.", Reply(content="Lyon is", error_after=1, error="runner crashed")]
        with FakeOllama(replies, first_token_delay=0.2, token_delay=0.01) as fake:
            client = ollama.Client(host=fake.url, timeout=5)
            question = [{"role": "user", "content": "Capital of France?"}]
            answer = client.chat(model="llama3.2", messages=question)
            assert answer.message.content == "Paris."
            assert answer.eval_count == 1 and answer.prompt_eval_duration >= 200_000_000
            with pytest.raises(ollama.ResponseError, match="runner crashed"):
                for chunk in client.chat(model="llama3.2", messages=question, stream=True):
                    ...  # one chunk ("Lyon"), ~0.2 s after the request, then the error
            assert fake.requests[0].messages == question

Scripted replies (the ``replies`` argument and :meth:`FakeOllama.script`):

* a ``str`` or :class:`Reply` answers every chat/generate request (a ``str`` is
  ``Reply(content=...)``);
* a sequence is consumed one reply per chat/generate request, in arrival order; once exhausted
  the last reply repeats;
* a mapping keys on the model name (``"llama3.2"`` and ``"llama3.2:latest"`` are the same model,
  as in Ollama); each value is again any of these forms with its own cursor; the key ``"*"``
  serves models that have no key of their own. Mapping keys are added to ``models``;
* a callable receives the :class:`RecordedRequest` and returns a ``str`` or :class:`Reply`.

A :class:`Reply` can also script faults: an HTTP error (``status``), an error line in the middle
of a stream (``error_after``), an abruptly closed connection (``drop_after``), a request that
is never answered (``hang``) or a malformed stream line (``raw_line``, sent verbatim after
``raw_after`` chunks: a line that is JSON but not an object, such as ``[1, 2]``, or not JSON at
all; under ``/v1`` it is the ``data`` of one event; the stream then goes on as scripted), plus
per-reply timing. Faults of time, for deadlines: ``drip`` sends a streamed body one byte at a
time, ``drip`` seconds apart (each byte its own write, so a client's read timeout never fires);
``endless_after`` starts, after that many chunks, a line that never ends (a chunk whose text
grows by one byte every ``drip`` seconds, 0.05 s by default, without the newline or the end of
the SSE event) until the client hangs up or the server stops; ``retry_after`` adds a
``Retry-After`` header to a scripted ``status`` (a number is sent as seconds, a ``str`` as
given, e.g. an HTTP date). All three work on both the Ollama and the ``/v1`` routes.

Endpoints: ``POST /api/chat``, ``POST /api/generate``, ``POST /api/embed``,
``POST /api/embeddings`` (legacy), ``POST /api/show``, ``GET /api/tags``, ``GET /api/ps``,
``GET /api/version``, ``GET /`` (and ``HEAD`` for every ``GET`` route). Anything else is a 404
with a JSON ``{"error": ...}`` body; a malformed JSON body is a 400.

Like Ollama, the fake also speaks the OpenAI-compatible API under ``/v1``:
``POST /v1/chat/completions``, ``POST /v1/embeddings`` and ``GET /v1/models``, with the same
scripted replies, faults and delays. There, streams are server-sent events
(``text/event-stream``: one ``data: {chunk}`` event per token, a last chunk with
``finish_reason``, a usage chunk with empty ``choices`` when ``stream_options.include_usage``
is true, then ``data: [DONE]``); ``stream`` defaults to false, as in OpenAI's API;
``max_tokens`` (or ``max_completion_tokens``) caps the chunks (``finish_reason`` ``"length"``);
thinking text goes in ``delta.reasoning``; and every error body has OpenAI's shape,
``{"error": {"message", "type", "param", "code"}}`` (a scripted ``error_after`` is such an
event in the stream, then the stream ends without ``[DONE]``).

Fidelity notes (what real Ollama does, and so does the fake):

* streamed responses are NDJSON (``application/x-ndjson``, chunked transfer encoding); the
  response headers go out with the first chunk, i.e. after the time to first token;
* metrics (``total_duration``, ``load_duration``, ``prompt_eval_duration``, ``eval_duration``)
  are integer nanoseconds, measured for real, and any metric that is zero is omitted
  (``Reply.load_ms`` is only reported, not waited for; it is added to ``total_duration``);
* a scripted error after some chunks of a *non-streamed* request is a 500 with the error, as in
  Ollama; a dropped non-streamed request gets no response at all;
* a chat request with no messages (or a generate request with no prompt) only "loads" the model:
  the answer is a single done message with ``done_reason`` ``"load"`` (``"unload"`` when
  ``keep_alive`` is 0) and no scripted reply is consumed;
* ``options.num_predict`` caps the number of streamed chunks (``done_reason`` ``"length"``);
* thinking text is sent unless the request says ``"think": false``;
* a request whose client has disconnected stops being processed (frees its parallel slot).

Embeddings are deterministic: see :func:`fake_embedding`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, TypeAlias, cast
from urllib.parse import urlsplit

__all__ = [
    "EMBEDDING_DIM",
    "OLLAMA_VERSION",
    "FakeOllama",
    "RecordedRequest",
    "Replies",
    "Reply",
    "fake_embedding",
]

#: The version reported by ``GET /api/version``.
OLLAMA_VERSION = "0.12.0"
#: The length of the vectors returned by ``/api/embed``.
EMBEDDING_DIM = 64

_DEFAULT_STATUS_ERRORS: dict[int, str] = {
    400: "invalid request",
    404: "not found",
    429: "too many requests",
    500: "an error was encountered while running the model",
    503: "server busy, please try again.  maximum pending requests exceeded",
}
_DEFAULT_STREAM_ERROR = "an error was encountered while running the model: unexpected EOF"
#: The ``type`` of an OpenAI-shaped error body, by status, as Ollama's ``/v1`` sends it.
_OPENAI_ERROR_TYPES: dict[int, str] = {400: "invalid_request_error", 404: "not_found_error"}
_TOKEN_RE = re.compile(r"\s*\S+|\s+")
_POLL = 0.05  # seconds: how often waits look at the stop flag and the client's socket


# --------------------------------------------------------------------------------------------
# public data types


@dataclass(frozen=True, kw_only=True)
class Reply:
    """One scripted answer to a chat or generate request.

    ``content`` (and ``thinking``, sent before it) is split into word-sized tokens (each with its
    leading whitespace) and each token is one streamed chunk. Faults take precedence in this
    order: ``hang``, ``status``, then whichever of ``error_after`` / ``drop_after`` /
    ``endless_after`` comes first (counted in chunks, thinking chunks included). ``drip``
    (seconds between the bytes of a stream) and ``retry_after`` (the ``Retry-After`` of a
    ``status``) are described in the module docstring.
    """

    content: str = ""
    thinking: str | None = None
    done_reason: str = "stop"
    tokens_in: int | None = None
    tokens_out: int | None = None
    load_ms: float = 0.0
    status: int | None = None
    error: str | None = None
    error_after: int | None = None
    drop_after: int | None = None
    raw_line: str | None = None
    raw_after: int = 0
    hang: bool = False
    first_token_delay: float | None = None
    token_delay: float | None = None
    drip: float | None = None
    endless_after: int | None = None
    retry_after: float | str | None = None

    def __post_init__(self) -> None:
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError(f"Reply.status must be an HTTP error status, got {self.status}")
        for name in (
            "tokens_in", "tokens_out", "error_after", "drop_after", "raw_after", "endless_after"
        ):  # fmt: skip
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"Reply.{name} must be >= 0, got {value}")
        for name in ("load_ms", "first_token_delay", "token_delay", "drip"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"Reply.{name} must be >= 0, got {value}")


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the fake server received it.

    ``path`` has no query string; ``body`` is the parsed JSON object (``{}`` when the body is
    empty or not a JSON object); ``headers`` has lower-cased names.
    """

    method: str
    path: str
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def model(self) -> str | None:
        """The ``model`` field of the body (or the legacy ``name``), if any."""
        model = self.body.get("model", self.body.get("name"))
        return model if isinstance(model, str) else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat ``messages`` of the body (``[]`` for other requests)."""
        messages = self.body.get("messages")
        if not isinstance(messages, list):
            return []
        return [m for m in messages if isinstance(m, dict)]

    @property
    def prompt(self) -> str | None:
        """The ``prompt`` of a generate request, if any."""
        prompt = self.body.get("prompt")
        return prompt if isinstance(prompt, str) else None

    @property
    def stream(self) -> bool:
        """Whether the client asked for a stream (Ollama's default is true; under ``/v1``,
        as in OpenAI's API, it is false)."""
        if self.path.startswith("/v1/"):
            return self.body.get("stream") is True
        return self.body.get("stream") is not False


Replies: TypeAlias = (
    "str | Reply | Sequence[str | Reply] | Mapping[str, Replies]"
    " | Callable[[RecordedRequest], str | Reply]"
)


def fake_embedding(text: str, dim: int = EMBEDDING_DIM) -> list[float]:
    """The deterministic embedding the fake server returns for ``text``.

    The text is lower-cased and its whitespace collapsed; each character trigram (of the text
    padded with a space on both sides) is hashed (blake2b) to one of ``dim`` coordinates and a
    sign, the signed counts are summed and the vector is L2-normalised. Texts that share most
    trigrams ("The cat sat." / "the cat sat!") thus get a cosine similarity close to 1, while
    unrelated texts get one close to 0 (noise from hash collisions: typically
    ``|cos| < 0.4`` with the default 64 dimensions).
    """
    normal = " ".join(text.lower().split())
    padded = f" {normal} " if normal else "   "
    vector = [0.0] * dim
    for i in range(len(padded) - 2):
        digest = hashlib.blake2b(padded[i : i + 3].encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % dim
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0.0:  # every trigram cancelled out: still return a unit vector
        vector[0], norm = 1.0, 1.0
    return [v / norm for v in vector]


# --------------------------------------------------------------------------------------------
# helpers


def _normalize_model(name: str) -> str:
    """``"llama3.2"`` -> ``"llama3.2:latest"``, as Ollama resolves model names."""
    name = name.strip()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _as_reply(value: object) -> Reply:
    if isinstance(value, Reply):
        return value
    if isinstance(value, str):
        return Reply(content=value)
    raise TypeError(f"a reply must be a str or a Reply, got {type(value).__name__}")


def _tokens(text: str | None) -> list[str]:
    return _TOKEN_RE.findall(text) if text else []


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _words(value: object) -> int:
    return len(value.split()) if isinstance(value, str) else 0


def _is_zero_duration(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value == 0
    return isinstance(value, str) and value.strip() in {"0", "0s", "0m", "0h", "0ms"}


def _family(model: str) -> str:
    base = model.rsplit("/", 1)[-1]
    match = re.match(r"[a-z]+", base.lower())
    return match.group(0) if match else "llama"


def _digest(model: str) -> str:
    return hashlib.sha256(_normalize_model(model).encode()).hexdigest()


def _created(digest: str) -> int:
    """A stable pull time (Unix seconds, in 2023-2024) that changes with the digest."""
    return 1_700_000_000 + int(hashlib.sha256(digest.encode()).hexdigest()[:6], 16) % 31_000_000


class _Script:
    def next(self, request: RecordedRequest) -> Reply:
        raise NotImplementedError


class _Fixed(_Script):
    def __init__(self, reply: Reply) -> None:
        self.reply = reply

    def next(self, request: RecordedRequest) -> Reply:
        return self.reply


class _Sequence(_Script):
    def __init__(self, replies: list[Reply]) -> None:
        self.replies = replies
        self.cursor = 0
        self.lock = threading.Lock()

    def next(self, request: RecordedRequest) -> Reply:
        with self.lock:
            reply = self.replies[min(self.cursor, len(self.replies) - 1)]
            self.cursor += 1
            return reply


class _ByModel(_Script):
    def __init__(self, scripts: dict[str, _Script]) -> None:
        self.scripts = scripts

    def next(self, request: RecordedRequest) -> Reply:
        model = _normalize_model(request.model or "")
        script = self.scripts.get(model, self.scripts.get("*:latest"))
        if script is None:
            scripted = ", ".join(sorted(self.scripts))
            raise LookupError(f"no reply scripted for model {model!r} (scripted: {scripted})")
        return script.next(request)


class _Function(_Script):
    def __init__(self, function: Callable[[RecordedRequest], str | Reply]) -> None:
        self.function = function

    def next(self, request: RecordedRequest) -> Reply:
        return _as_reply(self.function(request))


def _compile(replies: Replies) -> _Script:
    if isinstance(replies, str | Reply):
        return _Fixed(_as_reply(replies))
    if isinstance(replies, Mapping):
        return _ByModel({_normalize_model(k): _compile(v) for k, v in replies.items()})
    if callable(replies):
        return _Function(replies)
    if isinstance(replies, Sequence):
        items = [_as_reply(r) for r in replies]
        if not items:
            raise ValueError("the sequence of replies is empty")
        return _Sequence(items)
    raise TypeError(f"unsupported replies: {replies!r}")


class _Abort(Exception):
    """The request must end by closing the connection (stop, client gone, scripted drop)."""


# --------------------------------------------------------------------------------------------
# the server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # FakeOllama.stop() joins the handler threads itself, with a deadline

    def __init__(self, fake: FakeOllama) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connection errors in handler threads are expected (client gone, stop): be quiet."""


class _Handler(BaseHTTPRequestHandler):
    """One connection. Routes are looked up in :attr:`routes`: to add an endpoint, write a
    ``_name(self, request)`` method and add its ``(METHOD, path)`` entry there."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeOllama"
    sys_version = ""
    disable_nagle_algorithm = True

    _chunked = False
    _headers_sent = False
    _drip: float | None = None  # the reply's Reply.drip: seconds between the bytes of a stream
    _openai = False  # the request is under /v1: OpenAI's wire format (SSE, error shape)
    _arrival = 0  # the number of /v1 chat requests that had arrived when this one did

    @property
    def fake(self) -> FakeOllama:
        return cast(_Server, self.server).fake

    # ---------------------------------------------------------------- connection lifecycle

    def setup(self) -> None:
        super().setup()
        if not self.fake._register(self.connection):
            self._shutdown_socket()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.fake._unregister(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def version_string(self) -> str:
        return self.server_version

    def _shutdown_socket(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _client_gone(self) -> bool:
        """Whether the client closed its end (a peek at the socket; never blocks)."""
        try:
            if hasattr(select, "poll"):  # no FD_SETSIZE limit
                poller = select.poll()
                poller.register(self.connection, select.POLLIN)
                readable = bool(poller.poll(0))
            else:  # pragma: no cover - Windows
                readable = bool(select.select([self.connection], [], [], 0)[0])
            return readable and self.connection.recv(1, socket.MSG_PEEK) == b""
        except ValueError:
            return False
        except OSError:
            return True

    def _sleep(self, seconds: float) -> None:
        """Wait, raising _Abort if the server stops or the client goes away meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self.fake._stop_event.wait(min(remaining, _POLL)):
                raise _Abort
            if remaining > _POLL and self._client_gone():
                raise _Abort

    # ---------------------------------------------------------------- dispatch

    def _dispatch(self) -> None:
        self._headers_sent = False
        self._drip = None
        self._chunked = self.request_version == "HTTP/1.1"
        path = urlsplit(self.path).path
        self._openai = path.startswith("/v1/")
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            raw = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        body: dict[str, Any] = {}
        parse_error: str | None = None
        if raw.strip():
            try:
                parsed = json.loads(raw)
            except ValueError as exc:
                parse_error = f"invalid JSON body: {exc}"
            else:
                if isinstance(parsed, dict):
                    body = parsed
                else:
                    parse_error = "invalid JSON body: expected an object"
        request = RecordedRequest(self.command, path, body, headers)
        self.fake._record(request)

        method = "GET" if self.command == "HEAD" else self.command
        route = self.routes.get((method, path))
        try:
            if route is None:
                self._send_error_json(404, f"404 page not found: {self.command} {path}")
            elif parse_error is not None:
                self._send_error_json(400, parse_error)
            else:
                route(self, request)
        except _Abort:
            self._shutdown_socket()
        except OSError:
            self.close_connection = True
        except Exception as exc:  # a bug or a failing reply callable: tell the client
            if self._headers_sent:
                self._shutdown_socket()
            else:
                self._send_error_json(500, f"FakeOllama internal error: {exc!r}")

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # ---------------------------------------------------------------- writing

    def _send_bytes(
        self, status: int, data: bytes, content_type: str, headers: Mapping[str, str] = {}
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self._headers_sent = True
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_json(self, status: int, obj: object, headers: Mapping[str, str] = {}) -> None:
        data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
        self._send_bytes(status, data, "application/json; charset=utf-8", headers)

    def _send_error_json(
        self, status: int, error: str | None, headers: Mapping[str, str] = {}
    ) -> None:
        text = error or _DEFAULT_STATUS_ERRORS.get(status) or HTTPStatus(status).phrase.lower()
        self._send_json(status, self._error_body(status, text), headers)

    def _error_body(self, status: int, text: str) -> dict[str, Any]:
        """``{"error": text}``; under ``/v1`` the OpenAI shape, as Ollama's ``/v1`` sends it."""
        if not self._openai:
            return {"error": text}
        kind = _OPENAI_ERROR_TYPES.get(status, "api_error")
        return {"error": {"message": text, "type": kind, "param": None, "code": None}}

    def _start_stream(self) -> None:
        if self._headers_sent:
            return
        self.send_response(200)
        content_type = "text/event-stream" if self._openai else "application/x-ndjson"
        self.send_header("Content-Type", content_type)
        if self._chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:  # HTTP/1.0: the end of the body is the end of the connection
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self._headers_sent = True

    def _stream_line(self, obj: object) -> None:
        self._write_chunk(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode())

    def _stream_event(self, data: object) -> None:
        """One server-sent event: ``data: <json>`` (a ``str`` such as ``[DONE]`` as is)."""
        text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
        self._write_chunk(b"data: " + text.encode(), end=b"\n\n")

    def _write_chunk(self, data: bytes, end: bytes = b"\n") -> None:
        self._start_stream()
        data += end
        if self._drip is not None:  # one byte at a time: each its own chunk, then a pause
            for i in range(len(data)):
                if i:
                    self._sleep(self._drip)
                self._write_raw(data[i : i + 1])
            return
        self._write_raw(data)

    def _write_raw(self, data: bytes) -> None:
        if self._chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        self.wfile.write(data)

    def _endless_line(self, model: str) -> None:
        """A stream line that never ends (Reply.endless_after): its text grows by one byte
        every ``drip`` seconds (0.05 s by default) until the client hangs up or we stop."""
        self._start_stream()
        if self._openai:  # a chunk event whose content never ends
            start = f'data: {{"model":"{model}","choices":[{{"index":0,"delta":{{"content":"'
        else:
            start = f'{{"model":"{model}","message":{{"role":"assistant","content":"'
        self._write_raw(start.encode())
        while True:
            self._sleep(self._drip if self._drip is not None else _POLL)
            self._write_raw(b"x")

    def _raw_line(self, reply: Reply, sent: int, *, last: bool = False) -> None:
        """The scripted ``raw_line``, verbatim, when ``sent`` chunks are out and it goes there
        (``last``: the end of the chunks, where it goes if it has not gone yet)."""
        if reply.raw_line is None or not (
            sent == reply.raw_after or (last and reply.raw_after > sent)
        ):
            return
        if self._openai:
            self._stream_event(reply.raw_line)
        else:
            self._write_chunk(reply.raw_line.encode())

    def _end_stream(self) -> None:
        self._start_stream()
        if self._chunked:
            self.wfile.write(b"0\r\n\r\n")

    # ---------------------------------------------------------------- model helpers

    def _require_model(self, request: RecordedRequest) -> str | None:
        """The requested model, or None after answering 400/404."""
        model = request.model
        if not model:
            self._send_error_json(400, "model is required")
            return None
        if not self.fake._has_model(model):
            self._send_error_json(404, f'model "{model}" not found, try pulling it first')
            return None
        return model

    def _model_entry(self, model: str) -> dict[str, Any]:
        normal = _normalize_model(model)
        digest = self.fake.digest_of(model)
        entry: dict[str, Any] = {
            "name": normal,
            "model": normal,
            "modified_at": self.fake._started_at,
            "size": 100_000_000 + int(_digest(model)[:8], 16) % 4_900_000_000,
        }
        if self.fake.digest:
            entry["digest"] = digest
        entry["details"] = self._details(model)
        return entry

    def _details(self, model: str) -> dict[str, Any]:
        family = _family(model)
        size, quantization = self.fake.size_of(model)
        return {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": size,
            "quantization_level": quantization,
        }

    # ---------------------------------------------------------------- routes

    def _root(self, request: RecordedRequest) -> None:
        self._send_bytes(200, b"Ollama is running", "text/plain; charset=utf-8")

    def _version(self, request: RecordedRequest) -> None:
        self._send_json(200, {"version": OLLAMA_VERSION})

    def _tags(self, request: RecordedRequest) -> None:
        models = list(dict.fromkeys(_normalize_model(m) for m in list(self.fake.models)))
        self._send_json(200, {"models": [self._model_entry(m) for m in models]})

    def _ps(self, request: RecordedRequest) -> None:
        entries = []
        for model in self.fake._loaded_models():
            entry = self._model_entry(model)
            entry["expires_at"] = "2999-01-01T00:00:00Z"
            entry["size_vram"] = entry["size"]
            entry["context_length"] = 4096
            entries.append(entry)
        self._send_json(200, {"models": entries})

    def _show(self, request: RecordedRequest) -> None:
        model = self._require_model(request)
        if model is None:
            return
        family = _family(model)
        capabilities = ["embedding"] if "embed" in model.lower() else ["completion"]
        self._send_json(
            200,
            {
                "license": "",
                "modelfile": f'# Modelfile generated by "ollama show"\nFROM {model}\n',
                "parameters": 'stop                           "<|eot_id|>"',
                "template": "{{ .Prompt }}",
                "details": self._details(model),
                "model_info": {
                    "general.architecture": family,
                    "general.parameter_count": 3_212_749_888,
                    f"{family}.context_length": 131072,
                    f"{family}.embedding_length": EMBEDDING_DIM,
                },
                "capabilities": capabilities,
                "modified_at": self.fake._started_at,
            },
        )

    def _embed(self, request: RecordedRequest) -> None:
        started = time.perf_counter_ns()
        embedded = self._embed_texts(request)
        if embedded is None:
            return
        model, texts, embeddings = embedded
        response: dict[str, Any] = {"model": model, "embeddings": embeddings}
        response["total_duration"] = time.perf_counter_ns() - started
        response["prompt_eval_count"] = sum(max(1, _words(t)) for t in texts)
        self._send_json(200, {k: v for k, v in response.items() if v != 0})

    def _embed_texts(
        self, request: RecordedRequest
    ) -> tuple[str, list[str], list[list[float]]] | None:
        """The model, the ``input`` texts and their vectors; None after answering 400/404."""
        model = self._require_model(request)
        if model is None:
            return None
        raw_input = request.body.get("input")
        if raw_input is None:
            texts: list[str] = []
        elif isinstance(raw_input, str):
            texts = [raw_input]
        elif isinstance(raw_input, list) and all(isinstance(t, str) for t in raw_input):
            texts = raw_input
        else:
            self._send_error_json(400, "invalid input type")
            return None
        dimensions = request.body.get("dimensions")
        dim = dimensions if isinstance(dimensions, int) and dimensions > 0 else EMBEDDING_DIM
        with self.fake._slot(self._client_gone):
            self.fake._mark_loaded(model)
            embeddings = [fake_embedding(t, EMBEDDING_DIM) for t in texts]
            if dim < EMBEDDING_DIM:  # Ollama truncates and re-normalises
                embeddings = [_renormalize(e[:dim]) for e in embeddings]
        return model, texts, embeddings

    def _embeddings(self, request: RecordedRequest) -> None:
        model = self._require_model(request)
        if model is None:
            return
        with self.fake._slot(self._client_gone):
            self.fake._mark_loaded(model)
            vector = fake_embedding(request.prompt or "")
        self._send_json(200, {"embedding": vector})

    def _chat(self, request: RecordedRequest) -> None:
        self._complete(request, chat=True)

    def _generate(self, request: RecordedRequest) -> None:
        self._complete(request, chat=False)

    # ---------------------------------------------------------------- OpenAI-compatible /v1

    def _v1_models(self, request: RecordedRequest) -> None:
        models = list(dict.fromkeys(_normalize_model(m) for m in list(self.fake.models)))
        # as Ollama: ``created`` is when the model was pulled, so a re-pull changes it
        data = [
            {"id": m, "object": "model", "created": _created(self.fake.digest_of(m)),
             "owned_by": "library"}
            for m in models
        ]  # fmt: skip
        self._send_json(200, {"object": "list", "data": data})

    def _v1_embeddings(self, request: RecordedRequest) -> None:
        embedded = self._embed_texts(request)
        if embedded is None:
            return
        model, texts, vectors = embedded
        tokens = sum(max(1, _words(t)) for t in texts)
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        self._send_json(200, {"object": "list", "data": data, "model": model, "usage": usage})

    def _v1_chat(self, request: RecordedRequest) -> None:
        model = self._require_model(request)
        if model is None:
            return
        if not request.messages:
            self._send_error_json(400, "[] is too short - 'messages'")
            return
        self._arrival = self.fake._chat_arrived()
        reply = self._take_reply(request)
        if reply is None:
            return
        with self.fake._slot(self._client_gone):
            self.fake._mark_loaded(model)
            self._v1_run(request, reply, model)

    routes: ClassVar[dict[tuple[str, str], Callable[[_Handler, RecordedRequest], None]]] = {
        ("GET", "/"): _root,
        ("GET", "/api/version"): _version,
        ("GET", "/api/tags"): _tags,
        ("GET", "/api/ps"): _ps,
        ("POST", "/api/show"): _show,
        ("POST", "/api/embed"): _embed,
        ("POST", "/api/embeddings"): _embeddings,
        ("POST", "/api/chat"): _chat,
        ("POST", "/api/generate"): _generate,
        ("GET", "/v1/models"): _v1_models,
        ("POST", "/v1/embeddings"): _v1_embeddings,
        ("POST", "/v1/chat/completions"): _v1_chat,
    }

    # ---------------------------------------------------------------- chat / generate

    def _message(
        self, model: str, *, chat: bool, content: str, thinking: str | None, done: bool
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"model": model, "created_at": _now()}
        if chat:
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if thinking:
                message["thinking"] = thinking
            out["message"] = message
        else:
            out["response"] = content
            if thinking:
                out["thinking"] = thinking
        out["done"] = done
        return out

    def _complete(self, request: RecordedRequest, *, chat: bool) -> None:
        arrived = time.perf_counter_ns()
        model = self._require_model(request)
        if model is None:
            return
        body = request.body
        if chat:
            messages = body.get("messages")
            if messages is not None and not isinstance(messages, list):
                self._send_json(400, {"error": "messages must be a list"})
                return
            empty = not messages
        else:
            empty = not body.get("prompt") and not body.get("images")
        if empty:  # Ollama only loads (or unloads) the model
            unload = _is_zero_duration(body.get("keep_alive"))
            if unload:
                self.fake._mark_unloaded(model)
            else:
                self.fake._mark_loaded(model)
            done = self._message(model, chat=chat, content="", thinking=None, done=True)
            done["done_reason"] = "unload" if unload else "load"
            self._send_json(200, done)
            return

        reply = self._take_reply(request)
        if reply is None:
            return
        with self.fake._slot(self._client_gone):
            self.fake._mark_loaded(model)
            self._run(request, reply, model, chat=chat, arrived=arrived)

    def _take_reply(self, request: RecordedRequest) -> Reply | None:
        """The next scripted reply, or None after sending its scripted HTTP error. A hanging
        reply holds a parallel slot until the client goes away or the server stops."""
        reply = self.fake._next_reply(request)
        if reply.hang:
            with self.fake._slot(self._client_gone):
                while not self.fake._stop_event.wait(_POLL):
                    if self._client_gone():
                        break
                raise _Abort
        if reply.status is not None:
            retry_after = reply.retry_after
            if isinstance(retry_after, int | float):
                retry_after = f"{retry_after:g}"
            headers = {} if retry_after is None else {"Retry-After": retry_after}
            self._send_error_json(reply.status, reply.error, headers)
            return None
        self._drip = reply.drip
        return reply

    def _plan(self, reply: Reply, *, think: bool, limit: object) -> _Plan:
        """What to send for ``reply``: at most ``limit`` chunks, cut short by its fault."""
        tokens = [("thinking", t) for t in (_tokens(reply.thinking) if think else [])]
        tokens += [("content", t) for t in _tokens(reply.content)]
        done_reason = reply.done_reason
        if isinstance(limit, int) and 0 < limit < len(tokens):
            tokens, done_reason = tokens[:limit], "length"
        fault: str | None = None
        cut = len(tokens)
        if reply.error_after is not None:
            fault, cut = "error", min(reply.error_after, len(tokens))
        if reply.drop_after is not None and (fault is None or reply.drop_after < cut):
            fault, cut = "drop", min(reply.drop_after, len(tokens))
        if reply.endless_after is not None and (fault is None or reply.endless_after < cut):
            fault, cut = "endless", min(reply.endless_after, len(tokens))
        fake = self.fake
        return _Plan(
            tokens=tokens,
            done_reason=done_reason,
            fault=fault,
            cut=cut,
            first_delay=(
                fake.first_token_delay
                if reply.first_token_delay is None
                else reply.first_token_delay
            ),
            token_delay=fake.token_delay if reply.token_delay is None else reply.token_delay,
        )

    def _paced(self, plan: _Plan) -> Iterator[tuple[str, str]]:
        """The chunks before the fault, each ``(kind, text)`` after its delay."""
        for i, chunk in enumerate(plan.tokens[: plan.cut]):
            self._sleep(plan.first_delay if i == 0 else plan.token_delay)
            yield chunk
        if plan.cut == 0:
            self._sleep(plan.first_delay)

    def _run(
        self, request: RecordedRequest, reply: Reply, model: str, *, chat: bool, arrived: int
    ) -> None:
        started = time.perf_counter_ns()
        options = request.body.get("options")
        num_predict = options.get("num_predict") if isinstance(options, dict) else None
        plan = self._plan(reply, think=request.body.get("think") is not False, limit=num_predict)

        stream = request.stream
        first_at: int | None = None
        thinking_text: list[str] = []
        content_text: list[str] = []
        for sent, (kind, token) in enumerate(self._paced(plan)):
            if stream:
                self._raw_line(reply, sent)
            if first_at is None:
                first_at = time.perf_counter_ns()
            (thinking_text if kind == "thinking" else content_text).append(token)
            if stream:
                if kind == "thinking":
                    chunk = self._message(model, chat=chat, content="", thinking=token, done=False)
                else:
                    chunk = self._message(
                        model, chat=chat, content=token, thinking=None, done=False
                    )
                self._stream_line(chunk)
        sent = len(thinking_text) + len(content_text)
        if self._ended_by_fault(
            plan,
            reply,
            model,
            sent=sent,
            stream=stream,
            in_stream=lambda error: self._stream_line({"error": error}),
            instead=lambda error: self._send_json(500, {"error": error}),
        ):
            return

        ended = time.perf_counter_ns()
        load_ns = round(reply.load_ms * 1_000_000)
        tokens_in, tokens_out = _token_counts(request, reply, plan, chat=chat)
        metrics = {
            "total_duration": ended - arrived + load_ns,
            "load_duration": load_ns,
            "prompt_eval_count": tokens_in,
            "prompt_eval_duration": (first_at or ended) - started,
            "eval_count": tokens_out,
            "eval_duration": ended - first_at if first_at is not None else 0,
        }
        if stream:
            final = self._message(model, chat=chat, content="", thinking=None, done=True)
        else:
            final = self._message(
                model,
                chat=chat,
                content="".join(content_text),
                thinking="".join(thinking_text) or None,
                done=True,
            )
        final["done_reason"] = plan.done_reason
        if not chat:
            final["context"] = list(range(1, tokens_in + tokens_out + 1))
        final.update({k: v for k, v in metrics.items() if v != 0})
        if stream:
            self._stream_line(final)
            self._end_stream()
        else:
            self._send_json(200, final)

    def _ended_by_fault(
        self,
        plan: _Plan,
        reply: Reply,
        model: str,
        *,
        sent: int,
        stream: bool,
        in_stream: Callable[[str], None],
        instead: Callable[[str], None],
    ) -> bool:
        """Send what the reply scripts after its chunks (a raw line, a line that never ends,
        a dropped connection, an error) in one place for both APIs; ``in_stream`` and
        ``instead`` send an error in the API's shape, inside a stream or as the response.
        True when a fault ended the answer (nothing more is sent)."""
        if stream:
            self._raw_line(reply, sent, last=True)
        if plan.fault == "endless" and stream:
            self._endless_line(model)
        if plan.fault == "drop":
            if stream:
                self._start_stream()
            raise _Abort
        if plan.fault == "error":
            error = reply.error or _DEFAULT_STREAM_ERROR
            if stream:
                in_stream(error)
                self._end_stream()
            else:
                instead(error)
            return True
        return False

    # ---------------------------------------------------------------- /v1 chat completions

    def _v1_run(self, request: RecordedRequest, reply: Reply, model: str) -> None:
        body = request.body
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        plan = self._plan(reply, think=body.get("think") is not False, limit=limit)
        stream = request.stream
        options = body.get("stream_options")
        with_usage = isinstance(options, dict) and options.get("include_usage") is True
        head = {
            "id": f"chatcmpl-{len(self.fake.requests)}",
            "object": "chat.completion.chunk" if stream else "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_ollama",
        }
        text: dict[str, list[str]] = {"thinking": [], "content": []}
        for sent, (kind, token) in enumerate(self._paced(plan)):
            if stream and self.fake.interrupting and self.fake._chats != self._arrival:
                self._stream_event("[DONE]")  # another chat arrived: this one is cut short
                self._end_stream()
                return
            if stream:
                self._raw_line(reply, sent)
            text[kind].append(token)
            if stream:
                delta = {"role": "assistant", "content": token if kind == "content" else ""}
                if kind == "thinking":
                    delta["reasoning"] = token
                choice = {"index": 0, "delta": delta, "finish_reason": None}
                self._stream_event({**head, "choices": [choice]})
        if self._ended_by_fault(
            plan,
            reply,
            model,
            sent=len(text["thinking"]) + len(text["content"]),
            stream=stream,
            in_stream=lambda error: self._stream_event(self._error_body(500, error)),
            instead=lambda error: self._send_error_json(500, error),
        ):
            return

        tokens_in, tokens_out = _token_counts(request, reply, plan, chat=True)
        usage = {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        }
        if not stream:
            message = {"role": "assistant", "content": "".join(text["content"])}
            if text["thinking"]:
                message["reasoning"] = "".join(text["thinking"])
            choice = {"index": 0, "message": message, "finish_reason": plan.done_reason}
            self._send_json(200, {**head, "choices": [choice], "usage": usage})
            return
        last = {"index": 0, "delta": {"role": "assistant", "content": ""}}
        self._stream_event({**head, "choices": [{**last, "finish_reason": plan.done_reason}]})
        if with_usage:
            self._stream_event({**head, "choices": [], "usage": usage})
        self._stream_event("[DONE]")
        self._end_stream()


@dataclass(frozen=True)
class _Plan:
    """How a reply is sent: its chunks, why it ends, and the fault that cuts it short."""

    tokens: list[tuple[str, str]]  # (kind, text); kind is "thinking" or "content"
    done_reason: str
    fault: str | None  # "error", "drop", "endless" or None
    cut: int  # how many chunks go out before the fault
    first_delay: float
    token_delay: float


def _token_counts(
    request: RecordedRequest, reply: Reply, plan: _Plan, *, chat: bool
) -> tuple[int, int]:
    """Prompt and answer token counts: scripted, else words of the prompt and chunks sent."""
    if reply.tokens_in is not None:
        tokens_in = reply.tokens_in
    elif chat:
        tokens_in = max(1, sum(_words(m.get("content")) for m in request.messages))
    else:
        tokens_in = max(1, _words(request.body.get("prompt")) + _words(request.body.get("system")))
    tokens_out = len(plan.tokens) if reply.tokens_out is None else reply.tokens_out
    return tokens_in, tokens_out


def _renormalize(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


class _SlotContext:
    def __init__(self, fake: FakeOllama, client_gone: Callable[[], bool]) -> None:
        self.fake = fake
        self.client_gone = client_gone

    def __enter__(self) -> None:
        if not self.fake._acquire_slot(self.client_gone):
            raise _Abort

    def __exit__(self, *exc_info: object) -> None:
        self.fake._release_slot()


# --------------------------------------------------------------------------------------------
# the public fake


class FakeOllama:
    """A fake Ollama server; see the module docstring.

    ``parallel`` works like ``OLLAMA_NUM_PARALLEL``: at most that many chat, generate and embed
    requests are processed at once, the others wait for a slot (a hung request holds its slot).
    ``digest=False`` leaves the ``digest`` field out of ``/api/tags`` and ``/api/ps`` entries.
    ``digests`` maps a model name to the digest served for it (default: a hash of the name);
    change an entry to act out a re-pulled tag (``/v1/models``' ``created`` changes with it).
    ``sizes`` maps a model name to its ``(parameter_size, quantization_level)``, e.g.
    ``("135M", "Q8_0")`` (default ``("3.2B", "Q4_K_M")``).
    ``interrupting=True`` acts out llama-cpp-python's server without
    ``--interrupt_requests False``: a streamed ``/v1`` answer that is running when another
    chat request arrives ends before its next chunk with ``data: [DONE]`` and no
    ``finish_reason``.
    """

    def __init__(
        self,
        replies: Replies = "ok",
        *,
        models: Iterable[str] = ("llama3.2",),
        first_token_delay: float = 0.0,
        token_delay: float = 0.0,
        parallel: int | None = None,
        digest: bool = True,
        interrupting: bool = False,
    ) -> None:
        if first_token_delay < 0 or token_delay < 0:
            raise ValueError("delays must be >= 0")
        if parallel is not None and parallel < 1:
            raise ValueError(f"parallel must be >= 1, got {parallel}")
        self.requests: list[RecordedRequest] = []
        self.models: list[str] = [models] if isinstance(models, str) else list(models)
        self.first_token_delay = first_token_delay
        self.token_delay = token_delay
        self.parallel = parallel
        self.digest = digest
        self.interrupting = interrupting
        self._chats = 0
        self.digests: dict[str, str] = {}
        self.sizes: dict[str, tuple[str, str]] = {}
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._stop_event = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._loaded: dict[str, None] = {}
        self._started_at = _now()
        self._script: _Script = _Fixed(Reply(content="ok"))
        self.script(replies)

    # ---------------------------------------------------------------- public API

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``; pass it as ``host`` to ``ollama.Client``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        """Same as :attr:`url`."""
        return self.url

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeOllama is not started: call start() or use it as a context")
        return self._port

    @property
    def in_flight(self) -> int:
        """The number of chat/generate/embed requests being processed right now."""
        with self._lock:
            return self._in_flight

    def script(self, replies: Replies) -> None:
        """Replace the scripted replies (same forms as the constructor's ``replies``)."""
        compiled = _compile(replies)
        with self._lock:
            self._script = compiled
            if isinstance(replies, Mapping):
                known = {_normalize_model(m) for m in self.models}
                for key in replies:
                    if key != "*" and _normalize_model(key) not in known:
                        self.models.append(key)
                        known.add(_normalize_model(key))

    def start(self) -> FakeOllama:
        """Start serving (idempotent) and return self."""
        if self._server is not None:
            return self
        self._stop_event.clear()
        server = _Server(self)
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _POLL},
            name=f"FakeOllama:{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: end hung and in-flight requests, close every connection and the
        listening socket, join the threads. Idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        with self._cond:
            self._stop_event.set()
            self._cond.notify_all()
        server.shutdown()
        server.server_close()
        deadline = time.monotonic() + 2.0
        with self._lock:
            connections = list(self._connections.items())
        for connection, _ in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for _, handler_thread in connections:
            if handler_thread is not threading.current_thread():
                handler_thread.join(max(0.0, deadline - time.monotonic()))
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port is not None and self._server else "stopped"
        return f"<FakeOllama {where} models={self.models!r} requests={len(self.requests)}>"

    # ---------------------------------------------------------------- used by the handler

    def _chat_arrived(self) -> int:
        """Count a ``/v1`` chat request in; the count so far (``interrupting`` compares it)."""
        with self._lock:
            self._chats += 1
            return self._chats

    def _register(self, connection: socket.socket) -> bool:
        with self._lock:
            if self._stop_event.is_set():
                return False
            self._connections[connection] = threading.current_thread()
            return True

    def _unregister(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.pop(connection, None)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            script = self._script
        return script.next(request)  # outside the lock: a callable may be slow

    def size_of(self, model: str) -> tuple[str, str]:
        """``(parameter_size, quantization_level)`` served for ``model`` (``sizes``, else
        ``("3.2B", "Q4_K_M")``), as ``/api/show`` and ``/api/tags`` report them."""
        wanted = _normalize_model(model)
        for name, size in list(self.sizes.items()):
            if _normalize_model(name) == wanted:
                return size
        return ("3.2B", "Q4_K_M")

    def digest_of(self, model: str) -> str:
        """The digest served for ``model`` (``digests``, else a hash of its name)."""
        wanted = _normalize_model(model)
        for name, digest in list(self.digests.items()):
            if _normalize_model(name) == wanted:
                return digest
        return _digest(model)

    def _has_model(self, model: str) -> bool:
        wanted = _normalize_model(model)
        return any(_normalize_model(m) == wanted for m in list(self.models))

    def _mark_loaded(self, model: str) -> None:
        with self._lock:
            self._loaded[_normalize_model(model)] = None

    def _mark_unloaded(self, model: str) -> None:
        with self._lock:
            self._loaded.pop(_normalize_model(model), None)

    def _loaded_models(self) -> list[str]:
        with self._lock:
            return list(self._loaded)

    def _slot(self, client_gone: Callable[[], bool]) -> _SlotContext:
        return _SlotContext(self, client_gone)

    def _acquire_slot(self, client_gone: Callable[[], bool]) -> bool:
        with self._cond:
            while self.parallel is not None and self._in_flight >= self.parallel:
                if self._stop_event.is_set() or client_gone():
                    return False
                self._cond.wait(_POLL)
            if self._stop_event.is_set():
                return False
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            return True

    def _release_slot(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify()
