"""pytest-llm in five tests: copy this file next to your own code and adapt the prompts.

Run it with ``pytest examples`` from the repository root.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from pytest_llm import Harness, assert_contains, assert_matches, assert_schema


def test_plain_answer(llm: Harness) -> None:
    result = llm.chat("What is the capital of France? Answer in one word.")
    assert_contains(result, "paris", case_sensitive=False)
    assert result.ttft_ms is not None and result.ttft_ms <= result.duration_ms


class City(BaseModel):
    name: str
    country: str
    population: int


def test_structured_output(llm: Harness) -> None:
    # The schema is sent as Ollama's structured-output format and validated on the way back;
    # an invalid answer is re-asked with the validation error (max_retries times).
    result = llm.chat("Describe the city of Lyon.", schema=City)
    city = assert_schema(result, City)
    assert city.country.lower() == "france"


@pytest.mark.llm(max_retries=3, escalate_to=["llama3.1:8b"])
def test_check_retries_then_escalates(llm: Harness) -> None:
    # `check` rejects an answer by returning False or raising; rejected answers are retried,
    # then the next model in `escalate_to` is tried. `result.route` shows which ones.
    result = llm.chat("Reply with the number 7 and nothing else.", check=lambda t: t.strip() == "7")
    assert_matches(result, r"^\s*7\s*$")


@pytest.mark.llm(temperature=0.0, max_tokens=64)
def test_many_prompts_at_once(llm: Harness) -> None:
    words = ["cat", "dog", "bird"]
    results = llm.map([f"Spell '{w}' backwards. Reply with the word only." for w in words])
    for word, result in zip(words, results, strict=True):
        assert_contains(result, word[::-1], case_sensitive=False)


def test_json_mode(llm: Harness) -> None:
    result = llm.chat(
        "Give a JSON object with keys 'a' and 'b' holding 1 and 2.",
        json_mode=True,
        check=lambda value: value == {"a": 1, "b": 2},
    )
    assert result.parsed == {"a": 1, "b": 2}
