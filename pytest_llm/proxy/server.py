"""The proxy's HTTP server: one per process, on loopback, serving the test that runs.

A ``ThreadingHTTPServer`` (HTTP/1.1, keep-alive, one thread per connection) whose routes
are the two API modules' tables (:data:`pytest_llm.proxy.ollama_api.ROUTES`,
:data:`pytest_llm.proxy.openai_api.ROUTES`). Each request goes to the
:class:`~pytest_llm.proxy.core.LLMProxy` of the test running now (:meth:`ProxyServer.serving`);
between tests there is none and a request is refused with a 503 in its API's format.
Every wait is bounded: start, stop (hung connections are shut), and a client that stops
reading a stream.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from . import ollama_api, openai_api
from ._wire import BadRequest, bad_request
from .core import LLMProxy

__all__ = ["Exchange", "ProxyServer"]

#: A route: the handler of one ``(method, path)``.
Route = Callable[["Exchange"], None]
#: How long stop() waits for the handler threads, in all.
_STOP_SECONDS = 2.0
#: A client that reads nothing of a stream for this long is dropped (its socket's timeout).
_SEND_TIMEOUT_SECONDS = 30.0
#: The largest request body read (a bigger one is a 413).
_MAX_BODY = 64 * 1024 * 1024
#: The limits of a request's header block (those of ``http.client``).
_MAX_LINE = 65536
_MAX_HEADERS = 100


class ProxyServer:
    """The loopback server; ``start()``/``stop()`` (or ``with``), then ``serving(proxy)``
    around each test."""

    def __init__(self) -> None:
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._active: LLMProxy | None = None
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._stopping = False

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the llm_proxy server is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> ProxyServer:
        if self._server is None:
            self._stopping = False
            self._server = _Server(self)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"llm_proxy:{self._server.server_address[1]}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, shut every open connection and join the threads (bounded)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        with self._lock:
            self._stopping = True
            connections = list(self._connections.items())
        server.shutdown()
        server.server_close()
        for connection, _ in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + _STOP_SECONDS
        for _, handler in connections:
            handler.join(max(0.0, deadline - time.monotonic()))
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._server = self._thread = None

    def __enter__(self) -> ProxyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextmanager
    def serving(self, proxy: LLMProxy) -> Iterator[LLMProxy]:
        """Hand the requests to ``proxy`` (one test's) while in the block."""
        with self._lock:
            if self._active is not None:
                raise RuntimeError(f"llm_proxy already serves {self._active.test}")
            self._active = proxy
        try:
            yield proxy
        finally:
            with self._lock:
                self._active = None

    @property
    def active(self) -> LLMProxy | None:
        return self._active

    def _register(self, connection: socket.socket) -> bool:
        with self._lock:
            if self._stopping:
                return False
            self._connections[connection] = threading.current_thread()
            return True

    def _unregister(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.pop(connection, None)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # ProxyServer.stop() joins the handler threads, with a deadline

    def __init__(self, owner: ProxyServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer is not an error of the server: be quiet."""


ROUTES: dict[tuple[str, str], Route] = {**ollama_api.ROUTES, **openai_api.ROUTES}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pytest-llm-proxy"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = _SEND_TIMEOUT_SECONDS
    wbufsize = 64 * 1024  # an answer's headers and body leave in one write (flushed per request)
    raw_requestline: bytes
    #: The second and the ``Date`` header formatted for it (one tuple, replaced whole).
    _date: tuple[int, str] = (0, "")

    def setup(self) -> None:
        super().setup()
        owner = cast(_Server, self.server).owner
        if not owner._register(self.connection):
            self.close_connection = True

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            cast(_Server, self.server).owner._unregister(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def parse_request(self) -> bool:
        """The base class's, with the header block read without the email parser (which
        costs some 30 µs a request, more than the rest of the handler's own work): a request
        line ``METHOD PATH HTTP/1.x`` and its headers, ``Name: value`` each (a folded line
        continues the previous one). Any other request line goes to the base class."""
        words = self.raw_requestline.split()
        if len(words) != 3 or words[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
            return super().parse_request()
        self.requestline = self.raw_requestline.decode("iso-8859-1").rstrip("\r\n")
        command, path, version = (w.decode("iso-8859-1") for w in words)
        self.command, self.request_version = command, version
        self.path = "/" + path.lstrip("/") if path.startswith("//") else path
        headers = http.client.HTTPMessage()
        readline = self.rfile.readline
        name: str | None = None
        value = ""
        for _ in range(_MAX_HEADERS + 1):
            line = readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long")
                return False
            if line[:1] in (b" ", b"\t") and name is not None:  # folded: the value goes on
                value = f"{value} {line.decode('iso-8859-1').strip()}"
                continue
            if name is not None:
                headers[name] = value
                name = None
            if line in (b"\r\n", b"\n", b""):
                break
            key, colon, rest = line.decode("iso-8859-1").partition(":")
            if not colon or not key or key != key.strip():
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad header line ({line[:80]!r})")
                return False
            name, value = key, rest.strip(" \t\r\n")
        else:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
            return False
        self.headers = headers
        connection = (headers.get("Connection") or "").lower()
        self.close_connection = version == "HTTP/1.0" and connection != "keep-alive"
        if connection == "close":
            self.close_connection = True
        expect = headers.get("Expect") or ""
        if expect.lower() == "100-continue" and version == "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header's value, formatted once a second."""
        if timestamp is not None:
            return super().date_time_string(timestamp)
        now = int(time.time())
        second, text = _Handler._date
        if second != now:
            text = super().date_time_string(now)
            _Handler._date = (now, text)
        return text

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        exchange = Exchange(self, method, path)
        route = ROUTES.get(("GET" if method == "HEAD" else method, path))
        if route is None:
            known = sorted({p for m, p in ROUTES if p != "/"})
            allowed = sorted(m for m, p in ROUTES if p == path)
            if allowed:
                exchange.error(405, f"{method} {path} is not served; use {', '.join(allowed)}")
            else:
                exchange.error(
                    404, f"the pytest-llm proxy serves no {path}; it serves {', '.join(known)}"
                )
            return
        owner = cast(_Server, self.server).owner
        proxy = owner.active
        if proxy is None and path not in ("/", "/api/version"):
            exchange.error(
                503,
                "no test is using llm_proxy right now: the proxy answers the calls made while "
                "a test that requests the llm_proxy fixture runs",
            )
            return
        exchange.proxy = proxy
        try:
            route(exchange)
        except BadRequest as exc:
            exchange.error(exc.status, exc.message)
        except OSError:  # the client went away
            self.close_connection = True


class Exchange:
    """One request and its answer, as the routes see them: the body, the test's proxy,
    and ways to answer (a JSON body, or a stream of chunks)."""

    def __init__(self, handler: _Handler, method: str, path: str) -> None:
        self._handler = handler
        self.method = method
        self.path = path
        self.openai = path.startswith("/v1/")
        self.proxy: LLMProxy | None = None
        self._streaming = False
        self._body: dict[str, Any] | None = None

    @property
    def test_proxy(self) -> LLMProxy:
        assert self.proxy is not None  # checked by the dispatcher
        return self.proxy

    def body(self) -> dict[str, Any]:
        """The request's JSON object; a missing, oversized or malformed one is a 400/413."""
        if self._body is not None:
            return self._body
        headers = self._handler.headers
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            raw = self._read_chunked()
        else:
            try:
                length = int(headers.get("Content-Length") or 0)
            except ValueError:
                raise bad_request("the Content-Length header is not a number") from None
            if length > _MAX_BODY:
                raise bad_request(f"the request body is over {_MAX_BODY} bytes", 413)
            raw = self._handler.rfile.read(length) if length else b""
        if not raw.strip():
            raise bad_request(f"{self.method} {self.path} needs a JSON body")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise bad_request(f"the request body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        self._body = body
        return body

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        h = self._handler
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        if self.method != "HEAD":
            h.wfile.write(data)

    def send_text(self, status: int, text: str) -> None:
        data = text.encode()
        h = self._handler
        h.send_response(status)
        h.send_header("Content-Type", "text/plain; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if self.method != "HEAD":
            h.wfile.write(data)

    @property
    def streaming(self) -> bool:
        """Whether a stream's headers are sent (an error now goes inside the stream)."""
        return self._streaming

    def start_stream(self, content_type: str) -> None:
        """Send a 200 with chunked transfer encoding; then :meth:`write` each part."""
        if self._streaming:
            return
        h = self._handler
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Cache-Control", "no-cache")
        h.end_headers()
        self._streaming = True

    def write(self, data: bytes) -> None:
        """One chunk of the stream (sent at once)."""
        if data:
            self._handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self._handler.wfile.flush()

    def end_stream(self) -> None:
        self._handler.wfile.write(b"0\r\n\r\n")
        self._handler.wfile.flush()

    def error(self, status: int, message: str) -> None:
        """An error in the client's API format: a body, or inside a stream already begun."""
        api = openai_api if self.openai else ollama_api
        try:
            if self._streaming:
                self.write(api.stream_error(message))
                self.end_stream()
            else:
                self.send_json(status, api.error_body(status, message), _no_retry(status))
        except OSError:
            self._handler.close_connection = True

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        rfile = self._handler.rfile
        while True:
            line = rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                raise bad_request("the chunked request body is malformed") from None
            if size == 0:
                rfile.readline(1024)
                return b"".join(parts)
            total += size
            if total > _MAX_BODY:
                raise bad_request(f"the request body is over {_MAX_BODY} bytes", 413)
            parts.append(rfile.read(size))
            rfile.readline(1024)


def _no_retry(status: int) -> dict[str, str]:
    """The ``openai`` client retries 5xx and 429 unless told not to: the proxy has decided
    (a cassette miss, a server down) except when the upstream server is busy."""
    return {} if status in (429, 503) else {"x-should-retry": "false"}
