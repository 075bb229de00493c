"""The awaitable harness (``achat``, ``amap``, ``asample``, ``aevaluate``): whole pytest
sessions with async tests under anyio's pytest plugin, against FakeOllama."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from pytest_llm.testing import FakeOllama, RecordedRequest

ASYNC_TESTS = """
import asyncio
import pytest
from pydantic import BaseModel
from pytest_llm import assert_schema

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


class City(BaseModel):
    name: str


@pytest.mark.llm(model="small", max_retries=1, retry_delay_seconds=0)
async def test_achat_validates_and_reasks(llm):
    result = await llm.achat("Name a city as JSON", schema=City)
    assert assert_schema(result, City).name == "Lyon"
    print("RETRIES", result.retries, "ROUTE", result.route)


@pytest.mark.llm(model="small")
async def test_the_event_loop_runs_while_a_call_waits(llm):
    ticks = 0

    async def tick():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    result = await llm.achat("slow")
    ticker.cancel()
    print("TICKS", ticks, "MS", round(result.duration_ms))
    if not result.cached:  # a replay does not wait
        assert ticks >= 3  # a blocked loop would not tick at all while the call waits


@pytest.mark.llm(model="small", concurrency=4)
async def test_amap_and_gather(llm):
    many = await llm.amap([f"q{i}" for i in range(4)])
    two = await asyncio.gather(llm.achat("a"), llm.achat("b"))
    assert len(many) == 4 and len(two) == 2


@pytest.mark.llm(model="small", temperature=0.5)
async def test_asample(llm):
    outcome = await llm.asample("x", 3, check=lambda text: "Lyon" in text)
    assert outcome.runs == 3


@pytest.mark.llm(model="small")
async def test_aevaluate(llm):
    cases = [{"id": "a", "q": "1"}, {"id": "b", "q": "2"}]
    outcome = await llm.aevaluate(cases, "{q}")
    assert len(outcome.cases) == 2
"""


@pytest.fixture
def starts() -> list[float]:
    """When the fake began each chat answer (``time.monotonic``)."""
    return []


@pytest.fixture
def fake(starts: list[float]) -> Iterator[FakeOllama]:
    replies = {"Name a city as JSON": ["not json", '{"name": "Lyon"}']}

    def answer(request: RecordedRequest) -> str:
        starts.append(time.monotonic())
        queue = replies.get(request.messages[-1]["content"])
        return queue.pop(0) if queue else '{"name": "Lyon"}'

    with FakeOllama(answer, models=["small"], first_token_delay=0.3, parallel=4) as server:
        yield server


def run(pytester: pytest.Pytester, fake: FakeOllama, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_async_app=ASYNC_TESTS)
    return pytester.runpytest(f"--llm-host={fake.url}", "-p", "no:cacheprovider", *args)


def test_async_tests_run_the_same_loop(pytester: pytest.Pytester, fake: FakeOllama) -> None:
    result = run(pytester, fake, "-s", "--llm-report=report.json")
    result.assert_outcomes(passed=5)
    # the re-ask after invalid JSON: the sync loop's, reached through achat
    result.stdout.fnmatch_lines(["*RETRIES 1 ROUTE ('small',)*"])
    chats = [r for r in fake.requests if r.path == "/api/chat"]
    assert len(chats) == 2 + 1 + 4 + 2 + 3 + 2
    # each test's calls are in the run report, as a sync test's are
    doc = json.loads((pytester.path / "report.json").read_text())
    calls = {t["nodeid"].split("::")[-1]: t["calls"] for t in doc["tests"]}
    assert calls == {
        "test_achat_validates_and_reasks": 1,
        "test_the_event_loop_runs_while_a_call_waits": 1,
        "test_amap_and_gather": 6,
        "test_asample": 3,
        "test_aevaluate": 2,
    }


def test_amap_runs_calls_at_once(
    pytester: pytest.Pytester, fake: FakeOllama, starts: list[float]
) -> None:
    """``amap`` keeps ``map``'s concurrency: four calls of 0.3 s each on a four-slot server
    overlap (the server saw them in flight together), rather than queueing one by one."""
    run(pytester, fake, "-k", "amap").assert_outcomes(passed=1)
    assert len(starts) == 6
    assert starts[3] - starts[0] < 0.3  # the four of amap all began before the first ended


def test_async_replays_from_cassettes(pytester: pytest.Pytester, fake: FakeOllama) -> None:
    run(pytester, fake, "--llm-record-mode=once").assert_outcomes(passed=5)
    served = len(fake.requests)
    fake.stop()  # a replay needs no server
    result = pytester.runpytest(
        f"--llm-host={fake.url}", "-p", "no:cacheprovider", "--llm-record-mode=none"
    )
    result.assert_outcomes(passed=5)
    assert len(fake.requests) == served
