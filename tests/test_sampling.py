"""Sampling: the Wilson interval, the early-stopping rule, and ``Harness.sample``."""

from __future__ import annotations

import random
import threading
import time

import pytest

from pytest_llm import (
    BackendUnreachable,
    ConfigError,
    Harness,
    HarnessConfig,
    LLMResult,
    LLMWarning,
    PassRateTooLow,
    SampleResult,
)
from pytest_llm.backends import ChatRequest
from pytest_llm.sampling import (
    Sample,
    describe,
    required_passes,
    run_samples,
    verdict,
    wilson_interval,
)
from pytest_llm.scorers import contains_all
from pytest_llm.testing import FakeOllama, RecordedRequest, Reply

from .conftest import InFlight, ScriptedBackend

# samples differ only above temperature 0 (at 0 sample() warns that they are one answer)
FAST = HarnessConfig(model="small", temperature=0.8, retry_delay_seconds=0.0, concurrency=1)


def harness(backend: ScriptedBackend, config: HarnessConfig = FAST, **kw: object) -> Harness:
    return Harness(config, backend=backend, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("passes", "runs", "low", "high"),
    [(3, 5, 0.2307, 0.8824), (0, 10, 0, 0.2775), (10, 10, 0.7225, 1), (50, 100, 0.4038, 0.5962)],
)
def test_wilson_interval_matches_published_values(
    passes: int, runs: int, low: float, high: float
) -> None:
    assert wilson_interval(passes, runs) == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_edges() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="passes must lie in"):
        wilson_interval(3, 2)


def test_required_passes_and_verdict() -> None:
    assert required_passes(5, 0.6) == 3  # 0.6 * 5 is 3.0000000000000004 in floating point
    assert required_passes(5, 0.8) == 4
    assert required_passes(10, 0.0) == 0
    assert required_passes(3, 1.0) == 3
    assert verdict(3, 0, 5, 0.6) is True
    assert verdict(2, 2, 5, 0.6) is None
    assert verdict(2, 3, 5, 0.6) is False
    assert verdict(0, 2, 5, 0.8) is False


def sample(index: int, passed: bool) -> Sample:
    return Sample(index=index, result=LLMResult(content=str(index), model="m"), passed=passed)


def test_run_samples_stops_once_the_verdict_is_certain() -> None:
    ran: list[int] = []

    def run_one(i: int) -> Sample:
        ran.append(i)
        return sample(i, passed=False)

    done = run_samples(10, run_one, concurrency=1, min_pass_rate=0.8)
    assert ran == [0, 1, 2]  # 3 failures: at most 7 of 10 can pass
    assert [s.index for s in done] == [0, 1, 2]
    everything = run_samples(10, run_one, concurrency=1, min_pass_rate=0.8, stop_early=False)
    assert len(everything) == 10


def test_run_samples_runs_at_least_one_and_in_parallel() -> None:
    assert len(run_samples(5, lambda i: sample(i, True), concurrency=1, min_pass_rate=0.0)) == 1
    in_flight = InFlight()

    def slow(i: int) -> Sample:
        with in_flight:
            time.sleep(0.05)
        return sample(i, True)

    done = run_samples(6, slow, concurrency=3, min_pass_rate=1.0)
    assert in_flight.peak == 3 and [s.index for s in done] == list(range(6))


def test_run_samples_propagates_errors() -> None:
    def broken(i: int) -> Sample:
        raise BackendUnreachable("down")

    with pytest.raises(BackendUnreachable):
        run_samples(3, broken, concurrency=2, min_pass_rate=1.0)


def test_sample_result_reports_rate_interval_and_verdict() -> None:
    outcome = SampleResult(
        samples=tuple(sample(i, i < 3) for i in range(5)), n=5, min_pass_rate=0.8
    )
    assert (outcome.passes, outcome.runs, outcome.rate, outcome.passed) == (3, 5, 0.6, False)
    assert [s.index for s in outcome.failures] == [3, 4]
    assert str(outcome) == ("3/5 samples passed: pass rate 60% (95% CI 23%-88%), min_pass_rate 80%")
    summary = outcome.summary()
    assert summary["interval"] == pytest.approx([0.2307, 0.8824], abs=1e-4)
    assert summary["stopped_early"] is False and summary["model"] == "m"
    early = SampleResult(samples=(sample(0, True),), n=5, min_pass_rate=0.2)
    assert early.passed and early.stopped_early
    assert describe(early.summary()).startswith(
        "1/1 samples passed (stopped early: 1 of n=5 ran, the verdict was certain)"
    )


# --- Harness.sample ----------------------------------------------------------------------


def test_each_sample_has_its_own_seed_and_sample_index() -> None:
    backend = ScriptedBackend(["yes"])
    outcome = harness(backend).sample("Say yes", 4)
    assert outcome.passed and outcome.runs == 4
    assert [r.seed for r in backend.requests] == [42, 43, 44, 45]
    assert [r.sample for r in backend.requests] == [0, 1, 2, 3]
    assert all(r.messages == ({"role": "user", "content": "Say yes"},) for r in backend.requests)


def test_three_of_five_fails_at_0_8_and_passes_at_0_6() -> None:
    def answer(request: ChatRequest) -> str:
        return "Paris" if (request.sample or 0) < 3 else "Lyon"

    scorer = contains_all("Paris")
    with pytest.raises(PassRateTooLow) as info:
        harness(ScriptedBackend([answer])).sample(
            "Capital?", 5, scorer=scorer, min_score=1.0, min_pass_rate=0.8, stop_early=False
        )
    message = str(info.value)
    assert message.startswith("3/5 samples passed: pass rate 60% (95% CI 23%-88%)")
    assert "prompt: 'Capital?'" in message
    assert "sample 3 [small]: contains_all=0.000 (min 1): missing 1 of 1: 'Paris'" in message
    assert "output: 'Lyon'" in message
    assert isinstance(info.value, AssertionError)
    assert isinstance(info.value.result, SampleResult) and info.value.result.passes == 3

    passed = harness(ScriptedBackend([answer])).sample(
        "Capital?", 5, scorer=scorer, min_score=1.0, min_pass_rate=0.6
    )
    assert passed.passed and passed.passes == 3
    assert passed.scores[:3] == [1.0, 1.0, 1.0]


def test_samples_are_single_calls_unless_retries_are_asked_for() -> None:
    backend = ScriptedBackend(["nope", "yes"])
    with pytest.raises(PassRateTooLow):
        harness(backend, FAST.replace(max_retries=2)).sample("x", 1, check=lambda t: t == "yes")
    assert len(backend.requests) == 1

    backend = ScriptedBackend(["nope", "yes"])
    outcome = harness(backend).sample("x", 1, check=lambda t: t == "yes", max_retries=1)
    assert outcome.passed and outcome.results[0].retries == 1


def test_defaults_come_from_the_config_and_early_stop_saves_calls() -> None:
    backend = ScriptedBackend(["no"])
    config = FAST.replace(samples=10, min_pass_rate=0.7)
    with pytest.raises(PassRateTooLow, match=r"0/4 samples passed \(stopped early: 4 of n=10"):
        harness(backend, config).sample("x", check=lambda t: t == "yes")
    assert len(backend.requests) == 4  # after 4 failures, at most 6 of 10 can pass


def test_sample_reports_the_run_and_each_call_to_the_observer() -> None:
    from pytest_llm.observer import Observer

    seen: list[SampleResult] = []
    calls: list[LLMResult] = []

    class Watch(Observer):
        def on_sample(self, outcome: SampleResult) -> None:
            seen.append(outcome)

        def on_result(self, result: LLMResult) -> None:
            calls.append(result)

    backend = ScriptedBackend(["ok"])
    harness(backend, observer=Watch()).sample("x", 3)
    assert len(seen) == 1 and seen[0].runs == 3 and len(calls) == 3


def test_bad_sampling_arguments_are_clear_errors() -> None:
    h = harness(ScriptedBackend(["ok"]))
    with pytest.raises(ConfigError, match=r"sample\(n=0\) is invalid"):
        h.sample("x", 0)
    with pytest.raises(ConfigError, match=r"needs min_score to decide which samples pass"):
        h.sample("x", 2, scorer=contains_all("ok"))
    with pytest.raises(ConfigError, match="min_pass_rate=2"):
        h.sample("x", 2, min_pass_rate=2)


def test_infrastructure_errors_stop_sampling() -> None:
    backend = ScriptedBackend([BackendUnreachable("start it with `ollama serve`")])
    with pytest.raises(BackendUnreachable):
        harness(backend).sample("x", 5)
    assert len(backend.requests) == 1


# --- the samples that run depend on the answers, never on timing ---------------------------


@pytest.mark.parametrize("slow", [None, 0, 3])
def test_which_samples_run_depends_on_the_answers_only(slow: int | None) -> None:
    # A live server answers samples in any order (here: one slow sample); a replay answers
    # them at once. Both must run the same samples, or a replay asks for unrecorded ones.
    def run_one(i: int) -> Sample:
        time.sleep(0.05 if i == slow else 0.0)
        return sample(i, passed=i != 2)

    for _ in range(5):
        done = run_samples(10, run_one, concurrency=4, min_pass_rate=0.5)
        # 5 passes are certain once samples 0-5 ended; 6-8 had started by then, 9 never
        assert [s.index for s in done] == list(range(9))
        assert [s.passed for s in done].count(False) == 1


def test_the_lowest_failing_sample_raises_whatever_ends_first() -> None:
    def run_one(i: int) -> Sample:
        time.sleep(0.05 if i == 0 else 0.0)
        raise BackendUnreachable(f"sample {i} failed")

    with pytest.raises(BackendUnreachable, match="sample 0 failed"):
        run_samples(4, run_one, concurrency=4, min_pass_rate=1.0)


README_SAMPLING = """
import pytest

@pytest.mark.llm(temperature=0.8, samples=10, min_pass_rate=0.8)
def test_usually_right(llm):
    outcome = llm.sample("Name a prime number between 10 and 20. The number only.",
                         check=lambda text: text.strip() in {"11", "13", "17", "19"})
    print(outcome)
"""


class Batches:
    """Answers like a server decoding a batch: requests wait until ``size`` have arrived (or
    ``window`` seconds pass), then all are answered together."""

    def __init__(self, size: int, window: float = 0.5) -> None:
        self.size, self.window = size, window
        self._waiting = 0
        self._batch = 0
        self._cond = threading.Condition()

    def __call__(self, request: RecordedRequest) -> Reply:
        with self._cond:
            batch = self._batch
            self._waiting += 1
            if self._waiting == self.size:
                self._waiting, self._batch = 0, batch + 1
                self._cond.notify_all()
            elif not self._cond.wait_for(lambda: self._batch != batch, timeout=self.window):
                self._waiting, self._batch = 0, batch + 1  # a short batch
                self._cond.notify_all()
        return Reply(content=random.choice(["11", "13", "17", "19"]))


def test_readme_sampling_example_recorded_once_replays_exactly(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_primes=README_SAMPLING)
    with FakeOllama(Batches(4), parallel=4) as fake:
        recorded = pytester.runpytest(
            f"--llm-host={fake.url}", "--llm-record-mode=once", "-p", "no:cacheprovider", "-s"
        )
    recorded.assert_outcomes(passed=1)
    # README's printed line: all 10 ran (the verdict was certain after 8, when 9 and 10 ran)
    recorded.stdout.fnmatch_lines(["*10/10 samples passed: pass rate 100% (95% CI 72%-100%)*"])
    for args in [()] * 5 + [("-n", "2")]:
        replayed = pytester.runpytest(
            "--llm-host=http://127.0.0.1:9", "--llm-record-mode=none", "-p", "no:cacheprovider",
            "-s", *args,
        )  # fmt: skip
        replayed.assert_outcomes(passed=1)


# --- sampling says what it saw ---------------------------------------------------------------


def test_sampling_at_temperature_0_warns_that_every_sample_is_one_answer() -> None:
    greedy = harness(ScriptedBackend(["yes"]), FAST.replace(temperature=0.0))
    with pytest.warns(LLMWarning, match=r"sample\(n=4\) runs at temperature 0.*'4/4 passed'"):
        greedy.sample("Say yes", 4)
    greedy.sample("Say yes", 1)  # one sample claims nothing about a rate: no warning
    harness(ScriptedBackend(["yes"])).sample("Say yes", 4)  # temperature 0.8: no warning


def test_pass_rate_too_low_lists_every_failed_sample() -> None:
    backend = ScriptedBackend([lambda r: f"wrong {r.sample}"])
    with pytest.raises(PassRateTooLow) as info:
        harness(backend).sample("x", 8, check=lambda t: t == "yes", stop_early=False)
    message = str(info.value)
    assert message.startswith("0/8 samples passed")
    for i in range(8):
        assert f"sample {i} [small]: check <lambda> " in message
        assert f"output: 'wrong {i}'" in message
    assert "more" not in message


def test_samples_set_on_a_test_that_only_chats_is_an_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm(samples=5, min_pass_rate=0.8, temperature=0.8)
        def test_chats_only(llm):
            assert llm.chat("Say yes").content == "yes"

        @pytest.mark.llm(samples=5, min_pass_rate=0.8, temperature=0.8)
        def test_samples(llm):
            llm.sample("Say yes", check=lambda text: text == "yes")

        def test_plain(llm):
            assert llm.chat("Say yes").content == "yes"
        """
    )
    with FakeOllama("yes") as fake:
        result = pytester.runpytest(f"--llm-host={fake.url}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_chats_only*",
            "*ConfigError: this test sets samples=5, min_pass_rate=0.8, but it only called "
            "llm.chat(), which makes one call and ignores both*",
        ]
    )
