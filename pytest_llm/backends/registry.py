"""The one registry of backend kinds: what ``backend=`` may name and how each is made.

Each :class:`BackendKind` holds everything the rest of the plugin needs to know about a
server kind: its factory (imported on first use, so ``ollama``/``httpx`` load only when a
test calls a model), the variable its API key is read from by default, the port a bare
host name gets, and a line of help. The two built-in kinds are listed here; another
package adds one with an entry point in the group ``pytest_llm.backends``::

    [project.entry-points."pytest_llm.backends"]
    mykind = "my_package.backend:KIND"      # a BackendKind

A new server kind is then one module and one entry point, with no edit here: the config
check, the option help and :func:`~pytest_llm.backends.create_backend` all read this
registry. Entry points are read once, and only when a name is not built in.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from . import Backend

__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "BackendKind", "kind", "names"]

#: The entry-point group other packages register backend kinds under.
ENTRY_POINT_GROUP = "pytest_llm.backends"


@dataclass(frozen=True, kw_only=True)
class BackendKind:
    """A kind of model server.

    ``factory`` is a ``Backend`` class or callable, or ``"module:attribute"`` naming one
    (imported on first use); it is called as ``factory(host=..., timeout_seconds=...,
    api_key_env=...)``.
    """

    name: str
    factory: str | Callable[..., Backend]
    default_port: int
    api_key_env: str
    help: str

    def load(self) -> Callable[..., Backend]:
        """The factory, imported if it was given as ``"module:attribute"``."""
        if not isinstance(self.factory, str):
            return self.factory
        module, _, attribute = self.factory.partition(":")
        factory: Callable[..., Backend] = getattr(import_module(module), attribute)
        return factory


BUILTIN: Mapping[str, BackendKind] = {
    k.name: k
    for k in (
        BackendKind(
            name="ollama",
            factory="pytest_llm.backends.ollama:OllamaBackend",
            default_port=11434,
            api_key_env="OLLAMA_API_KEY",
            help="Ollama's own API (/api/chat), through the official ollama client",
        ),
        BackendKind(
            name="openai",
            factory="pytest_llm.backends.openai:OpenAIBackend",
            default_port=8000,
            api_key_env="OPENAI_API_KEY",
            help="any OpenAI-compatible server (/v1/chat/completions): vLLM, llama.cpp, "
            "LM Studio, Ollama's /v1",
        ),
    )
}


@functools.cache
def _registered() -> dict[str, BackendKind]:
    """The kinds other packages register (entry points), read once per process."""
    from importlib.metadata import entry_points

    found: dict[str, BackendKind] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            value: Any = point.load()
        except Exception as exc:  # a broken plugin package: say which, do not crash pytest
            raise ConfigError(
                f"the backend {point.name!r} registered by entry point {point.value!r} "
                f"(group {ENTRY_POINT_GROUP}) cannot be loaded: {type(exc).__name__}: {exc}"
            ) from None
        if not isinstance(value, BackendKind):
            raise ConfigError(
                f"entry point {point.value!r} (group {ENTRY_POINT_GROUP}) must name a "
                f"pytest_llm.backends.registry.BackendKind, not {type(value).__name__}"
            )
        found[value.name] = value
    return found


def kind(name: str) -> BackendKind:
    """The backend kind called ``name``; a ``ConfigError`` listing the known ones if none."""
    found = BUILTIN.get(name) or _registered().get(name)
    if found is None:
        raise ConfigError(
            f"llm setting backend={name!r} is invalid: expected one of {', '.join(names())} "
            f"(another package can add one under the entry point group {ENTRY_POINT_GROUP})"
        )
    return found


def names() -> list[str]:
    """Every known kind: the built-in ones first."""
    return [*BUILTIN, *(n for n in _registered() if n not in BUILTIN)]
