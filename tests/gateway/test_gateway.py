"""pytest-llm's OpenAI backend through a LiteLLM proxy over two FakeOllama upstreams (see
conftest.py): timings, token counts, model identity and cassettes stay right."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from pydantic import BaseModel

from pytest_llm import BackendAuthError, Harness, HarnessConfig, LLMResult, assert_schema
from pytest_llm.backends.openai import OpenAIBackend

from .conftest import Lane

Keep = Callable[[LLMResult], LLMResult]

pytestmark = pytest.mark.llm(max_retries=0, retry_delay_seconds=0)

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]


class Place(BaseModel):
    city: str
    country: str


def test_ttft_is_the_first_token_not_the_whole_answer(llm: Harness, keep: Keep, lane: Lane) -> None:
    prompt = "Time the first word of this answer: kilo"
    result = keep(llm.chat(prompt))
    counted = lane.counted(prompt)
    assert result.content == counted["content"]
    assert result.ttft_ms is not None
    # the upstream waits first_token_delay before its first token: the gateway adds to it,
    # never takes from it
    assert lane.first_token_delay * 1000 <= result.ttft_ms < result.duration_ms
    # and streams: the other tokens come token_delay apart after the first one, so a gateway
    # that buffered the answer (TTFT = the whole answer, the rest a few ms) fails here; half
    # of it is asked for, as the gateway may take a moment of that time to pass a chunk on
    rest_ms = (counted["words"] - 1) * lane.token_delay * 1000
    assert result.duration_ms - result.ttft_ms >= 0.5 * rest_ms


def test_tokens_are_what_the_upstream_counted(llm: Harness, keep: Keep, lane: Lane) -> None:
    prompt = "Count the tokens of this prompt: lima"
    result = keep(llm.chat(prompt))
    counted = lane.counted(prompt)
    assert (result.tokens_in, result.tokens_out) == (counted["tokens_in"], counted["tokens_out"])
    assert result.metadata["usage_reported"] is True
    # the upstream counts characters: neither the streamed chunks (words) nor a tokenizer of
    # the gateway's give these numbers
    assert result.tokens_out == len(result.content) != counted["words"]
    assert result.tokens_in == len(prompt)


def test_map_over_the_pool_keeps_each_answers_counts(llm: Harness, keep: Keep, lane: Lane) -> None:
    prompts = [f"Spread request number {i}: {word}" for i, word in enumerate(WORDS)]
    results = llm.map(prompts)
    for prompt, result in zip(prompts, results, strict=True):
        keep(result)
        counted = lane.counted(prompt)
        assert result.content == counted["content"]
        assert (result.tokens_in, result.tokens_out) == (
            counted["tokens_in"],
            counted["tokens_out"],
        )
        assert result.ttft_ms is not None and result.ttft_ms >= lane.first_token_delay * 1000


def test_a_schema_answer_validates_through_the_gateway(llm: Harness, keep: Keep) -> None:
    result = keep(llm.chat("Name a French city as JSON.", schema=Place))
    assert assert_schema(result, Place) == Place(city="Lyon", country="France")
    assert result.success and result.route == ("gw-model",)


def test_one_identity_whichever_upstream_answered(llm: Harness, keep: Keep, lane: Lane) -> None:
    prompts = [f"Which server answers {word}?" for word in WORDS]
    results = [keep(r) for r in llm.map(prompts)]
    identities = {r.metadata["model_identity"] for r in results}
    assert len(identities) == 1, identities
    identity = identities.pop()
    # the gateway's own /v1/models entry: its model name, not an upstream's
    assert identity is not None and "id=gw-model" in identity
    assert lane.listed("gw-model")["id"] == "gw-model"
    # each was answered once, by one upstream or the other (the lane checks that both served)
    assert all(lane.counted(p)["upstream"] in (0, 1) for p in prompts)


def test_an_identity_leaves_out_the_gateways_cost_map(keep: Keep, lane: Lane, llm: Harness) -> None:
    # gw-priced routes to gpt-4o-mini, a model LiteLLM's cost map knows: LiteLLM adds the map's
    # figures to its /v1/models entry, and a newer map (the lane's restarted proxy) changes them
    row = lane.listed("gw-priced")
    assert {"max_input_tokens", "max_output_tokens", "mode"} <= set(row), row
    result = keep(llm.chat("Which limits does the cost map hold: mike", model="gw-priced"))
    identity = result.metadata["model_identity"]
    assert identity is not None and "id=gw-priced" in identity
    assert "max_input_tokens" not in identity and "mode=" not in identity


def test_the_gateways_key_stays_at_the_gateway(lane: Lane) -> None:
    # pytest-llm sends the proxy's master key; the proxy sends the upstreams their own key
    entries = lane.entries()
    assert entries and {e["authorization"] for e in entries} == {"Bearer unused"}
    assert all(os.environ["GATEWAY_LANE_KEY"] not in str(e) for e in entries)


@pytest.mark.live
def test_the_gateway_hides_which_weights_answered(llm_config: HarnessConfig, lane: Lane) -> None:
    # the second upstream serves another digest of llama3.2 (its tag was re-pulled): asked
    # directly, the two identities differ; through the gateway there is one, the gateway's, so
    # only a declared model_version can tell a change behind it
    direct = []
    for url in lane.urls:
        backend = OpenAIBackend(host=url, timeout_seconds=10)
        try:
            direct.append(backend.digest("llama3.2"))
        finally:
            backend.close()
    assert None not in direct and direct[0] != direct[1], direct
    with Harness(llm_config) as harness:
        via = harness.chat("Through the gateway: november").metadata["model_identity"]
    assert via is not None and via not in direct
    versioned = llm_config.replace(model_version="2026-12-01")
    with Harness(versioned) as harness:
        declared = harness.chat("Declared version: oscar").metadata["model_identity"]
    assert declared == f"{via} version=2026-12-01"


@pytest.mark.live
def test_a_missing_key_names_its_variable(llm_config: HarnessConfig) -> None:
    # the proxy requires its master key; this harness reads it from an unset variable
    config = llm_config.replace(api_key_env="PYTEST_LLM_GATEWAY_UNSET_KEY", max_retries=0)
    with Harness(config) as harness, pytest.raises(BackendAuthError) as info:
        harness.chat("hi")
    assert "$PYTEST_LLM_GATEWAY_UNSET_KEY, which is not set" in str(info.value)
