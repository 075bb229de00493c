from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from pytest_llm import (
    LLMResult,
    QualityFailure,
    assert_contains,
    assert_json,
    assert_matches,
    assert_schema,
)


class Item(BaseModel):
    name: str
    price: float


class Basket(BaseModel):
    items: list[Item]


def result(content: str, parsed: object = None) -> LLMResult:
    return LLMResult(content=content, model="tiny:1b", parsed=parsed)


def test_assert_json() -> None:
    assert assert_json(result('{"a": [1]}')) == {"a": [1]}
    with pytest.raises(QualityFailure, match=r"expected JSON \(from model tiny:1b\)"):
        assert_json(result("nope"))


def test_quality_failures_are_assertion_errors() -> None:
    with pytest.raises(AssertionError):
        assert_json("nope")


def test_assert_schema_lists_failing_paths() -> None:
    bad = '{"items": [{"name": "a", "price": 1}, {"name": "b", "price": 2}, {"name": "c"}]}'
    with pytest.raises(QualityFailure) as info:
        assert_schema(result(bad), Basket)
    message = str(info.value)
    assert "expected output matching Basket (from model tiny:1b)" in message
    assert "items[2].price: Field required" in message
    assert "got: " in message


def test_assert_schema_accepts_parsed_models_text_and_values() -> None:
    basket = Basket(items=[Item(name="a", price=1)])
    assert assert_schema(result("ignored", parsed=basket), Basket) == basket
    schema = {"type": "object", "required": ["x"]}
    assert assert_schema('{"x": 1}', schema) == {"x": 1}
    with pytest.raises(QualityFailure, match="<root>: 'x' is a required property"):
        assert_schema({"y": 1}, schema)


def test_assert_contains_all_and_case() -> None:
    assert_contains(result("Paris is the capital of France"), "Paris", "France")
    with pytest.raises(QualityFailure, match="missing 'france'"):
        assert_contains(result("Paris, France"), "Paris", "france")
    assert_contains(result("Paris, France"), "paris", "FRANCE", case_sensitive=False)
    with pytest.raises(TypeError):
        assert_contains("x")


def test_assert_matches_returns_the_match() -> None:
    match = assert_matches(result("total: 42 EUR"), r"(\d+) EUR")
    assert match.group(1) == "42"
    assert assert_matches("ABC", re.compile("abc", re.I)).group(0) == "ABC"
    with pytest.raises(QualityFailure, match=r"to match /\\d\+/; no match in: 'none'"):
        assert_matches(result("none"), r"\d+")
