from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import BaseModel

from pytest_llm import CheckError, ConfigError
from pytest_llm.validation import (
    CheckRejected,
    Rejected,
    format_for,
    format_path,
    parse_json,
    validate,
)


class Item(BaseModel):
    name: str
    price: float


class Order(BaseModel):
    items: list[Item]


ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["items"],
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "price"],
                "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
            },
        }
    },
}


def test_format_for() -> None:
    assert format_for(None, False) is None
    assert format_for(None, True) == "json"
    assert format_for(Order, False)["title"] == "Order"  # type: ignore[index]
    assert format_for(ORDER_SCHEMA, True) == ORDER_SCHEMA
    with pytest.raises(ConfigError, match="pydantic model class or a JSON Schema dict"):
        format_for("not a schema", False)  # type: ignore[arg-type]


def test_format_path() -> None:
    assert format_path(("items", 2, "price")) == "items[2].price"
    assert format_path(()) == "<root>"
    assert format_path((0, "a")) == "[0].a"


def test_parse_json_tolerates_a_fence() -> None:
    assert parse_json('```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_json("Sure! ```\n[1, 2]\n``` hope it helps") == [1, 2]
    with pytest.raises(Rejected, match="not valid JSON"):
        parse_json("{'a': 1}")


def test_pydantic_schema_returns_a_model_and_names_the_path() -> None:
    parsed = validate('{"items": [{"name": "tea", "price": 2.5}]}', schema=Order)
    assert isinstance(parsed, Order)
    with pytest.raises(Rejected, match=r"items\[1\]\.price"):
        validate(
            '{"items": [{"name": "a", "price": 1}, {"name": "b", "price": "x"}]}', schema=Order
        )


def test_json_schema_draft_2020_12_names_the_path() -> None:
    assert validate('{"items": []}', schema=ORDER_SCHEMA) == {"items": []}
    with pytest.raises(Rejected, match=r"items\[0\]: 'price' is a required property"):
        validate('{"items": [{"name": "a"}]}', schema=ORDER_SCHEMA)


def test_invalid_json_schema_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"schema= is not a valid JSON Schema .*: at type:"):
        validate("{}", schema={"type": "no-such-type"})


def test_check_receives_parsed_value_or_text() -> None:
    seen: list[Any] = []
    validate('{"a": 1}', json_mode=True, check=seen.append)
    validate("plain", check=seen.append)
    assert seen == [{"a": 1}, "plain"]


def test_check_rejects_by_false_or_raising() -> None:
    def short(text: str) -> bool:
        return len(text) < 3

    with pytest.raises(Rejected, match="check short returned False"):
        validate("too long", check=short)

    def must_be_upper(text: str) -> None:
        assert text.isupper(), "expected upper case"

    with pytest.raises(Rejected, match="must_be_upper rejected the output: expected upper case"):
        validate("lower", check=must_be_upper)
    assert validate("OK", check=must_be_upper) is None


def test_a_rewritten_assertion_reaches_the_model_as_its_first_line() -> None:
    # pytest's assertion rewriting appends "where ... = <built-in method ... at 0x...>" lines;
    # they would make every retry prompt (and its cassette key) unique
    def mentions_paris(text: str) -> None:
        raise AssertionError("must name Paris\nassert 'paris' in 'x'\n +  where 'x' = <at 0x7f>")

    with pytest.raises(Rejected) as info:
        validate("Lyon", check=mentions_paris)
    assert str(info.value) == "check mentions_paris rejected the output: must name Paris"


def test_a_server_fault_inside_a_check_is_raised_not_a_rejection() -> None:
    from pytest_llm import BackendUnreachable

    def calls_a_model(text: str) -> None:
        raise BackendUnreachable("Ollama is not reachable at http://127.0.0.1:9")

    with pytest.raises(BackendUnreachable):
        validate("x", check=calls_a_model)


def test_json_null_reaches_the_check_as_none() -> None:
    seen: list[Any] = []
    validate("null", schema={"type": ["object", "null"]}, check=seen.append)
    assert seen == [None]


# --- what a check's outcome means ---------------------------------------------------------


class Triage(BaseModel):
    priority: str


def test_a_check_rejects_by_assertion_value_error_validation_error_or_false() -> None:
    def by_value_error(text: str) -> None:
        raise ValueError("too vague")

    def by_validation_error(text: str) -> None:
        Triage.model_validate({"priority": 3})  # a pydantic ValidationError: a ValueError

    for check in (by_value_error, by_validation_error, lambda text: False, str.isupper):
        with pytest.raises(CheckRejected):
            validate("lower", check=check)


def test_schema_and_json_rejections_are_format_feedback_not_check_rejections() -> None:
    for content, schema in (("not json", Triage), ('{"priority": 1}', Triage)):
        with pytest.raises(Rejected) as info:
            validate(content, schema=schema, check=lambda value: False)
        assert not isinstance(info.value, CheckRejected)


@pytest.mark.parametrize(
    ("check", "kind"),
    [
        (lambda triage: triage["priority"], "TypeError"),
        (lambda triage: triage.severity, "AttributeError"),
        (lambda triage: {}["priority"], "KeyError"),
    ],
)
def test_any_other_exception_in_a_check_is_a_bug_in_the_check(check: Any, kind: str) -> None:
    with pytest.raises(CheckError) as info:
        validate('{"priority": "high"}', schema=Triage, check=check)
    message = str(info.value)
    assert f"raised {kind}" in message and "a bug in the check" in message
    # it names what the check was given and what rejects an answer
    assert "received a Triage instance (schema=Triage, a pydantic model)" in message
    assert "AssertionError or ValueError" in message
    assert type(info.value.__cause__).__name__ == kind  # the check's own traceback


def test_what_a_check_receives_is_named_for_each_kind_of_call() -> None:
    def broken(value: Any) -> None:
        raise TypeError("boom")

    cases = [
        ('{"priority": "high"}', {"schema": Triage}, "a Triage instance (schema=Triage"),
        ('{"a": 1}', {"schema": {"type": "object"}}, "the parsed JSON (a dict"),
        ("[1]", {"json_mode": True}, "the parsed JSON (a list"),
        ("text", {}, "the text (a str"),
    ]
    for content, options, said in cases:
        with pytest.raises(CheckError, match=re.escape(said)):
            validate(content, check=broken, **options)
