"""Acceptance: whole pytest sessions (pytester) scoring, judging and sampling against FakeOllama."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_llm.testing import FakeOllama, RecordedRequest


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    models = ["small", "big", "llama3.2", "judge", "nomic-embed-text"]
    with FakeOllama(models=models) as server:
        yield server


def run(pytester: pytest.Pytester, fake: FakeOllama, *args: str) -> pytest.RunResult:
    return pytester.runpytest(f"--llm-host={fake.url}", "-p", "no:cacheprovider", *args)


def chats(fake: FakeOllama, model: str | None = None) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.path == "/api/chat" and model in (None, r.model)]


def properties(junit: object, name: str) -> list[list[dict[str, object]]]:
    return [json.loads(p.attrib["value"]) for p in ET.parse(junit).iter("property")  # type: ignore[arg-type]
            if p.attrib["name"] == name]  # fmt: skip


SCORED = """
import pytest
from pytest_llm.scorers import contains_all

@pytest.mark.llm(model="small", escalate_to=["big"], max_retries=1, min_score=0.8,
                 retry_delay_seconds=0)
def test_scored(llm):
    result = llm.chat("Where is Paris?", scorer=contains_all("Paris", "Seine"))
    print("ROUTE", result.route, "SCORE", result.score)
"""


def test_a_low_score_retries_then_escalates(pytester: pytest.Pytester, fake: FakeOllama) -> None:
    pytester.makepyfile(SCORED)
    fake.script({"small": "Paris is in France.", "big": "Paris, on the Seine."})
    junit = pytester.path / "junit.xml"
    result = run(pytester, fake, "-s", f"--junitxml={junit}", "-o", "junit_family=xunit1")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*ROUTE ('small', 'big') SCORE 1.0*"])
    assert [r.model for r in chats(fake)] == ["small", "small", "big"]
    feedback = chats(fake)[1].messages[-1]["content"]
    assert "Seine" not in feedback and "0.50" not in feedback  # the reason names the answer
    (scores,) = properties(junit, "llm_scores")  # every score travels with the report
    assert [(s["value"], s["passed"], s["model"]) for s in scores] == [
        (0.5, False, "small"),
        (0.5, False, "small"),
        (1.0, True, "big"),
    ]
    assert scores[0]["scorer"] == "contains_all" and scores[0]["threshold"] == 0.8


def test_a_score_never_high_enough_fails_with_every_score(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(SCORED)
    fake.script("Paris is in France.")
    result = run(pytester, fake)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*ScoreTooLow: the output of small -> big scored under min_score in all 4 attempt(s)",
            "*prompt: 'Where is Paris?'",
            "*attempt 1 [[]small,*score: contains_all=0.500 (min 0.8): missing 1 of 2: 'Seine'",
            "*attempt 4 [[]big,*score: contains_all=0.500 (min 0.8)*",
        ]
    )


def test_min_score_from_the_marker_beats_the_ini(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makeini("[pytest]\nllm_min_score = 0.9\n")
    pytester.makepyfile(
        """
        import pytest
        from pytest_llm.scorers import contains_all

        half = contains_all("Paris", "Seine")

        @pytest.mark.llm(min_score=0.4, max_retries=0)
        def test_marker(llm, llm_config):
            assert llm_config.min_score == 0.4
            assert llm.chat("Where?", scorer=half).score == 0.5

        @pytest.mark.llm(max_retries=0)
        def test_ini(llm):
            llm.chat("Where?", scorer=half)
        """
    )
    fake.script("Paris.")
    result = run(pytester, fake)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*_ test_ini _*", "*score: contains_all=0.500 (min 0.9)*"])


JUDGED = """
import pytest
from pytest_llm.scorers import judge

RUBRIC = "The answer names the capital of France."

@pytest.mark.llm(judge_model="judge", min_score=0.5, retry_delay_seconds=0)
def test_judged(llm):
    result = llm.chat("Capital of France?", scorer=judge(RUBRIC))
    print("SCORE", result.score)
"""


def test_a_judge_answering_garbage_twice_then_json_gives_a_score(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(JUDGED)
    garbage = ["8/10", "{'score': 8}"]
    fake.script({"llama3.2": "Paris.", "judge": [*garbage, '{"reasoning": "ok", "score": 8}']})
    result = run(pytester, fake, "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*SCORE 0.8*"])
    assert len(chats(fake, "judge")) == 3
    assert len(chats(fake, "llama3.2")) == 1


def test_a_judge_that_never_answers_json_is_a_clear_error(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(JUDGED)
    fake.script({"llama3.2": "Paris.", "judge": "Great answer, 10/10!"})
    result = run(pytester, fake)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*JudgeError: the judge model 'judge' gave no valid verdict in 3 attempt(s)*"
            "last answer 'Great answer, 10/10!'*--llm-judge-model*"
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    assert len(chats(fake, "llama3.2")) == 1  # the tested call is not retried for it


def test_the_llm_judge_fixture_and_assert_score(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(
        """
        import pytest
        from pytest_llm import assert_score
        from pytest_llm.scorers import judge

        @pytest.mark.llm(judge_model="judge")
        def test_fixture(llm, llm_judge):
            assert llm_judge.config.model == "judge"
            answer = llm.chat("Capital of France?")
            assert_score(answer, judge("Names Paris.", harness=llm_judge), min=0.9)

        def test_no_judge_model(llm_judge):
            pass
        """
    )
    fake.script({"llama3.2": "Lyon.", "judge": '{"reasoning": "wrong city", "score": 2}'})
    result = run(pytester, fake)
    result.assert_outcomes(failed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "ConfigError: no judge model is set: use @pytest.mark.llm(judge_model=...)*",
            "*ScoreTooLow: expected judge >= 0.9 (from model llama3.2), got 0.200: wrong city",
        ]
    )


def test_assert_similar_by_embedding_uses_the_test_server(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(
        """
        from pytest_llm import assert_similar

        REFERENCE = "The cat sat on the mat."

        def test_close(llm):
            result = llm.chat("Where did the cat sit?")
            assert_similar(result, REFERENCE, min=0.9, method="embedding")
            assert_similar(result, REFERENCE, min=0.9)

        def test_far(llm):
            result = llm.chat("Where did the cat sit?", max_retries=0)
            assert_similar(result, "Quarterly revenue grew.", min=0.5, method="embedding")
        """
    )
    fake.script("The cat sat on the mat!")
    result = run(pytester, fake)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*ScoreTooLow: expected embedding_similarity >= 0.5 (from model llama3.2), got 0.*"]
    )
    embedded = [t for r in fake.requests if r.path == "/api/embed" for t in r.body["input"]]
    assert embedded.count("The cat sat on the mat!") == 1  # cached for the session


SAMPLED = """
import pytest
from pytest_llm.scorers import contains_all

@pytest.mark.llm(temperature=0.8, samples=5, min_pass_rate=0.8, min_score=1.0)
def test_strict(llm):
    llm.sample("Capital of France?", scorer=contains_all("Paris"), stop_early=False)

@pytest.mark.llm(temperature=0.8, samples=5, min_pass_rate=0.6, min_score=1.0)
def test_lenient(llm):
    outcome = llm.sample("Capital of France?", scorer=contains_all("Paris"), stop_early=False)
    assert outcome.passes == 3
"""


def test_three_of_five_fails_at_0_8_passes_at_0_6_and_the_report_shows_the_rate(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(SAMPLED)
    fake.script(lambda r: "Paris" if r.body["options"]["seed"] < 45 else "Lyon")
    junit = pytester.path / "junit.xml"
    result = run(pytester, fake, f"--junitxml={junit}", "-o", "junit_family=xunit1")
    result.assert_outcomes(passed=1, failed=1)
    rate = "3/5 samples passed: pass rate 60% (95% CI 23%-88%)"
    result.stdout.fnmatch_lines(
        [
            f"*PassRateTooLow: {rate}, min_pass_rate 80%",
            "*sample 3 [[]llama3.2]: contains_all=0.000 (min 1): missing 1 of 1: 'Paris'",
            "*= llm sampling =*",
            f"test_three_of_five*.py::test_strict: FAILED: {rate}, min_pass_rate 80%",
            f"test_three_of_five*.py::test_lenient: passed: {rate}, min_pass_rate 60%",
        ]
    )
    assert sorted(r.body["options"]["seed"] for r in chats(fake)) == sorted([*range(42, 47)] * 2)
    strict, lenient = properties(junit, "llm_samples")
    assert [s["passes"] for s in strict + lenient] == [3, 3]
    assert strict[0]["interval"] == pytest.approx([0.2307, 0.8824], abs=1e-4)
    assert (strict[0]["passed"], lenient[0]["passed"]) == (False, True)


def test_early_stopping_makes_fewer_calls(pytester: pytest.Pytester, fake: FakeOllama) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm(temperature=0.8, samples=10, min_pass_rate=0.8, concurrency=1)
        def test_sampled(llm):
            llm.sample("Say yes", check=lambda text: text == "yes")
        """
    )
    fake.script("no")
    result = run(pytester, fake)
    result.assert_outcomes(failed=1)
    assert len(chats(fake)) == 3  # after 3 failures at most 7 of 10 can pass: decided
    result.stdout.fnmatch_lines(
        ["*0/3 samples passed (stopped early: 3 of n=10 ran, the verdict was certain)*"]
    )


@pytest.mark.parametrize("dist", [["-n", "2"], ["-p", "no:xdist"]])
def test_the_sampling_section_under_xdist(
    pytester: pytest.Pytester, fake: FakeOllama, dist: list[str]
) -> None:
    pytester.makepyfile(SAMPLED)
    fake.script(lambda r: "Paris" if r.body["options"]["seed"] < 45 else "Lyon")
    host = f"--llm-host={fake.url}"
    result = pytester.runpytest_subprocess(host, "-p", "no:cacheprovider", *dist)
    result.assert_outcomes(passed=1, failed=1)
    prefix = "test_the_sampling_section_under_xdist.py::"
    section = [line for line in result.outlines if line.startswith(prefix)]
    assert sorted(line.split(": ")[1] for line in section) == ["FAILED", "passed"]
    assert all("3/5 samples passed: pass rate 60% (95% CI 23%-88%)" in line for line in section)
    assert sum("= llm sampling =" in line for line in result.outlines) == 1


def test_the_sampling_section_strips_the_loadgroup_suffix(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    """Before pytest 9.2, xdist appended ``@group`` to node ids under loadgroup: simulated."""
    pytester.makeconftest(
        """
        def pytest_collection_modifyitems(items):
            for item in items:
                item._id = f"{item.nodeid}@gpu"  # pytest 9.2 keeps the node id in _id
        """
    )
    pytester.makepyfile(SAMPLED)
    fake.script(lambda r: "Paris" if r.body["options"]["seed"] < 45 else "Lyon")
    result = pytester.runpytest_subprocess(
        f"--llm-host={fake.url}", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup"
    )
    result.assert_outcomes(passed=1, failed=1)
    prefix = "test_the_sampling_section_strips_the_loadgroup_suffix.py::"
    section = [line for line in result.outlines if line.startswith(prefix)]
    assert sorted(line.split(": ")[0] for line in section) == [
        f"{prefix}test_lenient", f"{prefix}test_strict",
    ]  # fmt: skip
    assert sum("= llm sampling =" in line for line in result.outlines) == 1


def readme_answer(request: RecordedRequest) -> str:
    """What a capable model would answer to the README's scoring examples."""
    if request.model == "qwen2.5:7b":
        return '{"reasoning": "correct and concrete", "score": 8}'
    prompt = request.messages[-1]["content"]
    answers = {
        "Describe Paris": "Paris, the capital of France, lies on the Seine. It has the Louvre.",
        "17 + 25": "42",
        "Apollo 11": "1969-07-20",
        "Describe Lyon": '{"name": "Lyon", "country": "France", "population": 522000}',
        "capital of France": "The capital of France is Paris.",
        "recursion": "Recursion is a function calling itself, like nested dolls.",
        "close the door": "Could you please close the door?",
        "prime number": "13",
    }
    return next(text for key, text in answers.items() if key in prompt)


def test_the_readme_scoring_examples_work(pytester: pytest.Pytester) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Scoring\n", 1)[1].split("\n## ", 1)[0]
    pytester.makepyfile("\n\n".join(re.findall(r"```python\n(.*?)```", section, re.S)))
    models = ["llama3.2", "llama3.1:8b", "qwen2.5:7b", "nomic-embed-text"]
    with FakeOllama(readme_answer, models=models) as fake:
        result = run(pytester, fake, "-s")
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(
        [
            "*0.8 0.0",
            "*10/10 samples passed: pass rate 100% (95% CI 72%-100%), min_pass_rate 80%",
            "*= llm sampling =*",
            "test_the_readme_scoring_examples_work.py::test_usually_right: passed: 10/10 *",
        ]
    )
    assert len(chats(fake, "qwen2.5:7b")) == 3
