"""Hostile input and malformed answers (issue 10, items 3-5), run for real against FakeOllama.

Every case runs a pytester session through both backends and asserts the outcome, the
first line of the message, the number of requests the server saw and a wall-time bound.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pytest_llm.testing import FakeOllama, Reply


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


# --- the fault: a raw stream line -------------------------------------------------------------


def test_a_raw_line_goes_out_verbatim_in_both_wire_formats(fake: FakeOllama) -> None:
    import httpx

    fake.script(Reply(content="a b", raw_line="[1, 2]", raw_after=1))
    question = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=fake.url, timeout=5) as client:
        ndjson = client.post("/api/chat", json=question).text.splitlines()
        sse = client.post("/v1/chat/completions", json={**question, "stream": True}).text
    assert ndjson[1] == "[1, 2]" and json.loads(ndjson[0])["message"]["content"] == "a"
    assert json.loads(ndjson[-1])["done"] is True  # the stream goes on as scripted
    events = [e for e in sse.split("\n\n") if e]
    assert events[1] == "data: [1, 2]" and events[-1] == "data: [DONE]"
    fake.script(Reply(content="a b", raw_line="[DONE]", raw_after=9))  # past the end: last
    with httpx.Client(base_url=fake.url, timeout=5) as client:
        sse = client.post("/v1/chat/completions", json={**question, "stream": True}).text
    assert [e for e in sse.split("\n\n") if e][2] == "data: [DONE]"  # after the 2 chunks
    with pytest.raises(ValueError, match="raw_after must be >= 0"):
        Reply(raw_line="x", raw_after=-1)
