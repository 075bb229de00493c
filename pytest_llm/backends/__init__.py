"""Backends: the one place that talks to a model server.

A backend turns a :class:`ChatRequest` into a :class:`~pytest_llm.result.Completion`
and converts its client library's exceptions into :mod:`pytest_llm.errors` at its
edge. The harness knows nothing else about it, so a new server kind is one new
module, listed in :mod:`pytest_llm.backends.registry` or added there by another package
through the entry-point group ``pytest_llm.backends``.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from ..errors import (
    BackendAuthError,
    BackendBusy,
    BackendError,
    BackendResponseError,
    ModelNotFound,
)
from ..result import Completion
from .deadline import Deadline as Deadline  # re-exported: what each backend reads within
from .deadline import timeout_message as timeout_message

if TYPE_CHECKING:
    from pathlib import Path

    from ..config import HarnessConfig
    from .pool import HostPool

__all__ = ["Backend", "BackendPool", "ChatRequest", "create_backend", "model_identity"]


@dataclass(frozen=True, kw_only=True)
class ChatRequest:
    """Everything a backend needs for one call (and everything that changes the answer)."""

    model: str
    messages: Sequence[Mapping[str, Any]]
    format: str | dict[str, Any] | None = None
    temperature: float = 0.0
    seed: int | None = None
    max_tokens: int | None = None
    keep_alive: str | float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    sample: int | None = None
    """Index of an independent sample (``Harness.sample``); part of the cassette key."""
    model_version: str | None = None
    """The version the user declares for ``model`` (``model_version``), part of its identity."""
    on_delta: Callable[[str], None] | None = field(default=None, compare=False, repr=False)
    """Called with each piece of the answer's text as it streams in (the proxy relays it to
    its client); not part of the request's identity. It must not raise."""


@runtime_checkable
class Backend(Protocol):
    """A model server. Implementations must be safe to call from several threads."""

    name: str
    host: str

    def chat(self, request: ChatRequest) -> Completion:
        """Stream one answer, measuring time to first token; raise ``BackendError`` subclasses."""
        ...

    def embed(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        """One embedding vector per text, in order."""
        ...

    def digest(self, model: str) -> str | None:
        """What identifies the served model (so a re-pulled tag is noticed), if known.

        A content digest where the server has one (Ollama); otherwise an identity put
        together from what the server says about the model. Called for every cassette
        lookup and result: implementations ask the server once and remember the answer,
        a failure included.
        """
        ...

    def close(self) -> None: ...


def model_identity(backend: Backend | None, model: str, declared: str | None = None) -> str | None:
    """The identity of ``model`` as served by ``backend``, with the user's declared version.

    ``None`` when neither the server (down, or it cannot tell; ``backend`` ``None``: known
    to be down) nor the user says anything.
    """
    try:
        digest = getattr(backend, "digest", None)  # None too when backend is None
        served = digest(model) if digest is not None else None
    except BackendError:  # the server is down: nothing to compare with
        served = None
    if declared is None:
        return served
    return f"{served} version={declared}" if served else f"version={declared}"


def authorization(url: str, key: str) -> dict[str, str]:
    """The ``Authorization`` header for the server at ``url``: every backend does the same.

    Credentials in the URL (``http://user:secret@host``) are sent as HTTP Basic auth and win
    over an API ``key`` (they were given for this one server); else a ``key`` is sent as a
    bearer token. The URL itself goes to the client without them (see ``public_host``).
    """
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
    return {"Authorization": f"Bearer {key}"} if key else {}


def key_advice(url: str, key_env: str, key_set: bool) -> str:
    """Where the credentials a server refused (401, 403) came from, and how to fix them."""
    if authorization(url, "") != {}:
        return (
            "the credentials in the host URL were sent (HTTP Basic auth, in place of "
            f"${key_env}): check them"
        )
    hint = f"${key_env}: check its value" if key_set else f"${key_env}, which is not set: set it"
    return f"the API key comes from {hint}, or name another variable with --llm-api-key-env"


def status_error(
    status: int | None,
    text: str,
    *,
    server: str,
    model: str,
    key_advice: str,
    model_missing: str | None,
) -> BackendError:
    """Our error for an error ``status`` (``None``: an error event mid-stream) of a server.

    ``server`` names it in messages (``Ollama at http://h:11434``); ``key_advice`` says
    where the API key comes from (401, 403); ``model_missing`` is the whole message of a
    404 that means an unknown model (``None``: this 404 is about something else).
    """
    if status in (401, 403):
        return BackendAuthError(f"{server} refused the request ({status}): {text}; {key_advice}")
    if status == 404 and model_missing is not None:
        return ModelNotFound(model_missing)
    if status in (429, 503):
        return BackendBusy(f"{server} is busy ({status}): {text}", status_code=status)
    where = " mid-stream" if status is None else f" ({status})"
    error = BackendResponseError(
        f"{server} answered {model!r} with an error{where}: {text}", status_code=status
    )
    error.retryable = status is None or status >= 500
    return error


def create_backend(
    name: str, host: str, *, timeout_seconds: float, api_key_env: str | None = None
) -> Backend:
    """Instantiate backend ``name`` (imported lazily: ``ollama``/``httpx`` load on first use).

    ``api_key_env`` names the environment variable holding the API key; ``None`` lets
    the backend use its usual one (``OPENAI_API_KEY``, ``OLLAMA_API_KEY``).
    """
    from .registry import kind

    factory = kind(name).load()
    return factory(host=host, timeout_seconds=timeout_seconds, api_key_env=api_key_env)


class BackendPool:
    """One backend (so one HTTP client and its connections) per server, reused for a session,
    and the session's host pool when ``hosts`` are one (:mod:`pytest_llm.backends.pool`).

    ``hosts`` are the ``(url, slots)`` of ``--llm-host`` (``slots`` ``None``: not declared).
    Two or more hosts, or declared slots, make a pool: a test whose host is the pool's
    first one is served by all of them (see :meth:`for_config`). ``slot_dir`` and
    ``worker`` (``(index, count)``) are an xdist worker's share of the run's slots.
    """

    def __init__(
        self,
        hosts: Sequence[tuple[str, int | None]] = (),
        *,
        cooldown_seconds: float | None = None,
        slot_dir: Path | None = None,
        worker: tuple[int, int] | None = None,
    ) -> None:
        self._backends: dict[tuple[str, str, float, str | None], Backend] = {}
        self._lock = threading.Lock()
        self.hosts: HostPool | None = None
        """The host pool, if ``hosts`` make one."""
        if len(hosts) > 1 or any(slots is not None for _, slots in hosts):
            from .pool import DEFAULT_COOLDOWN_SECONDS, HostPool

            self.hosts = HostPool(
                [(url, 1 if slots is None else slots) for url, slots in hosts],
                cooldown_seconds=cooldown_seconds or DEFAULT_COOLDOWN_SECONDS,
                slot_dir=slot_dir,
                worker=worker,
            )
        self._slot_dir: Path | None = None

    def get(
        self, name: str, host: str, *, timeout_seconds: float, api_key_env: str | None = None
    ) -> Backend:
        key = (name, host, timeout_seconds, api_key_env)
        backend = self._backends.get(key)
        if backend is None:
            with self._lock:
                backend = self._backends.get(key)
                if backend is None:
                    backend = create_backend(
                        name, host, timeout_seconds=timeout_seconds, api_key_env=api_key_env
                    )
                    self._backends[key] = backend
        return backend

    def backends(self) -> list[Backend]:
        """The backends created so far (the servers this process talked to)."""
        with self._lock:
            return list(self._backends.values())

    def for_config(self, config: HarnessConfig, *, test: str | None = None) -> Backend:
        """The backend serving ``config``'s backend kind, host, timeout and key variable.

        When ``config.host`` names the host pool (its first host: a marker's ``host=``
        names another server), a :class:`~pytest_llm.backends.pool.PooledBackend` over the
        pool for ``test`` (the node id its moves and hosts are reported under)."""
        if self.hosts is not None and config.host == self.hosts.name:
            from .pool import PooledBackend

            def backend_for(url: str) -> Backend:
                return self.get(
                    config.backend,
                    url,
                    timeout_seconds=config.timeout_seconds,
                    api_key_env=config.api_key_env,
                )

            return PooledBackend(
                self.hosts,
                backend_for,
                name=config.backend,
                timeout_seconds=config.timeout_seconds,
                test=test,
            )
        return self.get(
            config.backend,
            config.host,
            timeout_seconds=config.timeout_seconds,
            api_key_env=config.api_key_env,
        )

    def slot_dir(self) -> Path | None:
        """The directory of the run's slot lock files, made on first use (the xdist
        controller's, handed to its workers); ``None`` without a host pool."""
        if self.hosts is None:
            return None
        with self._lock:
            if self._slot_dir is None:
                from .pool import make_slot_dir

                self._slot_dir = make_slot_dir()
            return self._slot_dir

    def digests(
        self, live: Mapping[str, Sequence[str]], *, skip: Sequence[str] = ()
    ) -> dict[str, dict[str, str]]:
        """``{model: {host: digest}}`` for the models that answered live (``live``: host,
        as ``public_host`` shows it, to its models), asked of the servers this pool talked
        to. Hosts in ``skip`` (down) are not asked; a server that fails to answer is left
        out, as are models it tells no digest of (OpenAI-compatible servers)."""
        from ..config import public_host
        from ..errors import LLMError

        found: dict[str, dict[str, str]] = {}
        for backend in self.backends():
            host = public_host(backend.host)
            if host in skip:
                continue
            for model in sorted(live.get(host, ())):
                try:
                    digest = backend.digest(model)
                except LLMError:
                    break  # the server went away since: no digests from it
                if digest:
                    found.setdefault(model, {})[host] = digest
        return found

    def close(self) -> None:
        with self._lock:
            backends, self._backends = list(self._backends.values()), {}
            slot_dir, self._slot_dir = self._slot_dir, None
        for backend in backends:
            backend.close()
        if self.hosts is not None:
            self.hosts.close()
        if slot_dir is not None:
            from .pool import remove_slot_dir

            remove_slot_dir(slot_dir)
