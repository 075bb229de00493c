"""Backends as an extension seam: one registry, an entry-point group, a third kind end to end."""

from __future__ import annotations

import pytest

from pytest_llm import ConfigError, HarnessConfig
from pytest_llm.backends import create_backend
from pytest_llm.backends.registry import BUILTIN, kind, names

ECHO_BACKEND = """
from pytest_llm.backends.registry import BackendKind
from pytest_llm.result import Completion


class EchoBackend:
    name = "echo"

    def __init__(self, *, host, timeout_seconds, api_key_env=None):
        self.host = host

    def chat(self, request):
        text = "echo: " + request.messages[-1]["content"]
        return Completion(content=text, model=request.model, tokens_in=1, tokens_out=2)

    def embed(self, model, texts):
        return [[1.0] for _ in texts]

    def digest(self, model):
        return "echo-1"

    def close(self):
        pass


KIND = BackendKind(name="echo", factory=EchoBackend, default_port=9999,
                   api_key_env="ECHO_KEY", help="answers with the prompt")
"""

SUITE = """
def test_echo(llm, llm_config):
    assert llm_config.host == "http://localhost:9999"  # the kind's default port
    result = llm.chat("hello")
    assert result.content == "echo: hello" and result.metadata["model_identity"] == "echo-1"
"""


def test_a_package_adds_a_backend_with_an_entry_point_and_no_edit_here(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(echo_backend=ECHO_BACKEND, test_echo=SUITE)
    dist = pytester.mkdir("echo_backend-1.0.dist-info")
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-backend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pytest_llm.backends]\necho = echo_backend:KIND\n")
    pytester.syspathinsert()  # a subprocess session sees the package and its entry point
    result = pytester.runpytest_subprocess(
        "--llm-backend=echo", "--llm-host=localhost", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["llm: model=llama3.2 backend=echo host=http://localhost:9999 *"])
    wrong = pytester.runpytest_subprocess("--llm-backend=nope", "-p", "no:cacheprovider")
    assert wrong.ret == pytest.ExitCode.USAGE_ERROR
    wrong.stderr.fnmatch_lines(
        ["*backend='nope' is invalid: expected one of ollama, openai, echo (another package*"]
    )


def test_the_registry_holds_each_kinds_factory_port_key_and_help() -> None:
    assert list(BUILTIN) == ["ollama", "openai"] and names()[:2] == ["ollama", "openai"]
    assert (kind("ollama").default_port, kind("ollama").api_key_env) == (11434, "OLLAMA_API_KEY")
    assert (kind("openai").default_port, kind("openai").api_key_env) == (8000, "OPENAI_API_KEY")
    # a bare host gets its backend's port, whatever the order of the settings
    assert HarnessConfig(backend="openai", host="gpu1").host == "http://gpu1:8000"
    assert HarnessConfig(host="gpu1").host == "http://gpu1:11434"
    with pytest.raises(ConfigError, match=r"backend='vllm' is invalid: expected one of ollama"):
        HarnessConfig(backend="vllm")
    backend = create_backend("openai", "http://127.0.0.1:9/v1", timeout_seconds=1)
    try:
        assert type(backend).__name__ == "OpenAIBackend"
    finally:
        backend.close()
