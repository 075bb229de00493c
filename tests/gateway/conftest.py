"""The gateway suite: run only by ``scripts/gateway-lane.sh``, through a LiteLLM proxy that
routes ``gw-model`` (and ``gw-priced``) over two FakeOllama upstreams, with pytest-llm's
OpenAI backend pointed at the proxy. A plain ``pytest`` does not collect it (see
``collect_ignore`` below), so nothing here shows as skipped.

The lane runs it three times: live in record mode ``once`` (``GATEWAY_LANE_PHASE=live``),
then in mode ``none`` without the tests marked ``live``, once with a restarted proxy up
(``restarted``: the recorded identity is compared with the live one) and once with nothing
running (``replay``). Each test ``keep``s its answers in the JUnit XML report, so that the lane
can check that the replays gave the answers of the live run. What the upstreams counted is in
``$GATEWAY_LANE_WORK/upstreams.jsonl``, one line per chat request they answered.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from pytest_llm import LLMResult

#: scripts/gateway-lane.sh sets it; without it this directory's tests are not collected.
LANE_ENV = "PYTEST_LLM_GATEWAY_LANE"
collect_ignore = [] if os.environ.get(LANE_ENV) == "1" else ["test_gateway.py"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "live: needs the live gateway (not replayed)")


@dataclass(frozen=True)
class Lane:
    """What the lane script set up: the phase, the upstreams and what they counted."""

    phase: str
    work: Path
    urls: list[str]
    first_token_delay: float
    token_delay: float

    @property
    def live(self) -> bool:
        return self.phase == "live"

    def entries(self) -> list[dict[str, Any]]:
        log = self.work / "upstreams.jsonl"
        lines = log.read_text().splitlines() if log.exists() else []
        return [json.loads(line) for line in lines]

    def counted(self, prompt: str) -> dict[str, Any]:
        """The one request with ``prompt`` that an upstream answered (in the live run)."""
        found = [e for e in self.entries() if e["prompt"] == prompt]
        assert len(found) == 1, f"the upstreams answered {prompt!r} {len(found)} times, not once"
        return found[0]

    def listed(self, model: str) -> dict[str, Any]:
        """``model``'s entry in the proxy's first /v1/models answer."""
        rows = json.loads((self.work / "models-first.json").read_text())["data"]
        return next(row for row in rows if row["id"] == model)


@pytest.fixture(scope="session")
def lane() -> Lane:
    work = os.environ.get("GATEWAY_LANE_WORK")
    if not work or not (Path(work) / "upstreams.json").exists():
        raise pytest.UsageError(
            "tests/gateway/ runs through a LiteLLM proxy that scripts/gateway-lane.sh starts: "
            "run `bash scripts/gateway-lane.sh`"
        )
    state = json.loads((Path(work) / "upstreams.json").read_text())
    return Lane(
        phase=os.environ.get("GATEWAY_LANE_PHASE", "live"),
        work=Path(work),
        urls=state["urls"],
        first_token_delay=state["first_token_delay"],
        token_delay=state["token_delay"],
    )


def answer(result: LLMResult) -> dict[str, Any]:
    """What a replay must reproduce exactly: the answer, its timings, tokens and identity."""
    parsed = result.parsed
    return {
        "content": result.content,
        "parsed": parsed.model_dump() if isinstance(parsed, BaseModel) else parsed,
        "route": list(result.route),
        "tokens": [result.tokens_in, result.tokens_out],
        "ttft_ms": None if result.ttft_ms is None else round(result.ttft_ms, 3),
        "duration_ms": round(result.duration_ms, 3),
        "identity": result.metadata.get("model_identity"),
        "done_reason": result.metadata.get("done_reason"),
    }


@pytest.fixture
def keep(request: pytest.FixtureRequest, lane: Lane) -> Callable[[LLMResult], LLMResult]:
    """``keep(result)``: put the answer in this test's report (``user_properties``), after
    checking that it was live in the live run and replayed in the others."""

    def add(result: LLMResult) -> LLMResult:
        assert result.cached is not lane.live, f"{lane.phase} run, cached={result.cached}"
        record = json.dumps(answer(result), sort_keys=True)
        request.node.user_properties.append(("answer", record))
        return result

    return add
