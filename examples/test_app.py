"""Testing the application's own model calls: `app/triage.py` calls its model through the
`openai` client; `llm_proxy` stands between them, so these tests record, replay, measure
and report those calls as they do the harness's (see README, "Testing your application's
own model calls").

The answers come from SmolLM2-135M (recorded in cassettes/test_app/); the assertions are
about what the application did and the shape of what it made of the answers, which any
honest model passes.
"""

from __future__ import annotations

import pytest
from app import triage as app

from pytest_llm import HarnessConfig, LLMProxy, assert_schema


@pytest.fixture(autouse=True)
def local_model(llm_proxy: LLMProxy, llm_config: HarnessConfig) -> None:
    """The application asks for its production model; here the test's model answers."""
    llm_proxy.models[app.MODEL] = llm_config.model


def test_triage_returns_a_valid_ticket_class(llm_proxy: LLMProxy) -> None:
    result = app.triage("I was charged twice for my subscription this month. Please refund.")
    # the application's final output is an object: the assertions take it as it is
    assert_schema(result.model_dump(), app.Triage)
    call = llm_proxy.calls.last
    assert call.model == "gpt-4o-mini" and call.upstream_model != call.model
    assert call.parameters["response_format"]["type"] == "json_schema"
    assert call.ttft_ms is not None and call.tokens_out > 0  # measured upstream


def test_triage_sends_its_instructions(llm_proxy: LLMProxy) -> None:
    app.triage("The app crashes when I open settings.")
    llm_proxy.calls.assert_count(1)
    llm_proxy.calls.assert_system_prompt("triage customer support tickets", "JSON")
    llm_proxy.calls.assert_max_tokens(120)


def test_the_reply_draft_streams(llm_proxy: LLMProxy) -> None:
    pieces = list(app.reply_draft("My password reset email never arrived."))
    assert len(pieces) > 1  # the client got a stream, replayed or live
    assert "".join(pieces) == llm_proxy.output and llm_proxy.output.strip()
    assert llm_proxy.calls.last.stream
    llm_proxy.calls.assert_max_tokens(80)
