"""pytest-llm in a few tests: copy this file next to your own code and adapt the prompts.

These run from recorded answers (see pytest.ini); the assertions are ones any honest model
passes, so they also hold when the examples run live and re-record.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from pytest_llm import Harness, LLMResult, assert_contains, assert_schema


def test_plain_answer(llm: Harness) -> None:
    result = llm.chat("What is the capital of France? Answer in one short sentence.")
    assert_contains(result, "paris", case_sensitive=False)
    # measured on every call: real time to first token, tokens, model time
    assert result.ttft_ms is not None and result.ttft_ms <= result.duration_ms
    assert result.tokens_out > 0


class City(BaseModel):
    name: str
    country: str
    population: int


def test_structured_output(llm: Harness) -> None:
    # The schema is sent to the server (structured output) and validated on the way back;
    # an invalid answer would be re-asked with the validation error (max_retries times).
    result = llm.chat("Describe the city of Lyon as JSON.", schema=City)
    city = assert_schema(result, City)
    assert isinstance(result.parsed, City) and city.population >= 0


BOOK: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "year": {"type": "integer"},
    },
    "required": ["title", "year"],
}


def test_json_schema_dict(llm: Harness) -> None:
    result = llm.chat("Name one famous novel as JSON with its title and year.", schema=BOOK)
    assert set(result.parsed) >= {"title", "year"}


def at_most_twelve_words(text: str) -> None:
    words = len(text.split())
    assert words <= 12, f"answer in at most 12 words, not {words}"


@pytest.mark.llm(max_retries=3, check_feedback=True)
def test_check_with_retries(llm: Harness) -> None:
    # `check` rejects an answer by raising AssertionError or ValueError (or returning False);
    # the model is asked again, up to max_retries times, then `escalate_to` models are tried.
    # By default a re-ask says only "not accepted": a check that knows the answer ("must name
    # Paris") would hand it to the model, which could then pass by repeating it. This check is
    # about form and its message gives nothing away, so check_feedback=True sends it.
    result = llm.chat("Which city is the capital of France?", check=at_most_twelve_words)
    assert result.success and len(result.content.split()) <= 12
    # 0 when the first answer passes (SmolLM2's does); a pass after re-asks is marked in the
    # llm summary: "passed after 1 re-ask"
    print(f"accepted after {result.reasks} re-asks; route {result.route}")


def test_many_prompts_at_once(llm: Harness) -> None:
    countries = {"France": "paris", "Italy": "rome", "Japan": "tokyo"}
    results = llm.map([f"What is the capital of {c}? Answer in one sentence." for c in countries])
    for capital, result in zip(countries.values(), results, strict=True):
        assert isinstance(result, LLMResult)
        assert_contains(result, capital, case_sensitive=False)
