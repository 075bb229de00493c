"""What every HTTP backend needs, shared: the ``httpx`` failures mapped to our errors, and
a parser of server-sent events.

A backend converts its client's exceptions into :mod:`pytest_llm.errors` at its edge;
the transport failures (a timeout, a refused connection, a broken stream) are the same
whatever the server kind, so they are mapped here once::

    except httpx.HTTPError as exc:
        raise transport_error(exc, host=self.host, model=model, timeout_seconds=...,
                              unreachable="nothing answers at ...: start the server") from exc

Imported by the backends only (``httpx`` is not loaded until a test calls a model).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import httpx

from ..errors import BackendError, BackendResponseError, BackendTimeout, BackendUnreachable
from .deadline import timeout_message

__all__ = ["sse_events", "transport_error"]


def transport_error(
    exc: BaseException,
    *,
    host: str,
    model: str,
    timeout_seconds: float,
    unreachable: str,
    server: str | None = None,
) -> BackendError:
    """Our error for a failure below the server's answer: a timeout (``BackendTimeout``),
    nothing listening (``BackendUnreachable`` with the ``unreachable`` advice), or any other
    break of the connection or stream (a retryable ``BackendResponseError``).

    ``server`` names the server in messages (default: ``host``)."""
    if isinstance(exc, httpx.TimeoutException):
        return BackendTimeout(timeout_message(model, host, timeout_seconds))
    if isinstance(exc, ConnectionError | httpx.ConnectError):
        return BackendUnreachable(unreachable)
    return BackendResponseError(
        f"the connection to {server or host} broke during the answer of {model!r}: "
        f"{type(exc).__name__}: {exc}"
    )


def sse_events(lines: Iterable[str]) -> Iterator[str]:
    """The ``data`` of each server-sent event (multi-line data joined; comments skipped)."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)
