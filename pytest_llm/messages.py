"""What a call sends: the prompt (or messages) as chat messages, checked before any request.

A prompt the server cannot answer (empty, an unknown role, content that is no text) is a
:class:`~pytest_llm.ConfigError` naming the field and the fix, raised before the first
call: never an error of the server, a retried transport fault or a library's traceback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .errors import ConfigError

__all__ = ["ROLES", "build_messages"]

#: The roles of a chat message that both Ollama and OpenAI-compatible servers know.
ROLES = ("system", "user", "assistant", "tool")
_EXAMPLE = "[{'role': 'user', 'content': 'Name a city'}]"


def build_messages(
    prompt: str | Sequence[Mapping[str, Any]], system: str | None, *, backend: str = "ollama"
) -> tuple[Mapping[str, Any], ...]:
    """``prompt`` (text, or a list of ``{"role", "content"}`` messages) after ``system``.

    Every message needs a known role and string content (on the ``openai`` backend, a list
    of content parts too), not blank except an assistant's. Other keys (``images``,
    ``tool_calls`` …) pass through untouched.
    """
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ConfigError(
                f"the prompt is empty ({prompt!r}): pass the text to send, e.g. "
                "llm.chat('Name a city')"
            )
        messages: list[Mapping[str, Any]] = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, Sequence) and not isinstance(prompt, bytes | bytearray):
        messages = [_message(i, m, backend) for i, m in enumerate(prompt)]
    else:
        raise ConfigError(
            f"the prompt must be a string or a list of messages, not {type(prompt).__name__} "
            f"({_shown(prompt)}): e.g. llm.chat('Name a city') or llm.chat({_EXAMPLE})"
        )
    if system is not None:
        if not isinstance(system, str) or not system.strip():
            raise ConfigError(
                f"system={_shown(system)} is invalid: expected the system prompt as a "
                "non-empty string, or leave system out"
            )
        messages.insert(0, {"role": "system", "content": system})
    if not messages:
        raise ConfigError(
            f"the list of messages is empty: pass at least one, e.g. llm.chat({_EXAMPLE}), "
            "or the prompt as a string"
        )
    return tuple(messages)


def _message(index: int, message: object, backend: str) -> Mapping[str, Any]:
    where = f"messages[{index}]"
    if not isinstance(message, Mapping):
        raise ConfigError(
            f"{where} is {_a(message)} ({_shown(message)}): each message is a "
            f"dict with 'role' and 'content', e.g. {_EXAMPLE}"
        )
    missing = [key for key in ("role", "content") if key not in message]
    if missing:
        raise ConfigError(
            f"{where} has no {' and no '.join(map(repr, missing))} (its keys: "
            f"{sorted(map(str, message))}): each message needs both, e.g. {_EXAMPLE}"
        )
    role, content = message["role"], message["content"]
    if role not in ROLES:
        raise ConfigError(
            f"{where}['role']={_shown(role)} is not a chat role: use one of "
            f"{', '.join(map(repr, ROLES))}"
        )
    parts = backend == "openai" and isinstance(content, list) and bool(content)
    if not isinstance(content, str) and not parts:
        kinds = "a string (or, on the openai backend, a list of content parts)"
        raise ConfigError(
            f"{where}['content'] is {_a(content)} ({_shown(content)}): it must be "
            f"{kinds}; convert it, e.g. str(value) or json.dumps(value)"
        )
    if isinstance(content, str) and not content.strip() and role != "assistant":
        raise ConfigError(
            f"{where}['content'] is empty ({content!r}): a {role} message needs text to send"
        )
    return dict(message)


def _a(value: object) -> str:
    """``an int``, ``a list``: the type of ``value`` with its article."""
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _shown(value: object) -> str:
    """``repr(value)``, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
