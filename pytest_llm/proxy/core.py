"""``LLMProxy``: one test's side of the proxy (what it calls upstream and what it saw).

The server (:mod:`pytest_llm.proxy.server`) is one per process; while a test runs, it
hands every request to that test's :class:`LLMProxy`. The API modules translate the
client's request into an :class:`Incoming` (the project's ``ChatRequest`` fields plus what
the client sent as it sent it); :meth:`LLMProxy.chat` calls the test's backend through its
cassette, exactly as the harness does, so record modes, cassette keys, model identity,
misses and measurement are the harness's own. Standard library only at import.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..backends import ChatRequest, model_identity
from ..errors import (
    BackendBusy,
    BackendTimeout,
    CassetteError,
    ConfigError,
    LLMError,
    ModelNotFound,
)
from .calls import ProxyCall, ProxyCalls

if TYPE_CHECKING:
    from ..backends import Backend
    from ..config import HarnessConfig
    from ..result import Completion, LLMResult

__all__ = ["ENV_VARIABLES", "Incoming", "LLMProxy"]

#: What the clients read to find their server: set (and restored) while a test runs.
ENV_VARIABLES = ("OLLAMA_HOST", "OLLAMA_API_BASE", "OPENAI_BASE_URL", "OPENAI_API_BASE")
#: Set only when unset: the ``openai`` client refuses to start without a key. The proxy never
#: reads it (upstream, the test's configured key is sent, as for harness calls).
PLACEHOLDER_KEY = "pytest-llm-proxy"


@dataclass(frozen=True, kw_only=True)
class Incoming:
    """A chat the client asked for, in the project's terms (see ``ChatRequest``).

    ``temperature`` and ``seed`` are ``None`` when the client sent none (the test's
    configuration then gives them: deterministic by default, as harness calls).
    ``parameters`` is everything the client sent beside the model and the messages, as it
    sent it (``ProxyCall.parameters``).
    """

    api: str
    endpoint: str
    model: str
    messages: tuple[Mapping[str, Any], ...]
    stream: bool = False
    format: str | dict[str, Any] | None = None
    temperature: float | None = None
    seed: int | None = None
    max_tokens: int | None = None
    keep_alive: str | float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    parameters: Mapping[str, Any] = field(default_factory=dict)


class LLMProxy:
    """The ``llm_proxy`` fixture: a loopback server that the application's own model calls
    reach, through any client, while the test runs.

    ``url`` is the server's root (``OLLAMA_HOST``), ``openai_base_url`` its OpenAI base URL
    (``OPENAI_BASE_URL``); ``calls`` lists what the application sent and received
    (:class:`~pytest_llm.proxy.ProxyCalls`); ``output`` is the last answer's text.
    ``models`` maps the names the application asks for to the model that answers
    (``{"gpt-4o-mini": "llama3.2"}``; the key ``"*"`` maps every other name); without an
    entry the application's name goes upstream unchanged.
    """

    def __init__(
        self,
        *,
        url: str,
        backend: Backend,
        config: HarnessConfig,
        test: str = "",
        on_result: Callable[[LLMResult], None] | None = None,
    ) -> None:
        self.url = url
        self.test = test
        self.config = config
        self.calls = ProxyCalls()
        self.models: dict[str, str] = {}
        self._backend = backend
        self._on_result = on_result
        self._lock = threading.Lock()
        self._fault: LLMError | None = None

    def __repr__(self) -> str:
        return f"<LLMProxy {self.url} calls={len(self.calls)}>"

    # --- what tests read ---------------------------------------------------------------

    @property
    def openai_base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the ``base_url`` of an OpenAI-compatible client."""
        return f"{self.url}/v1"

    @property
    def ollama_host(self) -> str:
        """``http://127.0.0.1:PORT``: the ``host`` of an ``ollama.Client``."""
        return self.url

    @property
    def env(self) -> dict[str, str]:
        """The variables that point the clients here (set while the test runs), e.g. for a
        subprocess started with its own environment."""
        ollama, openai = self.ollama_host, self.openai_base_url
        # the official clients read the first of each pair; LiteLLM (and older clients) the second
        return dict(zip(ENV_VARIABLES, (ollama, ollama, openai, openai), strict=True))

    @property
    def output(self) -> str:
        """The text of the last answer."""
        return self.calls.last.output

    @property
    def fault(self) -> LLMError | None:
        """The first infrastructure error of the test's calls (a cassette miss, a server
        down): the plugin makes the test an error with it, whatever the application did."""
        return self._fault

    def upstream_model(self, model: str) -> str:
        """The model that answers when the application asks for ``model``."""
        return self.models.get(model, self.models.get("*", model))

    @contextmanager
    def environment(self) -> Iterator[None]:
        """Point the clients' variables at the proxy; restore them after."""
        saved = {name: os.environ.get(name) for name in (*ENV_VARIABLES, "OPENAI_API_KEY")}
        os.environ.update(self.env)
        if not os.environ.get("OPENAI_API_KEY"):
            os.environ["OPENAI_API_KEY"] = PLACEHOLDER_KEY
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    # --- what the API modules call -----------------------------------------------------

    def chat(self, incoming: Incoming, on_delta: Callable[[str], None] | None = None) -> Completion:
        """The answer to ``incoming`` from the test's backend, through its cassette.

        ``on_delta`` gets each piece of text as the upstream server streams it (a replayed
        answer streams nothing: the caller sends it whole). An infrastructure error is
        remembered as the test's :attr:`fault` and raised.
        """
        upstream = self.upstream_model(incoming.model)
        c = self.config
        request = ChatRequest(
            model=upstream,
            messages=incoming.messages,
            format=incoming.format,
            temperature=c.temperature if incoming.temperature is None else incoming.temperature,
            seed=c.seed if incoming.seed is None else incoming.seed,
            max_tokens=incoming.max_tokens,
            keep_alive=incoming.keep_alive if incoming.keep_alive is not None else c.keep_alive,
            options=incoming.options,
            model_version=c.model_version,
            on_delta=on_delta,
        )
        base = ProxyCall(
            api=incoming.api,
            endpoint=incoming.endpoint,
            model=incoming.model,
            upstream_model=upstream,
            messages=incoming.messages,
            parameters=dict(incoming.parameters),
            stream=incoming.stream,
        )
        try:
            completion = self._backend.chat(request)
        except LLMError as exc:
            self._failed(exc, replace(base, error=str(exc), status=status_of(exc)))
            raise
        identity = completion.metadata.get("model_identity")
        if "model_identity" not in completion.metadata:  # live: ask the server (once)
            identity = model_identity(self._backend, upstream, c.model_version)
        call = replace(
            base,
            output=completion.content,
            tokens_in=completion.tokens_in,
            tokens_out=completion.tokens_out,
            duration_ms=completion.duration_ms,
            ttft_ms=completion.ttft_ms,
            load_ms=completion.load_ms,
            done_reason=completion.done_reason,
            cached=completion.cached,
            model_identity=identity,
            tool_calls=tuple(completion.metadata.get("tool_calls") or ()),
        )
        self._ended(call, completion)
        return completion

    def embed(self, api: str, model: str, texts: Sequence[str]) -> list[list[float]]:
        """Embeddings of ``texts`` from the test's backend, through its cassette."""
        upstream = self.upstream_model(model)
        base = ProxyCall(
            api=api, endpoint="embed", model=model, upstream_model=upstream, inputs=tuple(texts)
        )
        try:
            vectors = self._backend.embed(upstream, texts)
        except LLMError as exc:
            self._failed(exc, replace(base, error=str(exc), status=status_of(exc)))
            raise
        with self._lock:
            self.calls.append(base)
        return vectors

    def known_models(self) -> list[str]:
        """The names ``/api/tags`` and ``/v1/models`` list: the test's model, the names in
        :attr:`models` and those the application asked for so far."""
        names = [self.config.model, *self.config.escalate_to, *self.models, *self.calls.models]
        return list(dict.fromkeys(n for n in names if n != "*"))

    def identity(self, model: str) -> str | None:
        """What identifies ``model`` upstream (``None``: the server is down or cannot tell)."""
        return model_identity(self._backend, self.upstream_model(model), self.config.model_version)

    # --- internals ---------------------------------------------------------------------

    def _failed(self, exc: LLMError, call: ProxyCall) -> None:
        with self._lock:
            self.calls.append(call)
            if self._fault is None:
                self._fault = exc

    def _ended(self, call: ProxyCall, completion: Completion) -> None:
        with self._lock:
            self.calls.append(call)
        if self._on_result is not None:
            self._on_result(_result(call, completion))


def status_of(exc: LLMError) -> int:
    """The HTTP status the client gets for one of our errors."""
    if isinstance(exc, CassetteError | ModelNotFound):
        return 404
    if isinstance(exc, BackendBusy):
        return exc.status_code or 503
    if isinstance(exc, BackendTimeout):
        return 504
    if isinstance(exc, ConfigError):
        return 500
    return 502  # the upstream server failed: unreachable, refused our key, an error answer


def _result(call: ProxyCall, completion: Completion) -> LLMResult:
    """The call as a harness result, so it takes the harness calls' road to the reports."""
    from ..harness import _attempt
    from ..result import LLMResult

    attempt = replace(_attempt(completion), model=call.upstream_model)
    metadata = {
        **completion.metadata,
        "model_identity": call.model_identity,
        "proxy": {"api": call.api, "endpoint": call.endpoint, "client_model": call.model},
    }
    return LLMResult(
        content=completion.content,
        model=call.upstream_model,
        tokens_in=attempt.tokens_in or 0,
        tokens_out=completion.tokens_out,
        duration_ms=completion.duration_ms,
        ttft_ms=completion.ttft_ms,
        metadata=metadata,
        attempts=(attempt,),
        route=(call.upstream_model,),
        load_ms=completion.load_ms,
        cached=completion.cached,
        messages=call.messages,
    )
