"""How model output is shown in messages: quoted, and cut to a readable length."""

from __future__ import annotations


def shorten(text: str, limit: int) -> str:
    """``repr(text)``, or the repr of its first ``limit`` characters and the full length."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} chars)"
