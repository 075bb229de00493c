"""Quality beyond well-formed: scores, pass rates over samples, and snapshots."""

from __future__ import annotations

import pytest

from pytest_llm import Harness, assert_score, assert_similar
from pytest_llm.scorers import contains_any, length_between


@pytest.mark.llm(min_score=1.0)
def test_scored_answer(llm: Harness) -> None:
    # A score under min_score is handled like invalid output: re-asked, then escalated.
    result = llm.chat(
        "What is the capital of Japan? Answer in one sentence.", scorer=contains_any("Tokyo")
    )
    assert result.score == 1.0
    assert_score(result, length_between(max_length=500), min=1.0)
    assert_similar(result, "The capital of Japan is Tokyo.", min=0.3)


@pytest.mark.llm(temperature=0.8, samples=5, min_pass_rate=0.6)
def test_pass_rate_over_samples(llm: Harness) -> None:
    # Five independent answers (seeds seed+0 … seed+4); the test needs 60% of them right.
    outcome = llm.sample(
        "What is the capital of France? Answer in one short sentence.",
        check=lambda text: "paris" in text.lower(),
    )
    print(outcome)  # e.g. 5/5 samples passed: pass rate 100% (95% CI 57%-100%) …
    assert outcome.passed


def test_answer_matches_its_snapshot(llm: Harness, llm_snapshot: object) -> None:
    # The expected answer lives in __snapshots__/; a close enough answer still passes.
    result = llm.chat("What is the capital of France? Answer in one short sentence.")
    assert result == llm_snapshot(mode="lexical", threshold=0.8)  # type: ignore[operator]
