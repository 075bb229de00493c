"""Test helpers for code that talks to language-model servers (stdlib only at import)."""

from pytest_llm.testing._fake_ollama import FakeOllama, RecordedRequest, Reply

__all__ = ["FakeOllama", "RecordedRequest", "Reply"]
