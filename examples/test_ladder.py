"""The model ladder: which is the smallest model that passes each test?

Each test here runs once per model of its ladder, smallest first: SmolLM2-135M-Instruct
and Gemma 3 270M, both real and recorded (`scripts/real-model.sh --record-examples`).
Gemma 3 270M is twice the size but a *base* model, poor at chat: size alone does not
decide, which is what the ladder is for. A rung that fails is `rung-failed`; the run fails
only when a test passes on no model. The `llm ladder` section at the end of
`pytest examples` names the smallest passing model per test and for the suite.
"""

from __future__ import annotations

import pytest

from pytest_llm import Harness, assert_contains
from pytest_llm.scorers import contains_all

pytestmark = pytest.mark.llm(models=["smollm2:135m", "gemma3:270m"], max_retries=0)


def test_capital_on_each_model(llm: Harness) -> None:
    result = llm.chat("What is the capital of France? Answer in one short sentence.")
    assert_contains(result, "paris", case_sensitive=False)


def test_a_greeting_on_each_model(llm: Harness) -> None:
    result = llm.chat("Say hello to Ada in one short sentence.")
    assert_contains(result, "ada", case_sensitive=False)


@pytest.mark.llm(on_low_quality="flag", min_score=1.0)
def test_a_demanding_answer_is_flagged_not_failed(llm: Harness) -> None:
    # A score under min_score is a flag here: reported (FLAGGED, the llm_flagged property,
    # the ladder's cell) but it does not fail the run. Infrastructure errors are never flagged.
    llm.chat(
        "Name the river that flows through Paris and the sea it reaches, in one sentence.",
        scorer=contains_all("Seine", "English Channel"),
    )
