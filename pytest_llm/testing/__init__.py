"""Test helpers for code that talks to language-model servers (stdlib only at import).

:class:`FakeOllama` is a real HTTP server speaking Ollama's and the OpenAI wire formats;
:class:`ScriptedBackend` is an in-memory backend for unit tests of code on the harness.
"""

from pytest_llm.testing._fake_ollama import FakeOllama, RecordedRequest, Reply
from pytest_llm.testing._scripted import ScriptedBackend

__all__ = ["FakeOllama", "RecordedRequest", "Reply", "ScriptedBackend"]
