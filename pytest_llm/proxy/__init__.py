"""The recording model proxy: the application's own model calls, tested like harness calls.

``llm_proxy`` (the fixture) is an :class:`LLMProxy`: a loopback HTTP server speaking
Ollama's API and the OpenAI-compatible API, pointed to by ``OLLAMA_HOST`` and
``OPENAI_BASE_URL`` while the test runs. Each request is translated into the project's
``ChatRequest`` and answered by the test's backend through the test's cassette, so it is
recorded, replayed, measured and reported as a harness call is. The server itself
(:mod:`pytest_llm.proxy.server`) is imported when a test first asks for the fixture.
"""

from .calls import ProxyCall, ProxyCalls
from .core import LLMProxy

__all__ = ["LLMProxy", "ProxyCall", "ProxyCalls"]
