"""Datasets: cases from files (``load_cases``, ``cases_param``) and the dataset test
(``llm.evaluate``): each case a subtest, the accuracy gate, confusion tables, replays."""

from __future__ import annotations

import json
import random
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_llm import (
    AccuracyTooLow,
    Case,
    ConfigError,
    Harness,
    HarnessConfig,
    cases_param,
    load_cases,
)
from pytest_llm.testing import FakeOllama, RecordedRequest, Reply

from .conftest import ScriptedBackend

TICKETS = [
    {"id": "t1", "text": "I was charged twice this month", "label": "billing"},
    {"id": "t2", "text": "The app crashes when I open it", "label": "bug"},
    {"id": "t3", "text": "Please refund my last order", "label": "billing"},
    {"id": "t4", "text": "Can you add a dark mode?", "label": "feature"},
    {"id": "t5", "text": "Error 500 on the login page", "label": "bug"},
]
#: What the fake model answers per ticket text: t3 and t4 are wrong.
ANSWERS = {
    "I was charged twice this month": "billing",
    "The app crashes when I open it": "Bug.",
    "Please refund my last order": "bug",
    "Can you add a dark mode?": "billing",
    "Error 500 on the login page": "bug",
}


def classify(request: RecordedRequest) -> Reply:
    text = request.messages[-1]["content"].split(": ", 1)[1]
    return Reply(content=ANSWERS[text])


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


# --- the loader -----------------------------------------------------------------------------


def test_jsonl_csv_and_yaml_give_the_same_cases(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "t.jsonl", TICKETS[:2])
    (tmp_path / "t.csv").write_text(
        "id,text,label\nt1,I was charged twice this month,billing\n\n"
        't2,"The app crashes when I open it",bug\n'
    )
    (tmp_path / "t.yaml").write_text(
        "- id: t1\n  text: I was charged twice this month\n  label: billing\n"
        "- id: t2\n  text: The app crashes when I open it\n  label: bug\n"
    )
    expected = [Case(id=r["id"], vars=r) for r in TICKETS[:2]]
    for name in ("t.jsonl", "t.csv", "t.yaml"):
        cases = load_cases(tmp_path / name, id="id")
        assert cases == expected, name
        assert cases[0]["text"] == "I was charged twice this month"
    assert load_cases(tmp_path / "t.csv", id="id")[1].source == f"{tmp_path / 't.csv'}:4"
    assert load_cases(tmp_path / "t.yaml", id="id")[1].source == f"{tmp_path / 't.yaml'}:4"


def test_ids_come_from_the_row_without_an_id_field_and_lists_work() -> None:
    cases = load_cases([{"q": "a"}, {"q": "b"}])
    assert [c.id for c in cases] == ["row1", "row2"] and cases[1].vars == {"q": "b"}
    params = cases_param(TICKETS, id="id")
    assert [p.id for p in params] == ["t1", "t2", "t3", "t4", "t5"]
    assert params[0].values == (Case(id="t1", vars=TICKETS[0]),)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "bad.jsonl",
            '{"id": "a", "text": "x"}\n{"id": "b", text}\n',
            r"bad.jsonl:2: malformed row, not JSON",
        ),
        ("bad.jsonl", '{"id": "a"}\n[1, 2]\n', r"bad.jsonl:2: malformed row, a JSON list"),
        (
            "bad.jsonl",
            '{"id": "a", "text": "x"}\n{"text": "y"}\n',
            r"bad.jsonl:2: missing column 'id'",
        ),
        (
            "bad.jsonl",
            '{"id": "a", "text": "x"}\n\n{"id": "a", "text": "y"}\n',
            r"bad.jsonl:3: duplicate id 'a' \(also at .*bad.jsonl:1\)",
        ),
        (
            "bad.csv",
            "id,text\na,x\nb,y,z\n",
            r"bad.csv:3: malformed row, 3 field\(s\) where the header has 2",
        ),
        ("bad.csv", "text\nx\n", r"bad.csv:2: missing column 'id'"),
        (
            "bad.yaml",
            "- id: a\n  text: x\n- id: b\n  text: [unclosed\n",
            r"bad.yaml:\d+: malformed YAML",
        ),
        ("bad.yaml", "- id: a\n- just text\n", r"bad.yaml:2: malformed row, a str"),
        ("bad.yaml", "- id: a\n- id: a\n", r"bad.yaml:2: duplicate id 'a'"),
        ("bad.txt", "x", r"bad.txt: unknown kind of dataset file '.txt'"),
        ("missing.jsonl", None, r"missing.jsonl: no such dataset file"),
    ],
)
def test_bad_files_are_errors_naming_the_file_and_line(
    tmp_path: Path, name: str, text: str | None, message: str
) -> None:
    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_cases(tmp_path / name, id="id")


def test_yaml_is_read_safely(tmp_path: Path) -> None:
    (tmp_path / "evil.yaml").write_text("- id: a\n  x: !!python/object/apply:os.system ['echo']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_cases(tmp_path / "evil.yaml", id="id")


def test_a_bad_file_is_a_collection_error_in_a_session(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("cases.jsonl").write_text('{"id": "a"}\n{"id": "a"}\n')
    pytester.makepyfile(
        """
        import pytest
        from pytest_llm import cases_param

        @pytest.mark.parametrize("case", cases_param("cases.jsonl", id="id"))
        def test_case(case):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*cases.jsonl:2: duplicate id 'a' (also at *cases.jsonl:1)*"])


def test_parametrized_cases_are_one_test_each_and_k_selects(pytester: pytest.Pytester) -> None:
    write_jsonl(pytester.path / "tickets.jsonl", TICKETS)
    pytester.makepyfile(
        """
        import pytest
        from pytest_llm import cases_param

        @pytest.mark.parametrize("case", cases_param("tickets.jsonl", id="id"))
        def test_ticket(case):
            assert case["label"] in ("billing", "bug", "feature")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*test_ticket[[]t1[]] PASSED*", "*test_ticket[[]t5[]] PASSED*"])
    pytester.runpytest("-p", "no:cacheprovider", "-k", "t2 or t4").assert_outcomes(passed=2)


# --- Harness.evaluate -------------------------------------------------------------------------


def scripted(answer: dict[str, str]) -> ScriptedBackend:
    return ScriptedBackend([lambda r: answer[str(r.messages[-1]["content"]).split(": ", 1)[1]]])


def test_evaluate_scores_labels_and_builds_the_confusion_table() -> None:
    h = Harness(HarnessConfig(model="m", min_accuracy=0.6), backend=scripted(ANSWERS))
    outcome = h.evaluate(load_cases(TICKETS, id="id"), "Classify: {text}", expected="label")
    assert (outcome.passes, outcome.total, outcome.passed) == (3, 5, True)
    assert outcome.interval == pytest.approx((0.2307, 0.8824), abs=1e-4)
    assert [c.case.id for c in outcome.failures] == ["t3", "t4"]
    assert outcome.failures[0].reason == "expected label 'billing', got 'bug'"
    assert outcome.labels == ["billing", "bug", "feature"]
    assert outcome.confusion == {
        "billing": {"billing": 1, "bug": 1, "feature": 0},
        "bug": {"billing": 0, "bug": 2, "feature": 0},
        "feature": {"billing": 1, "bug": 0, "feature": 0},
    }
    stats = outcome.per_label()
    assert stats["billing"] == {"precision": 0.5, "recall": 0.5, "support": 2}
    assert stats["bug"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "support": 2}
    assert stats["feature"] == {"precision": None, "recall": 0.0, "support": 1}
    assert str(outcome) == "3/5 cases passed: accuracy 60% (95% CI 23%-88%), min_accuracy 60%"


def test_evaluate_below_min_accuracy_shows_failed_cases_first() -> None:
    h = Harness(HarnessConfig(model="m", min_accuracy=0.8), backend=scripted(ANSWERS))
    with pytest.raises(AccuracyTooLow) as info:
        h.evaluate(TICKETS, "Classify: {text}", expected="label")
    message = str(info.value)
    lines = message.splitlines()
    assert lines[0] == "3/5 cases passed: accuracy 60% (95% CI 23%-88%), min_accuracy 80%"
    assert lines[1] == "failed cases (2 of 5):"
    assert lines[2] == "  case row3 [m]: expected label 'billing', got 'bug'"
    assert lines[3] == "      prompt: 'Classify: Please refund my last order'"
    assert lines[4] == "      output: 'bug'"
    assert "precision" in message and isinstance(info.value, AssertionError)
    assert info.value.result.passes == 3


def test_evaluate_runs_cases_concurrently_and_a_prompt_field_must_exist() -> None:
    in_flight = {"now": 0, "peak": 0}
    lock = threading.Lock()

    def slow(request: object) -> str:
        with lock:
            in_flight["now"] += 1
            in_flight["peak"] = max(in_flight["peak"], in_flight["now"])
        time.sleep(0.05)
        with lock:
            in_flight["now"] -= 1
        return "ok"

    h = Harness(HarnessConfig(model="m", concurrency=4), backend=ScriptedBackend([slow]))
    cases = [{"n": str(i)} for i in range(8)]
    assert h.evaluate(cases, "Say ok {n}").passes == 8
    assert in_flight["peak"] == 4
    with pytest.raises(ConfigError, match=r"names the field \{text\}, which case 'row1' does not"):
        h.evaluate(cases, "Say {text}")
    with pytest.raises(ConfigError, match=r"case 'row1' has no field 'label'"):
        h.evaluate(cases, "Say ok {n}", expected="label")


# --- the dataset test in a session ------------------------------------------------------------

DATASET_TEST = """
import pytest
from pytest_llm import load_cases

CASES = load_cases("tickets.jsonl", id="id")

@pytest.mark.llm(min_accuracy={min_accuracy})
def test_tickets(llm):
    outcome = llm.evaluate(CASES, "Classify: {{text}}", expected="label")
    print("accuracy", outcome.accuracy)
"""


def dataset_session(pytester: pytest.Pytester, min_accuracy: float) -> None:
    write_jsonl(pytester.path / "tickets.jsonl", TICKETS)
    pytester.makepyfile(test_tickets=DATASET_TEST.format(min_accuracy=min_accuracy))


def test_a_failing_dataset_reports_each_case_and_the_gate(pytester: pytest.Pytester) -> None:
    dataset_session(pytester, 0.8)
    with FakeOllama(classify, parallel=4) as fake:
        result = pytester.runpytest(
            f"--llm-host={fake.url}", "-p", "no:cacheprovider", "--junitxml=junit.xml",
            f"--llm-report={pytester.path / 'run.json'}",
        )  # fmt: skip
    result.assert_outcomes(failed=3)  # two cases and the dataset itself
    result.stdout.fnmatch_lines(
        [
            "SUBFAILED[[]t3[]] test_tickets.py::test_tickets - case t3 [[]llama3.2[]]: expected*",
            "SUBFAILED[[]t4[]] test_tickets.py::test_tickets - case t4*",
            "FAILED test_tickets.py::test_tickets - *AccuracyTooLow: 3/5*",
        ]
    )
    out = result.stdout.str()
    assert "prompt: 'Classify: Please refund my last order'" in out
    assert out.count("output: 'bug'") >= 1
    result.stdout.fnmatch_lines(
        [
            "*= llm datasets =*",
            "test_tickets.py::test_tickets: FAILED: 3/5 cases passed: accuracy 60% "
            "(95% CI 23%-88%), min_accuracy 80%",
            "  failed cases: t3, t4",
            "  expected \\ got  billing      bug  feature",
            "  billing               1        1        0",
            "  bug                   0        2        0",
            "  feature               1        0        0",
            "  billing: precision 50%, recall 50% (2 case(s))",
        ]
    )
    suite = ET.parse(pytester.path / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    failures = suite.findall("testcase/failure")
    messages = [f.get("message", "") for f in failures]
    assert any(m.startswith("case t3 [llama3.2]: expected label 'billing'") for m in messages)
    assert any(m.startswith("case t4 [llama3.2]") for m in messages)
    doc = json.loads((pytester.path / "run.json").read_text())
    (test,) = doc["tests"]  # the cases are in their test's record, not records of their own
    assert test["outcome"] == "failed" and test["calls"] == 5
    assert "3/5 cases passed" in test["failure"]["message"]
    (dataset,) = test["datasets"]
    assert (dataset["cases"], dataset["passes"], dataset["passed"]) == (5, 3, False)
    assert dataset["interval"] == pytest.approx([0.2307, 0.8824], abs=1e-4)
    assert dataset["confusion"]["feature"] == {"billing": 1, "bug": 0, "feature": 0}
    assert dataset["per_label"]["billing"] == {"precision": 0.5, "recall": 0.5, "support": 2}
    assert [(r["id"], r["passed"]) for r in dataset["results"]] == [
        ("t1", True),
        ("t2", True),
        ("t3", False),
        ("t4", False),
        ("t5", True),
    ]
    assert dataset["results"][2]["reason"] == "expected label 'billing', got 'bug'"
    assert dataset["results"][2]["output"] == "bug"


def test_a_dataset_over_its_threshold_passes_with_tolerated_cases(
    pytester: pytest.Pytester,
) -> None:
    dataset_session(pytester, 0.6)
    with FakeOllama(classify, parallel=4) as fake:
        result = pytester.runpytest(
            f"--llm-host={fake.url}", "-p", "no:cacheprovider", "--junitxml=junit.xml", "-rA",
            "-o", "verbosity_subtests=1",
        )  # fmt: skip
    result.assert_outcomes(passed=1, xfailed=2)
    result.stdout.fnmatch_lines(
        [
            "test_tickets.py::test_tickets: passed: 3/5 cases passed: accuracy 60%*",
            "  failed cases: t3, t4",
            "SUBXFAIL[[]t3[]] test_tickets.py::test_tickets - tolerated by the dataset's verdict "
            "(3/5 cases passed: *): expected label 'billing', got 'bug'",
            "*1 passed, 2 xfailed, *3 subtests passed*",
        ]
    )
    suite = ET.parse(pytester.path / "junit.xml").getroot().find("testsuite")
    assert suite is not None and not suite.findall("testcase/failure")


def test_llm_cases_runs_only_the_cases_named(pytester: pytest.Pytester) -> None:
    dataset_session(pytester, 1.0)
    with FakeOllama(classify, parallel=4) as fake:
        chosen = pytester.runpytest(
            f"--llm-host={fake.url}", "-p", "no:cacheprovider", "--llm-cases=t1,t5"
        )
        asked = [r for r in fake.requests if r.path == "/api/chat"]
        none = pytester.runpytest(
            f"--llm-host={fake.url}", "-p", "no:cacheprovider", "--llm-cases=z"
        )
    chosen.assert_outcomes(passed=1)
    chosen.stdout.fnmatch_lines(["*2/2 cases passed: accuracy 100%*"])
    assert len(asked) == 2
    none.assert_outcomes(skipped=1)


class Shuffled:
    """Answers each request after a random pause, so the completion order is random; a
    prompt asked again gets the next of its answers ("billing", then "bug" for a refund)."""

    def __init__(self) -> None:
        self.asked: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Reply:
        time.sleep(random.uniform(0, 0.05))
        text = request.messages[-1]["content"]
        with self.lock:
            n = self.asked[text] = self.asked.get(text, -1) + 1
        if text.endswith("refund my last order"):
            return Reply(content=["billing", "bug"][min(n, 1)])
        return classify(request)


def test_a_recorded_dataset_replays_the_same_whatever_the_order(pytester: pytest.Pytester) -> None:
    rows = [*TICKETS, {"id": "t6", "text": "Please refund my last order", "label": "bug"}]
    write_jsonl(pytester.path / "tickets.jsonl", rows)  # t3 and t6: one prompt, two labels
    pytester.makepyfile(test_tickets=DATASET_TEST.format(min_accuracy=0.5))
    args = ["-p", "no:cacheprovider", "-rA", "-o", "verbosity_subtests=1"]
    with FakeOllama(Shuffled(), parallel=4) as fake:
        recorded = pytester.runpytest(f"--llm-host={fake.url}", "--llm-record-mode=once", *args)
    recorded.assert_outcomes(passed=1, xfailed=1)  # t3 got "billing" (asked first), t6 "bug"
    recorded.stdout.fnmatch_lines(["*5/6 cases passed*", "*failed cases: t4"])
    cassette = next(pytester.path.glob("cassettes/**/*.json*"))
    first = cassette.read_bytes()
    for extra in [(), (), ("-n", "2")]:
        replayed = pytester.runpytest(
            "--llm-host=http://127.0.0.1:9", "--llm-record-mode=none", *args, *extra
        )
        replayed.assert_outcomes(passed=1, xfailed=1)
        replayed.stdout.fnmatch_lines(["*5/6 cases passed*", "*failed cases: t4"])
    assert cassette.read_bytes() == first


def test_a_failed_case_shows_its_own_calls_only(pytester: pytest.Pytester) -> None:
    dataset_session(pytester, 0.8)
    pytester.makeconftest(
        """
        import json

        def pytest_runtest_logreport(report):
            case = getattr(report, "llm_case", None)
            if case is not None:
                with open("cases.jsonl", "a") as f:
                    f.write(json.dumps({"case": case, "sections": report.sections}) + "\\n")
        """
    )
    with FakeOllama(classify, parallel=4) as fake:
        pytester.runpytest(f"--llm-host={fake.url}", "-p", "no:cacheprovider")
    seen = [json.loads(line) for line in (pytester.path / "cases.jsonl").read_text().splitlines()]
    assert [s["case"]["id"] for s in seen] == ["t1", "t2", "t3", "t4", "t5"]  # case order
    t3 = seen[2]
    assert t3["case"]["passed"] is False and t3["case"]["output"] == "bug"
    ((_, text),) = [s for s in t3["sections"] if s[0] == "llm calls"]
    assert "Please refund my last order" in text and "dark mode" not in text
    assert all(not s["sections"] for s in seen if s["case"]["passed"])


def test_a_flagged_dataset_does_not_fail_the_run(pytester: pytest.Pytester) -> None:
    dataset_session(pytester, 0.8)
    with FakeOllama(classify, parallel=4) as fake:
        result = pytester.runpytest(
            f"--llm-host={fake.url}", "-p", "no:cacheprovider", "--llm-on-low-quality=flag"
        )
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*FAILED: 3/5 cases passed*", "* 1 flagged in *"])
    assert "SUBFAILED" not in result.stdout.str()  # its cases are tolerated, not failed


def test_a_server_down_is_the_datasets_error_not_its_cases(pytester: pytest.Pytester) -> None:
    dataset_session(pytester, 0.5)
    result = pytester.runpytest(
        "--llm-host=http://127.0.0.1:9", "-p", "no:cacheprovider", "--llm-retries=0"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*BackendUnreachable*"])
    assert "SUBFAILED" not in result.stdout.str()


def test_labels_come_from_a_schema_field_or_a_callable() -> None:
    from pydantic import BaseModel

    class Label(BaseModel):
        label: str

    backend = ScriptedBackend([lambda r: '{"label": "Billing"}'])
    h = Harness(HarnessConfig(model="m"), backend=backend)
    cases = [{"text": "refund", "want": "billing"}]
    assert h.evaluate(cases, "{text}", schema=Label, label="label", expected="want").passed
    plain = Harness(HarnessConfig(model="m"), backend=ScriptedBackend(["Category: bug"]))
    pick = plain.evaluate(
        [{"text": "crash", "want": "bug"}],
        "{text}",
        label=lambda t: t.split(":")[1],
        expected="want",
    )
    assert pick.cases[0].predicted == "bug" and pick.passed
    dict_schema = {"type": "object", "properties": {"label": {"type": "string"}}}
    as_dict = Harness(HarnessConfig(model="m"), backend=backend)
    assert as_dict.evaluate(
        cases, "{text}", schema=dict_schema, label="label", expected="want"
    ).passed


def test_a_relative_path_is_read_from_the_test_module_directory(pytester: pytest.Pytester) -> None:
    sub = pytester.mkdir("suite")
    write_jsonl(sub / "cases.jsonl", TICKETS[:2])
    sub.joinpath("test_sub.py").write_text(
        "import pytest\n"
        "from pytest_llm import cases_param\n\n"
        '@pytest.mark.parametrize("case", cases_param("cases.jsonl", id="id"))\n'
        "def test_case(case):\n"
        "    assert case.id in ('t1', 't2')\n"
    )
    pytester.runpytest("-p", "no:cacheprovider", "suite").assert_outcomes(passed=2)


def test_exitfirst_stops_at_the_first_failed_case_and_fails_the_dataset(
    pytester: pytest.Pytester,
) -> None:
    dataset_session(pytester, 0.8)
    with FakeOllama(classify, parallel=4) as fake:
        result = pytester.runpytest(f"--llm-host={fake.url}", "-p", "no:cacheprovider", "-x")
    result.assert_outcomes(failed=2)  # case t3, then the dataset
    result.stdout.fnmatch_lines(["SUBFAILED[[]t3[]] *", "FAILED *AccuracyTooLow: 3/5*"])
    assert "SUBFAILED[t4]" not in result.stdout.str()


def test_a_dataset_on_the_ladder_fails_only_on_the_rung_that_misses(
    pytester: pytest.Pytester,
) -> None:
    write_jsonl(pytester.path / "tickets.jsonl", TICKETS)
    pytester.makepyfile(
        test_tickets=DATASET_TEST.format(min_accuracy=0.9).replace(
            "min_accuracy=0.9", "min_accuracy=0.9, models=['small', 'big']"
        )
    )

    def answer(request: RecordedRequest) -> Reply:
        if request.model == "small":
            return classify(request)  # 3 of 5
        text = request.messages[-1]["content"].split(": ", 1)[1]
        return Reply(content=next(t["label"] for t in TICKETS if t["text"] == text))

    with FakeOllama(answer, parallel=4, models=("small", "big")) as fake:
        result = pytester.runpytest(f"--llm-host={fake.url}", "-p", "no:cacheprovider")
    assert result.ret == 0  # big passes every case: the suite's smallest sufficient model
    result.stdout.fnmatch_lines(
        [
            "test_tickets.py::test_tickets[[]small[]]: FAILED: 3/5 cases passed*",
            "test_tickets.py::test_tickets[[]big[]]: passed: 5/5 cases passed*",
            "*1 rung-failed*",
        ]
    )
