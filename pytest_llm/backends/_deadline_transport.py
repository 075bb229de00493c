"""The HTTP layer of a :class:`~pytest_llm.backends.deadline.Deadline`, for both backends.

httpx's timeouts bound each network operation, and its read timeout starts again with
every byte: a server that drips one byte every 0.1 s, or sends a line that never ends,
is never timed out. :class:`DeadlineTransport` wraps the client's transport (the
``ollama`` client takes it as ``transport=``, like ``httpx.Client``) and, for every
request made while a deadline is active in the calling thread:

* sets each of its timeouts (connect, write, pool, and the read timeout the wait for the
  response headers uses) to what is left of the deadline, so a request cannot start
  after it and the wait for headers ends with it;
* makes every read of the connection interruptible: the sockets of the transports it
  makes come from :class:`_DeadlineBackend`, whose every blocking read registers a stop
  that shuts the socket down when the deadline passes (or the call is interrupted), so a
  read blocked on a silent or dripping server returns at once, while waiting for the
  response headers as much as for the body;
* reads the response body through :class:`_DeadlineStream`, which checks the deadline at
  every chunk and ends an answer its deadline cut as ``httpx.ReadTimeout``;
* keeps a 429/503's ``Retry-After`` (seconds or an HTTP date) on the deadline, for the
  harness's next pause.

Requests made outside a deadline pass through untouched. A client given a transport no
longer reads proxies from the environment itself: :meth:`DeadlineTransport.for_url` does,
for the one server a backend talks to (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``,
``NO_PROXY``, as ``urllib`` reads them).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import httpcore
import httpx

from .deadline import Deadline, current_deadline

__all__ = ["DeadlineTransport", "environment_proxy", "retry_after_seconds"]

_TIMEOUT_KEYS = ("connect", "read", "write", "pool")
_BUSY = (429, 503)


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """A ``Retry-After`` header as seconds from now: ``"2"``, ``"1.5"`` or an HTTP date
    (``"Wed, 21 Oct 2026 07:28:00 GMT"``, a date in the past is 0). ``None`` when absent
    or unreadable (the usual backoff applies then)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is GMT
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds == float("inf"):  # NaN or infinite: unreadable
        return None
    return max(seconds, 0.0)


class DeadlineTransport(httpx.BaseTransport):
    """``inner`` (default ``httpx.HTTPTransport()``), bounded by the calling thread's deadline."""

    def __init__(self, inner: httpx.BaseTransport | None = None) -> None:
        self._inner = _interruptible(inner if inner is not None else httpx.HTTPTransport())

    @classmethod
    def around(cls, transport: httpx.BaseTransport | None, url: str) -> DeadlineTransport:
        """``transport`` (a test's ``httpx.MockTransport``, say) under the deadline, or the
        network's for ``url`` when there is none: a backend is always bounded."""
        return cls(transport) if transport is not None else cls.for_url(url)

    @classmethod
    def for_url(cls, url: str) -> DeadlineTransport:
        """For a client of the server at ``url``, through the proxy the environment names
        for it, if any (what the client would have used without a transport of its own)."""
        return cls(httpx.HTTPTransport(proxy=environment_proxy(url)))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = current_deadline()
        if deadline is None:
            return self._inner.handle_request(request)
        left = deadline.remaining()
        if left <= 0:
            raise httpx.ReadTimeout("the answer's deadline has passed", request=request)
        timeouts = dict(request.extensions.get("timeout") or {})
        request.extensions["timeout"] = {
            key: left if timeouts.get(key) is None else min(float(timeouts[key]), left)
            for key in _TIMEOUT_KEYS
        }
        response = self._inner.handle_request(request)
        if response.status_code in _BUSY:
            deadline.retry_after = retry_after_seconds(response.headers.get("retry-after"))
        response.stream = _DeadlineStream(response, deadline, request)
        return response

    def close(self) -> None:
        self._inner.close()


def environment_proxy(url: str) -> str | None:
    """The proxy the environment sets for ``url`` (its scheme's, else ``ALL_PROXY``),
    ``None`` when there is none or ``NO_PROXY`` exempts its host."""
    parts = urlsplit(url)
    proxies = getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or (parts.hostname and proxy_bypass(parts.hostname)):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


class _DeadlineStream(httpx.SyncByteStream):
    """A response body read within a deadline (see the module docstring)."""

    def __init__(self, response: httpx.Response, deadline: Deadline, request: httpx.Request):
        stream = response.stream
        assert isinstance(stream, httpx.SyncByteStream)
        self._inner = stream
        self._deadline = deadline
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        deadline = self._deadline
        try:
            for chunk in self._inner:
                if deadline.expired:
                    raise self._timeout()
                yield chunk
        except httpx.TimeoutException:
            raise
        except Exception as exc:  # the socket was shut under the read: the deadline passed
            if deadline.expired:
                raise self._timeout() from exc
            raise
        if deadline.expired:  # a body cut short by the shut socket can look complete
            raise self._timeout()

    def close(self) -> None:
        self._inner.close()

    def _timeout(self) -> httpx.ReadTimeout:
        return httpx.ReadTimeout("the answer's deadline passed", request=self._request)


def _interruptible(transport: httpx.BaseTransport) -> httpx.BaseTransport:
    """``transport`` with its connections' sockets made by :class:`_DeadlineBackend`.

    httpx builds its httpcore pool without a way to pass a network backend, so this sets
    the pool's (httpcore's ``network_backend``, kept as ``_network_backend``). A transport
    without one (a test's ``httpx.MockTransport``) has no sockets to cut and is unchanged.
    """
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.NetworkBackend) and not isinstance(backend, _DeadlineBackend):
        pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]
    return transport


class _DeadlineBackend(httpcore.NetworkBackend):
    """``inner``'s connections, as :class:`_DeadlineSocket` streams."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _DeadlineSocket(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        return _DeadlineSocket(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineSocket(httpcore.NetworkStream):
    """A connection whose every read, while a deadline is active in the reading thread,
    is cut (it returns end-of-file) when that deadline passes or its call is interrupted."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner
        sock = inner.get_extra_info("socket")
        self._socket = sock if isinstance(sock, socket.socket) else None

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        deadline = current_deadline()
        sock = self._socket
        if deadline is None or sock is None:
            return self._inner.read(max_bytes, timeout)
        detach = deadline.on_expiry(lambda: _shut(sock))
        try:
            return self._inner.read(max_bytes, timeout)
        finally:
            detach()  # before the connection can serve another answer

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _DeadlineSocket(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _shut(sock: socket.socket) -> None:
    """Wake a read blocked on ``sock`` (it returns end-of-file); the connection is dropped."""
    with contextlib.suppress(OSError):  # already closed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, for TLS too
