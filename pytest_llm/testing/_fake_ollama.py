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

The modules along the seam: :mod:`._engine` (the script engine: replies, plans, pacing,
slots), :mod:`._http` (the server and its plumbing, and the one function that sends a reply's
scripted faults), :mod:`._ollama_routes` (``/api/...``) and :mod:`._openai_routes`
(``/v1/...``); this one holds :class:`FakeOllama`, which puts them together.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import ClassVar

from . import _ollama_routes, _openai_routes
from ._engine import (
    EMBEDDING_DIM,
    OLLAMA_VERSION,
    POLL,
    RecordedRequest,
    Replies,
    Reply,
    Script,
    Slots,
    compile_script,
    fake_embedding,
    name_digest,
    normalize_model,
    now,
)
from ._http import Handler, Route, Server

__all__ = [
    "EMBEDDING_DIM",
    "OLLAMA_VERSION",
    "FakeOllama",
    "RecordedRequest",
    "Replies",
    "Reply",
    "fake_embedding",
]


class _Handler(Handler):
    """The fake's handler: the plumbing of :class:`._http.Handler` with both APIs' routes."""

    routes: ClassVar[dict[tuple[str, str], Route]] = {
        **_ollama_routes.ROUTES,
        **_openai_routes.ROUTES,
    }


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
        self.digest = digest
        self.interrupting = interrupting
        self._chats = 0
        self.digests: dict[str, str] = {}
        self.sizes: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._slots = Slots(parallel, self._stop_event)
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._connections: dict[socket.socket, threading.Thread] = {}
        self.connections_accepted = 0
        """TCP connections the server took so far (a client that reuses one counts it once)."""
        self._loaded: dict[str, None] = {}
        self._started_at = now()
        self._script: Script = compile_script("ok")
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
        return self._slots.in_flight

    @property
    def parallel(self) -> int | None:
        """At most this many chat, generate and embed requests at once (None: no limit)."""
        return self._slots.parallel

    @parallel.setter
    def parallel(self, value: int | None) -> None:
        self._slots.parallel = value

    @property
    def max_in_flight(self) -> int:
        """The most chat, generate and embed requests ever processed at once."""
        return self._slots.max_in_flight

    @max_in_flight.setter
    def max_in_flight(self, value: int) -> None:
        self._slots.max_in_flight = value

    def script(self, replies: Replies) -> None:
        """Replace the scripted replies (same forms as the constructor's ``replies``)."""
        compiled = compile_script(replies)
        with self._lock:
            self._script = compiled
            if isinstance(replies, Mapping):
                known = {normalize_model(m) for m in self.models}
                for key in replies:
                    if key != "*" and normalize_model(key) not in known:
                        self.models.append(key)
                        known.add(normalize_model(key))

    def start(self) -> FakeOllama:
        """Start serving (idempotent) and return self."""
        if self._server is not None:
            return self
        self._stop_event.clear()
        server = Server(self, _Handler)
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": POLL},
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
        self._stop_event.set()
        self._slots.wake()
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
            self.connections_accepted += 1
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
        wanted = normalize_model(model)
        for name, size in list(self.sizes.items()):
            if normalize_model(name) == wanted:
                return size
        return ("3.2B", "Q4_K_M")

    def digest_of(self, model: str) -> str:
        """The digest served for ``model`` (``digests``, else a hash of its name)."""
        wanted = normalize_model(model)
        for name, digest in list(self.digests.items()):
            if normalize_model(name) == wanted:
                return digest
        return name_digest(model)

    def _has_model(self, model: str) -> bool:
        wanted = normalize_model(model)
        return any(normalize_model(m) == wanted for m in list(self.models))

    def _mark_loaded(self, model: str) -> None:
        with self._lock:
            self._loaded[normalize_model(model)] = None

    def _mark_unloaded(self, model: str) -> None:
        with self._lock:
            self._loaded.pop(normalize_model(model), None)

    def _loaded_models(self) -> list[str]:
        with self._lock:
            return list(self._loaded)
