"""What holds for any honest model, checked against a real one (see conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import BaseModel

from pytest_llm import (
    BackendAuthError,
    Harness,
    HarnessConfig,
    LLMResult,
    OutputInvalid,
    assert_schema,
)

Keep = Callable[[LLMResult], LLMResult]

pytestmark = pytest.mark.llm(max_tokens=96, max_retries=2, retry_delay_seconds=0)


class City(BaseModel):
    name: str
    country: str
    population: int


def test_a_schema_constrained_answer_validates(llm: Harness, keep: Keep) -> None:
    result = keep(llm.chat("Describe the city of Lyon, France, as JSON.", schema=City))
    city = assert_schema(result, City)
    assert result.parsed == city
    assert result.success and result.route == (llm.config.model,)


def test_a_check_the_model_fails_at_first_shows_retries(llm: Harness, keep: Keep) -> None:
    def has_the_code(text: str) -> bool:
        if "7391" not in text:
            raise ValueError("the answer must contain the code 7391")
        return True

    # the prompt does not mention the code, so no honest model passes the first time; the
    # re-asks say only "not accepted" (check_feedback is off), never the code: no answer can
    # have it, so every answer is rejected and the failure still shows every retry
    try:
        result = llm.chat("Write one short sentence about the sea.", check=has_the_code)
    except OutputInvalid as failure:
        result = failure.result
    keep(result)
    first = result.attempts[0]
    assert first.rejected == "validation" and "7391" in (first.error or "")  # told to the user
    assert result.retries >= 1 and len(result.attempts) == result.retries + 1
    assert all(a.output and a.tokens_out > 0 for a in result.attempts)
    assert not any("7391" in a.output for a in result.attempts) and not result.success


def test_timings_and_token_counts_are_positive_and_consistent(llm: Harness, keep: Keep) -> None:
    result = keep(llm.chat("Say hello in one short sentence.", max_tokens=24))
    assert result.duration_ms > 0
    assert result.ttft_ms is not None and 0 < result.ttft_ms <= result.duration_ms
    assert 0 < result.tokens_out <= 24
    # llama-cpp-python sends no usage chunk: then only the streamed chunks are counted
    assert result.tokens_in > 0 or result.metadata["usage_reported"] is False


def test_max_tokens_cuts_the_answer_and_says_so(llm: Harness, keep: Keep) -> None:
    result = keep(llm.chat("Tell a long story about a dragon.", max_tokens=5))
    assert result.metadata["done_reason"] == "length"
    assert 0 < result.tokens_out <= 5


@pytest.mark.live
def test_a_missing_key_names_its_variable(llm_config: HarnessConfig) -> None:
    # the lane's server requires an API key; this harness reads it from an unset variable
    config = llm_config.replace(api_key_env="PYTEST_LLM_LANE_UNSET_KEY", max_retries=0)
    with Harness(config) as harness, pytest.raises(BackendAuthError) as info:
        harness.chat("hi")
    assert "$PYTEST_LLM_LANE_UNSET_KEY, which is not set" in str(info.value)
