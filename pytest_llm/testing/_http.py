"""FakeOllama's HTTP plumbing: the server, and a handler base that the routes build on.

:class:`Handler` reads a request's body, dispatches it to a route by ``(method, path)``
(:attr:`Handler.routes`, filled in by :mod:`._fake_ollama` from :mod:`._ollama_routes` and
:mod:`._openai_routes`), and gives the routes their writers: whole JSON bodies, errors in the
API's shape, NDJSON or server-sent-event streams (chunked, or dripped byte by byte), the abort
that closes a connection, the waits that notice a client gone or a server stopping, and the
one place that sends a reply's scripted faults (:meth:`Handler.take_reply` before the answer,
:meth:`Handler.ended_by_fault` after its chunks). Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, ClassVar, cast
from urllib.parse import urlsplit

from ._engine import (
    DEFAULT_STATUS_ERRORS,
    DEFAULT_STREAM_ERROR,
    POLL,
    Plan,
    RecordedRequest,
    Reply,
    _Held,
)

if TYPE_CHECKING:
    from ._fake_ollama import FakeOllama

__all__ = ["Abort", "Handler", "Route", "Server"]

#: The ``type`` of an OpenAI-shaped error body, by status, as Ollama's ``/v1`` sends it.
_OPENAI_ERROR_TYPES: dict[int, str] = {400: "invalid_request_error", 404: "not_found_error"}


class Abort(Exception):
    """The request must end by closing the connection (stop, client gone, scripted drop)."""


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # FakeOllama.stop() joins the handler threads itself, with a deadline
    # the listen backlog: socketserver's 5 made a burst of connections (xdist workers, llm.map)
    # wait 1 s for the kernel to retry their SYN; Ollama's Go server takes the system's maximum
    request_queue_size = socket.SOMAXCONN

    def __init__(self, fake: FakeOllama, handler: type[Handler]) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connection errors in handler threads are expected (client gone, stop): be quiet."""


#: A route: answers one request through the handler.
Route = Callable[["Handler", RecordedRequest], None]


class Handler(BaseHTTPRequestHandler):
    """One connection. Routes are looked up in :attr:`routes`: to add an endpoint, write a
    ``name(handler, request)`` function in a routes module and add its ``(METHOD, path)``
    entry to that module's ``ROUTES``."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeOllama"
    sys_version = ""
    disable_nagle_algorithm = True

    routes: ClassVar[dict[tuple[str, str], Route]] = {}

    _chunked = False
    headers_sent = False
    drip: float | None = None  # the reply's Reply.drip: seconds between the bytes of a stream
    openai = False  # the request is under /v1: OpenAI's wire format (SSE, error shape)
    arrival = 0  # the number of /v1 chat requests that had arrived when this one did
    _held: _Held | None = None  # the slot this request holds (Slots.hold), if any

    @property
    def fake(self) -> FakeOllama:
        return cast(Server, self.server).fake

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

    def client_gone(self) -> bool:
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

    def pause(self, seconds: float) -> None:
        """Wait, raising Abort if the server stops or the client goes away meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self.fake._stop_event.wait(min(remaining, POLL)):
                raise Abort
            if remaining > POLL and self.client_gone():
                raise Abort

    def slot(self) -> _Held:
        """Hold one of the fake's parallel slots (Abort when none came before the end)."""
        self._held = self.fake._slots.hold(self.client_gone, Abort)
        return self._held

    def answer_complete(self) -> None:
        """The slot back before the answer's last write: a client's next request, sent as
        soon as it has read this one, never finds it still held (``max_in_flight``)."""
        if self._held is not None:
            self._held.release()

    # ---------------------------------------------------------------- dispatch

    def _dispatch(self) -> None:
        self.headers_sent = False
        self._held = None
        self.drip = None
        self._chunked = self.request_version == "HTTP/1.1"
        path = urlsplit(self.path).path
        self.openai = path.startswith("/v1/")
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
                self.send_error_json(404, f"404 page not found: {self.command} {path}")
            elif parse_error is not None:
                self.send_error_json(400, parse_error)
            else:
                route(self, request)
        except Abort:
            self._shutdown_socket()
        except OSError:
            self.close_connection = True
        except Exception as exc:  # a bug or a failing reply callable: tell the client
            if self.headers_sent:
                self._shutdown_socket()
            else:
                self.send_error_json(500, f"FakeOllama internal error: {exc!r}")

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

    # ---------------------------------------------------------------- whole bodies

    def send_bytes(
        self, status: int, data: bytes, content_type: str, headers: Mapping[str, str] = {}
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.headers_sent = True
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_json(self, status: int, obj: object, headers: Mapping[str, str] = {}) -> None:
        data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
        self.send_bytes(status, data, "application/json; charset=utf-8", headers)

    def send_error_json(
        self, status: int, error: str | None, headers: Mapping[str, str] = {}
    ) -> None:
        text = error or DEFAULT_STATUS_ERRORS.get(status) or HTTPStatus(status).phrase.lower()
        self.send_json(status, self.error_body(status, text), headers)

    def error_body(self, status: int, text: str) -> dict[str, Any]:
        """``{"error": text}``; under ``/v1`` the OpenAI shape, as Ollama's ``/v1`` sends it."""
        if not self.openai:
            return {"error": text}
        kind = _OPENAI_ERROR_TYPES.get(status, "api_error")
        return {"error": {"message": text, "type": kind, "param": None, "code": None}}

    # ---------------------------------------------------------------- streams

    def start_stream(self) -> None:
        if self.headers_sent:
            return
        self.send_response(200)
        content_type = "text/event-stream" if self.openai else "application/x-ndjson"
        self.send_header("Content-Type", content_type)
        if self._chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:  # HTTP/1.0: the end of the body is the end of the connection
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.headers_sent = True

    def stream_line(self, obj: object) -> None:
        """One NDJSON line."""
        self.write_chunk(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode())

    def stream_event(self, data: object) -> None:
        """One server-sent event: ``data: <json>`` (a ``str`` such as ``[DONE]`` as is)."""
        text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
        self.write_chunk(b"data: " + text.encode(), end=b"\n\n")

    def write_chunk(self, data: bytes, end: bytes = b"\n") -> None:
        self.start_stream()
        data += end
        if self.drip is not None:  # one byte at a time: each its own chunk, then a pause
            for i in range(len(data)):
                if i:
                    self.pause(self.drip)
                self._write_raw(data[i : i + 1])
            return
        self._write_raw(data)

    def _write_raw(self, data: bytes) -> None:
        if self._chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        self.wfile.write(data)

    def end_stream(self) -> None:
        self.start_stream()
        if self._chunked:
            self.wfile.write(b"0\r\n\r\n")

    # ---------------------------------------------------------------- scripted faults

    def take_reply(self, request: RecordedRequest) -> Reply | None:
        """The next scripted reply, or None after sending its scripted HTTP error. A hanging
        reply holds a parallel slot until the client goes away or the server stops."""
        reply = self.fake._next_reply(request)
        if reply.hang:
            with self.slot():
                while not self.fake._stop_event.wait(POLL):
                    if self.client_gone():
                        break
                raise Abort
        if reply.status is not None:
            retry_after = reply.retry_after
            if isinstance(retry_after, int | float):
                retry_after = f"{retry_after:g}"
            headers = {} if retry_after is None else {"Retry-After": retry_after}
            self.send_error_json(reply.status, reply.error, headers)
            return None
        self.drip = reply.drip
        return reply

    def ended_by_fault(
        self,
        plan: Plan,
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
            self.raw_line(reply, sent, last=True)
        if plan.fault == "endless" and stream:
            self._endless_line(model)
        if plan.fault == "drop":
            if stream:
                self.start_stream()
            raise Abort
        if plan.fault == "error":
            error = reply.error or DEFAULT_STREAM_ERROR
            if stream:
                in_stream(error)
                self.end_stream()
            else:
                instead(error)
            return True
        return False

    def raw_line(self, reply: Reply, sent: int, *, last: bool = False) -> None:
        """The scripted ``raw_line``, verbatim, when ``sent`` chunks are out and it goes there
        (``last``: the end of the chunks, where it goes if it has not gone yet)."""
        if reply.raw_line is None or not (
            sent == reply.raw_after or (last and reply.raw_after > sent)
        ):
            return
        if self.openai:
            self.stream_event(reply.raw_line)
        else:
            self.write_chunk(reply.raw_line.encode())

    def _endless_line(self, model: str) -> None:
        """A stream line that never ends (Reply.endless_after): its text grows by one byte
        every ``drip`` seconds (0.05 s by default) until the client hangs up or we stop."""
        self.start_stream()
        if self.openai:  # a chunk event whose content never ends
            start = f'data: {{"model":"{model}","choices":[{{"index":0,"delta":{{"content":"'
        else:
            start = f'{{"model":"{model}","message":{{"role":"assistant","content":"'
        self._write_raw(start.encode())
        while True:
            self.pause(self.drip if self.drip is not None else POLL)
            self._write_raw(b"x")
