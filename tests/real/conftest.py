"""The real-model suite: run only by ``scripts/real-model.sh`` (``tests/conftest.py`` keeps it
out of a plain ``pytest``), against a llama.cpp server with SmolLM2-135M-Instruct, through the
OpenAI-compatible backend. It checks what holds for any honest model, never exact wording.

The lane runs it twice: live in record mode ``once`` (cassettes are written), then with the
server stopped in mode ``none`` without the tests marked ``live``; each test ``keep``s its
answers in the JUnit XML report so that the lane can check the replay gave the same answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from pytest_llm import LLMResult


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "live: needs the live server (not replayed from cassettes)")


def answer(result: LLMResult) -> dict[str, Any]:
    """What a replay must reproduce exactly: the answers and how they were reached."""
    parsed = result.parsed
    return {
        "content": result.content,
        "parsed": parsed.model_dump() if isinstance(parsed, BaseModel) else parsed,
        "route": list(result.route),
        "retries": result.retries,
        "tokens": [result.tokens_in, result.tokens_out],
        "done_reason": result.metadata.get("done_reason"),
        "attempts": [[a.output, a.rejected, a.error] for a in result.attempts],
    }


@pytest.fixture
def keep(request: pytest.FixtureRequest) -> Callable[[LLMResult], LLMResult]:
    """``keep(result)``: put the answer in this test's report (``user_properties``)."""

    def add(result: LLMResult) -> LLMResult:
        record = json.dumps(answer(result), sort_keys=True)
        request.node.user_properties.append(("answer", record))
        return result

    return add
