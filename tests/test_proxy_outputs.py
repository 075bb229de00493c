"""The assertions and scorers take an application's final output as it is: plain text, or
an object (JSON data, a pydantic model, a dataclass), with or without ``llm``."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pydantic import BaseModel

from pytest_llm import (
    QualityFailure,
    ScoreTooLow,
    assert_contains,
    assert_matches,
    assert_schema,
    assert_score,
    assert_similar,
)
from pytest_llm.scorers import lexical_similarity
from pytest_llm.testing import FakeOllama

SCHEMA = {
    "type": "object",
    "properties": {"category": {"enum": ["billing", "bug"]}, "urgent": {"type": "boolean"}},
    "required": ["category", "urgent"],
}


class Ticket(BaseModel):
    category: str
    urgent: bool


@dataclass
class TicketData:
    category: str
    urgent: bool


@pytest.mark.parametrize(
    "output",
    [
        '{"category": "billing", "urgent": true}',
        {"category": "billing", "urgent": True},
        Ticket(category="billing", urgent=True),
        TicketData(category="billing", urgent=True),
    ],
    ids=["text", "dict", "pydantic", "dataclass"],
)
def test_assert_schema_takes_the_application_s_output(output: object) -> None:
    assert assert_schema(output, SCHEMA) == {"category": "billing", "urgent": True}
    assert assert_schema(output, Ticket) == Ticket(category="billing", urgent=True)
    with pytest.raises(QualityFailure, match=r"category: 'refund' is not one of"):
        assert_schema(
            output.replace("billing", "refund")  # type: ignore[attr-defined]
            if isinstance(output, str)
            else {"category": "refund", "urgent": True},
            SCHEMA,
        )


def test_a_pydantic_output_that_breaks_a_json_schema_names_the_field() -> None:
    with pytest.raises(QualityFailure, match=r"category: 'refund' is not one of"):
        assert_schema(Ticket(category="refund", urgent=False), SCHEMA)


def test_text_assertions_and_scorers_on_plain_text() -> None:
    text = "We refunded the double charge on your card."
    assert_contains(text, "refunded", "charge")
    assert assert_matches(text, r"double (\w+)").group(1) == "charge"
    assert assert_similar(text, "We refunded the double charge.", min=0.5).value > 0.5
    assert assert_score(text, lexical_similarity("refunded double charge"), min=0.3).passed
    with pytest.raises(ScoreTooLow, match="output: 'We refunded"):
        assert_score(text, lexical_similarity("the weather in Lyon"), min=0.9)


JUDGED_APP = """
import openai
from pytest_llm import assert_score
from pytest_llm.scorers import judge

@pytest.mark.llm(judge_model="judge")
def test_app(llm, llm_proxy):
    with openai.OpenAI(timeout=10, max_retries=0) as client:
        answer = client.chat.completions.create(
            model="llama3.2", messages=[{"role": "user", "content": "Reply to a refund request."}]
        ).choices[0].message.content
    score = assert_score(answer, judge("a polite reply that promises a refund"), min=0.8)
    assert score.value == 0.9 and llm_proxy.calls.last.output == answer
"""


def test_the_judge_scores_an_application_s_answer(pytester: pytest.Pytester) -> None:
    replies = {"llama3.2": "We will refund you today.", "judge": '{"reasoning": "ok", "score": 9}'}
    pytester.makepyfile(test_app="import pytest\n" + JUDGED_APP)
    with FakeOllama(replies) as fake:
        result = pytester.runpytest(f"--llm-host={fake.url}", "-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)
        judged = [r for r in fake.requests if r.path == "/api/chat" and r.model == "judge"]
    assert "We will refund you today." in judged[0].messages[-1]["content"]
