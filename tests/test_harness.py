from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
from pydantic import BaseModel

from pytest_llm import (
    BackendTimeout,
    Harness,
    HarnessConfig,
    LLMResult,
    ModelNotFound,
    OutputInvalid,
    Score,
    ScoreTooLow,
)
from pytest_llm.backends import ChatRequest
from pytest_llm.errors import BackendBusy
from pytest_llm.observer import TestObserver
from pytest_llm.result import Completion

from .conftest import InFlight, ScriptedBackend

FAST = HarnessConfig(model="small", retry_delay_seconds=0.0, max_retries=2)


class City(BaseModel):
    name: str
    population: int


VALID = '{"name": "Lyon", "population": 500000}'


def harness(backend: ScriptedBackend, config: HarnessConfig = FAST, **kw: object) -> Harness:
    return Harness(config, backend=backend, **kw)  # type: ignore[arg-type]


def test_success_first_time_parses_the_schema() -> None:
    backend = ScriptedBackend([VALID])
    result = harness(backend).chat("Name a city", schema=City)
    assert result.parsed == City(name="Lyon", population=500000)
    assert (result.success, result.retries, result.route) == (True, 0, ("small",))
    assert len(result.attempts) == 1 and result.attempts[0].ok
    assert backend.requests[0].format["title"] == "City"  # type: ignore[index]
    assert backend.requests[0].messages == ({"role": "user", "content": "Name a city"},)
    assert backend.requests[0].seed == 42 and backend.requests[0].temperature == 0.0


def test_invalid_then_valid_retries_with_the_error_in_the_conversation() -> None:
    backend = ScriptedBackend(["not json", VALID])
    result = harness(backend).chat("Name a city", schema=City, system="be terse")
    assert result.retries == 1
    assert [a.rejected for a in result.attempts] == ["validation", None]
    retry = backend.requests[1].messages
    assert retry[0] == {"role": "system", "content": "be terse"}
    assert retry[2] == {"role": "assistant", "content": "not json"}
    assert retry[3]["role"] == "user" and "not valid JSON" in retry[3]["content"]


def test_escalates_after_max_retries() -> None:
    backend = ScriptedBackend({"small": ["{}"], "big": [VALID]})
    result = harness(backend).chat("x", schema=City, escalate_to=["big"])
    assert result.route == ("small", "big")
    assert result.model == "big"
    assert result.retries == 3
    assert [a.model for a in result.attempts] == ["small"] * 3 + ["big"]
    # the escalation model starts from the original conversation
    assert len(backend.requests[3].messages) == 1


def test_always_invalid_fails_with_the_transcript() -> None:
    backend = ScriptedBackend(["nope"])
    with pytest.raises(OutputInvalid) as info:
        harness(backend).chat("Name a city", schema=City, max_retries=1)
    message = str(info.value)
    assert "the output of small was rejected in all 2 attempt(s)" in message
    assert "prompt: 'Name a city'" in message
    assert message.count("output: 'nope'") == 2
    assert isinstance(info.value, AssertionError)
    failed = info.value.result
    assert isinstance(failed, LLMResult) and not failed.success and failed.retries == 1


def test_check_callable_rejects_and_retries() -> None:
    backend = ScriptedBackend(["bonjour", "HELLO"])
    result = harness(backend).chat("greet", check=str.isupper)
    assert result.content == "HELLO" and result.retries == 1
    assert "check isupper returned False" in (result.attempts[0].error or "")


def test_truncated_output_says_so() -> None:
    class Truncating(ScriptedBackend):
        def chat(self, request: ChatRequest) -> Completion:
            return replace(super().chat(request), done_reason="length")

    with pytest.raises(OutputInvalid, match=r"max_tokens=5 \(done_reason='length'\)"):
        harness(Truncating(['{"name": "Ly'])).chat("x", schema=City, max_tokens=5, max_retries=0)


def test_transport_faults_are_retried_with_backoff() -> None:
    backend = ScriptedBackend([BackendBusy("busy", status_code=503), VALID])
    cfg = FAST.replace(retry_delay_seconds=0.05)
    start = time.perf_counter()
    result = harness(backend, cfg).chat("x", schema=City)
    assert time.perf_counter() - start >= 0.025  # the jitter takes off at most half
    assert [a.rejected for a in result.attempts] == ["transport", None]


def test_timeouts_after_retries_raise_the_infrastructure_error() -> None:
    backend = ScriptedBackend([BackendTimeout("no answer within timeout_seconds=1")])
    with pytest.raises(BackendTimeout, match=r"gave up after 3 attempt\(s\)"):
        harness(backend).chat("x")
    assert len(backend.requests) == 3


def test_missing_model_is_not_retried() -> None:
    backend = ScriptedBackend([ModelNotFound("run `ollama pull small`")])
    with pytest.raises(ModelNotFound):
        harness(backend).chat("x")
    assert len(backend.requests) == 1


def test_low_score_retries_then_escalates() -> None:
    backend = ScriptedBackend({"small": ["meh"], "big": ["great answer"]})

    def quality(result: LLMResult) -> Score:
        return Score(value=0.9 if "great" in result.content else 0.2, name="q", reason="why")

    result = harness(backend).chat("x", scorer=quality, min_score=0.5, escalate_to=["big"])
    assert result.score == 0.9 and result.route == ("small", "big")
    assert [a.rejected for a in result.attempts] == ["score"] * 3 + [None]
    assert result.attempts[0].error == "q=0.200 (min 0.5): why"  # the user sees the score


def test_score_never_good_enough_fails() -> None:
    backend = ScriptedBackend(["meh"])
    with pytest.raises(ScoreTooLow, match="scored under min_score"):
        harness(backend).chat("x", scorer=lambda r: 0.1, min_score=0.5, max_retries=0)


def test_map_is_concurrent_bounded_and_ordered() -> None:
    in_flight = InFlight()

    def slow(request: ChatRequest) -> str:
        with in_flight:
            time.sleep(0.05)
        return str(request.messages[0]["content"]).upper()

    backend = ScriptedBackend([slow])
    results = harness(backend, FAST.replace(concurrency=3)).map([f"p{i}" for i in range(9)])
    assert [r.content for r in results] == [f"P{i}" for i in range(9)]
    assert in_flight.peak == 3


def test_the_observer_sees_successes_and_failures() -> None:
    observer = TestObserver()
    backend = ScriptedBackend(["ok", "bad"])
    h = harness(backend, observer=observer)
    h.chat("x")
    with pytest.raises(OutputInvalid):
        h.chat("x", check=lambda t: t == "ok", max_retries=0)
    assert [r.success for r in observer.results] == [True, False]
    calls = dict(observer.properties())["llm"]  # what the test's report carries
    assert [c["success"] for c in json.loads(calls)] == [True, False]


def test_derived_harnesses_report_to_the_same_observer() -> None:
    observer = TestObserver()
    backend = ScriptedBackend(["ok"])
    h = harness(backend, observer=observer, config=FAST.replace(judge_model="judge"))
    h.chat("x")
    h.for_judge().chat("y")  # the judge's calls belong to the test too
    assert [r.model for r in observer.results] == ["small", "judge"]


def test_unknown_option_is_rejected() -> None:
    from pytest_llm import ConfigError

    with pytest.raises(ConfigError, match="unknown llm setting"):
        harness(ScriptedBackend(["x"])).chat("x", temprature=1)


def test_a_scorers_own_threshold_is_honoured_without_min_score() -> None:
    backend = ScriptedBackend(["meh", "good"])

    def strict(result: LLMResult) -> Score:
        return Score(value=1.0 if result.content == "good" else 0.2, threshold=0.5, name="s")

    result = harness(backend).chat("x", scorer=strict, check_feedback=True)
    assert result.content == "good"
    assert "under the required 0.5" in backend.requests[1].messages[-1]["content"]


def test_invalid_answers_then_a_transport_fault_still_escalate() -> None:
    busy = BackendBusy("busy", status_code=503)
    backend = ScriptedBackend({"small": ["bad", "bad", busy, "bad"], "big": ['{"x": 1}']})
    result = harness(backend).chat("x", json_mode=True, check=lambda v: v == {"x": 1},
                                   escalate_to=["big"])  # fmt: skip
    assert result.route == ("small", "big")
    assert [a.rejected for a in result.attempts] == [
        "validation", "validation", "transport", "validation", None
    ]  # fmt: skip


def test_transport_faults_in_a_row_give_up_with_the_right_count() -> None:
    busy = BackendBusy("busy", status_code=503)
    backend = ScriptedBackend(["bad", busy])
    with pytest.raises(BackendBusy, match=r"gave up after 3 attempt\(s\)"):
        harness(backend).chat("x", json_mode=True)
    assert len(backend.requests) == 4  # one answer, then three transport faults in a row


def test_map_and_sample_keep_the_active_harness_for_checks() -> None:
    from pytest_llm.scoring import activated, active_harness

    seen: list[object] = []

    def check(text: str) -> None:
        seen.append(active_harness())

    h = harness(ScriptedBackend(["ok"]), FAST.replace(concurrency=2))
    with activated(h):
        h.map(["a", "b", "c"], check=check)
        h.sample("a", 3, check=check, stop_early=False, temperature=0.5)
    assert seen == [h] * 6


def test_map_raises_an_infrastructure_error_before_a_quality_failure() -> None:
    def reply(request: ChatRequest) -> str:
        if request.messages[0]["content"] == "down":
            raise ModelNotFound("run `ollama pull small`")
        return "not json"

    with pytest.raises(ModelNotFound):
        harness(ScriptedBackend([reply])).map(["bad", "down"], json_mode=True, max_retries=0)


def test_sample_retries_transport_faults() -> None:
    backend = ScriptedBackend([BackendBusy("busy", status_code=503), "ok"])
    outcome = harness(backend).sample("x", 1)
    assert outcome.passed and [a.rejected for a in outcome.results[0].attempts] == [
        "transport", None
    ]  # fmt: skip


# --- re-asks: what the model is told --------------------------------------------------------


def sent(backend: ScriptedBackend) -> str:
    """Every message the backend received, as one text."""
    return "\n".join(str(m["content"]) for r in backend.requests for m in r.messages)


def mentions_paris(text: str) -> None:
    assert "paris" in text.lower(), "the answer must name Paris"


def test_a_content_check_re_asks_without_its_message() -> None:
    backend = ScriptedBackend(["Lyon", "Paris"])
    result = harness(backend).chat("Which city is the capital of France?", check=mentions_paris)
    assert "Paris" not in sent(backend) and "mentions_paris" not in sent(backend)
    reask = backend.requests[1].messages
    assert reask[1] == {"role": "assistant", "content": "Lyon"}
    assert reask[2]["role"] == "user" and "Answer the original request again" in reask[2]["content"]
    assert result.content == "Paris" and result.reasks == 1
    # the user still learns why the first answer was rejected
    assert "the answer must name Paris" in (result.attempts[0].error or "")


def test_a_low_score_re_asks_without_the_score_or_the_scorers_reason() -> None:
    backend = ScriptedBackend(["Paris is in France.", "Paris, on the Seine."])

    def seine(result: LLMResult) -> Score:
        found = "Seine" in result.content
        return Score(value=1.0 if found else 0.5, name="s", reason="missing 1 of 2: 'Seine'")

    result = harness(backend).chat("Where is Paris?", scorer=seine, min_score=0.8)
    assert "Seine" not in sent(backend).replace("Paris, on the Seine.", "")
    assert "0.5" not in sent(backend) and "0.8" not in sent(backend)
    assert result.score == 1.0 and result.reasks == 1
    assert "missing 1 of 2: 'Seine'" in (result.attempts[0].error or "")


def test_check_feedback_sends_the_checks_message_and_the_score_when_asked() -> None:
    backend = ScriptedBackend(["Lyon", "Paris"])
    harness(backend).chat("Capital of France?", check=mentions_paris, check_feedback=True)
    assert (
        "check mentions_paris rejected the output: the answer must name Paris"
        in (backend.requests[1].messages[-1]["content"])
    )
    backend = ScriptedBackend(["meh", "good"])

    def quality(result: LLMResult) -> Score:
        return Score(value=0.9 if result.content == "good" else 0.2, name="q", reason="too vague")

    config = FAST.replace(check_feedback=True, min_score=0.5)
    harness(backend, config).chat("x", scorer=quality)
    assert (
        "scored 0.20, under the required 0.5. too vague"
        in (backend.requests[1].messages[-1]["content"])
    )


def test_schema_and_json_errors_are_fed_back_by_default() -> None:
    backend = ScriptedBackend(['{"name": "Lyon"}', VALID])
    result = harness(backend).chat("Name a city", schema=City)
    assert "population: Field required" in backend.requests[1].messages[-1]["content"]
    assert result.reasks == 1


def test_check_feedback_must_be_a_bool() -> None:
    from pytest_llm import ConfigError

    with pytest.raises(ConfigError, match=r"check_feedback='yes' is invalid: expected True or"):
        FAST.replace(check_feedback="yes")


def test_a_bug_in_a_check_raises_at_once_without_a_re_ask() -> None:
    from pytest_llm import CheckError

    def triage_ok(triage: City) -> bool:
        return triage["population"] > 0  # type: ignore[index]  # the bug: a City, not a dict

    backend = ScriptedBackend([VALID])
    observer = TestObserver()
    with pytest.raises(CheckError, match="check triage_ok raised TypeError") as info:
        harness(backend, observer=observer).chat("x", schema=City, check=triage_ok)
    assert len(backend.requests) == 1
    assert isinstance(info.value.__cause__, TypeError)
    assert not isinstance(info.value, AssertionError)  # not a quality failure of the model
    assert observer.results == []  # no result: the call was never judged


def test_transport_retries_are_not_re_asks() -> None:
    backend = ScriptedBackend([BackendBusy("busy", status_code=503), "ok"])
    result = harness(backend).chat("x")
    assert (result.retries, result.reasks) == (1, 0)
    assert result.summary()["reasks"] == 0


def test_per_call_options_are_honoured_when_the_same_ones_come_again() -> None:
    """A harness builds the config of a set of per-call options once; a config reassigned
    by the user, or options of another type, still take effect."""
    backend = ScriptedBackend([VALID])
    h = harness(backend)
    h.chat("a", temperature=0.5)
    h.chat("b", temperature=0.5)
    h.chat("c", temperature=0.7)
    h.config = replace(h.config, seed=7)
    h.chat("d", temperature=0.5)
    assert [(r.temperature, r.seed) for r in backend.requests] == [
        (0.5, 42), (0.5, 42), (0.7, 42), (0.5, 7),
    ]  # fmt: skip
    h.chat("e", max_retries=1)
    with pytest.raises(ValueError, match="max_retries"):  # True == 1, but no number of retries
        h.chat("f", max_retries=True)
