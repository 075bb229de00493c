"""Issue 15, item 3: a suite sharded over CI jobs, one merged report and one gate.

The suite below runs for real (``python -m pytest`` in a project folder, against
``FakeOllama``) once whole and once as three pytest-split shards; ``python -m pytest_llm
merge`` joins the shards' reports. The merged report must have the whole run's figures,
and the gate (``python -m pytest_llm gate``) must say the same of both.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_llm.report import COMPATIBLE, SCHEMA, percentile
from pytest_llm.testing import FakeOllama, RecordedRequest
from tests.report_schema import problems

SUITE = """
import pytest

def graded(result):
    return 1.0 if "great" in result.content else 0.7 if "good" in result.content else 0.2

def test_scored(llm):
    assert llm.chat("answer well", scorer=graded).score >= 0.5

def test_plain():
    pass

def test_first(llm):
    llm.chat("count 0 words")

@pytest.mark.llm(models=["small", "llama3.2"])
def test_ladder(llm):  # its two rungs fall into two shards
    assert "good" in llm.chat("answer well").content

@pytest.mark.parametrize("n", [1, 2, 3])
def test_param(llm, n):
    llm.chat(f"count {n} words")

def test_fails(llm):
    assert "good" in llm.chat("answer badly").content

@pytest.mark.skip(reason="not today")
def test_skipped(llm):
    pass

@pytest.mark.llm(model="small", escalate_to=["llama3.2"], max_retries=0, json_mode=True,
                 retry_delay_seconds=0)
def test_escalates(llm):
    assert llm.chat("json please").model == "llama3.2"

def test_sampled(llm):
    llm.sample("answer well", 4)

"""

TESTS = 12  # test_param x3, test_ladder x2
SHARDS = 3
#: The gate must not depend on how loaded this machine is: latency is compared as
#: distributions below, and the gate is judged on outcomes and scores.
GATE = ("--llm-latency-floor-ms", "5000")


class Answers:
    """The model: ``main_was_better`` makes main's answers pass ``test_fails`` and score 1.0."""

    def __init__(self) -> None:
        self.main_was_better = False

    def __call__(self, request: RecordedRequest) -> str:
        prompt = str(request.messages[-1]["content"])
        if prompt == "json please":
            return '{"ok": 1}' if request.model == "llama3.2" else "not json"
        if prompt == "answer well":
            if request.model != "llama3.2":
                return "meh"
            return "a great good answer" if self.main_was_better else "a good answer"
        if prompt == "answer badly" and self.main_was_better:
            return "a good one"
        return f"a plain answer to {prompt}"


@dataclass
class Project:
    """A folder holding the suite, where pytest and the CLI run as a user would run them."""

    path: Path
    fake: FakeOllama
    runs: list[list[str]] = field(default_factory=list)

    def pytest(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "pytest", f"--llm-host={self.fake.url}", *args]
        self.runs.append(argv)
        return subprocess.run(
            argv, cwd=self.path, env=clean_env(), capture_output=True, text=True, timeout=300
        )

    def cli(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "pytest_llm", *map(str, args)]
        return subprocess.run(
            argv, cwd=self.path, env=clean_env(), capture_output=True, text=True, timeout=120
        )


def clean_env() -> dict[str, str]:
    """This process's environment without what would make a nested pytest a worker or
    change its options (xdist's variables, PYTEST_ADDOPTS, a CI step summary)."""
    drop = ("PYTEST_", "GITHUB_STEP_SUMMARY")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def make_project(folder: Path, fake: FakeOllama) -> Project:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    (folder / "test_suite.py").write_text(SUITE)
    return Project(folder, fake)


@dataclass
class Runs:
    project: Project
    whole_exit: int
    shard_exits: list[int]
    merge: subprocess.CompletedProcess[str]
    whole: Path
    shards: list[Path]
    merged: Path
    main_same: Path  # main answered as this branch does: the gate passes
    main_better: Path  # main passed test_fails and scored test_scored 1.0: the gate fails


@pytest.fixture(scope="module")
def answers() -> Answers:
    return Answers()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, answers: Answers) -> Iterator[Runs]:
    with FakeOllama(answers, models=("llama3.2", "small"), first_token_delay=0.05) as fake:
        project = make_project(tmp_path_factory.mktemp("sharded"), fake)
        answers.main_was_better = True
        project.pytest("--llm-report=main-better.json")
        answers.main_was_better = False
        project.pytest("--llm-report=main-same.json")
        whole = project.pytest("--llm-report=whole.json")
        assert "1 failed, 9 passed, 1 skipped" in whole.stdout, whole.stdout
        shards, exits = [], []
        for group in range(1, SHARDS + 1):
            report = Path(f"shard-{group}/report.json")  # as download-artifact lays them out
            result = project.pytest(
                f"--splits={SHARDS}", f"--group={group}", f"--llm-report={report}"
            )
            assert f"Running group {group}/{SHARDS}" in result.stdout, result.stdout
            shards.append(report)
            exits.append(result.returncode)
        merge = project.cli("merge", *shards, "-o", "merged.json")
        assert merge.stderr == ""
        yield Runs(
            project,
            whole.returncode,
            exits,
            merge,
            Path("whole.json"),
            shards,
            Path("merged.json"),
            Path("main-same.json"),
            Path("main-better.json"),
        )


def load(runs: Runs, path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((runs.project.path / path).read_text())
    return doc


#: Figures that are times: they differ from run to run, and are compared as distributions.
TIMES = re.compile(r"(_ms|_s|parallelism)$")


def figures(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if not TIMES.search(k)}


def test_three_shards_merge_to_the_figures_of_the_whole_run(runs: Runs) -> None:
    whole, merged = load(runs, runs.whole), load(runs, runs.merged)
    shards = [load(runs, path) for path in runs.shards]
    assert [len(s["tests"]) for s in shards] != [TESTS, 0, 0]  # the split did split
    assert sum(len(s["tests"]) for s in shards) == TESTS
    rungs = [i for i, s in enumerate(shards) for t in s["tests"] if "test_ladder[" in t["nodeid"]]
    assert len(set(rungs)) == 2  # the ladder is merged from two shards' parts

    assert problems(merged) == []  # a report of the published schema, as a run's
    assert figures(merged["totals"]) == figures(whole["totals"])
    assert merged["totals"]["tests"] == TESTS and merged["totals"]["failed"] == 2
    assert merged["models"].keys() == whole["models"].keys() == {"llama3.2", "small"}
    for model, values in whole["models"].items():
        assert figures(merged["models"][model]) == figures(values), model

    by_id = {t["nodeid"]: t for t in merged["tests"]}
    assert len(by_id) == TESTS
    for test in whole["tests"]:
        mine = by_id[test["nodeid"]]
        for key in ("outcome", "calls", "attempts", "retries", "reasks", "route", "model"):
            assert mine[key] == test[key], (test["nodeid"], key)
        for key in ("tokens_in", "tokens_out", "score", "pass_rate", "scores", "samples"):
            assert mine[key] == test[key], (test["nodeid"], key)
        assert [c["answer"] for c in mine["llm"]] == [c["answer"] for c in test["llm"]]

    ladder, whole_ladder = merged["ladder"], whole["ladder"]
    for key in ("models", "passes", "smallest_sufficient", "needs_largest"):
        assert ladder[key] == whole_ladder[key], key
    assert {t: e["smallest_passing"] for t, e in ladder["tests"].items()} == {
        "test_suite.py::test_ladder": "llama3.2"
    }
    assert _unspeeded(ladder["verdict"]) == _unspeeded(whole_ladder["verdict"])


def _unspeeded(verdict: str) -> str:
    return re.sub(r" at [0-9.]+x the speed of \S+", "", verdict)


def _durations(doc: Mapping[str, Any]) -> dict[str, list[float]]:
    """Every answer's client time, by the model that gave it (what p50/p95 are taken over)."""
    found: dict[str, list[float]] = {}
    for test in doc["tests"]:
        for call in test["llm"]:
            for attempt in call.get("tries") or [call]:
                if attempt.get("rejected") != "transport":
                    found.setdefault(attempt["model"], []).append(attempt["duration_ms"])
    return found


def test_the_merge_exits_as_the_whole_run_did_judging_the_ladder_over_every_shard(
    runs: Runs,
) -> None:
    """Shard 1 ran only the failing rung of test_ladder, whose other rung passes in shard 2:
    the shard passes (the merge judges the ladder); shard 3 fails with test_fails. The
    merge exits 1 as the whole run did, for test_fails alone."""
    assert runs.shard_exits == [0, 0, 1]
    assert (runs.whole_exit, runs.merge.returncode) == (1, 1)
    assert runs.merge.stdout.splitlines()[1:] == [
        "the run FAILED: 1 test(s) failed or errored: test_suite.py::test_fails"
    ]
    # had the big model failed test_ladder too (in shard 2), the merge would say so
    doc = load(runs, runs.shards[1])
    for test in doc["tests"]:
        if test["nodeid"] == "test_suite.py::test_ladder[llama3.2]":
            test.update(outcome="failed", rung_failed=True)
    (rung,) = doc["ladder"]["tests"]["test_suite.py::test_ladder"]["rungs"]
    rung["outcome"] = "failed"
    worse = _variant(runs, "shard-2/worse.json", json.dumps(doc))
    result = runs.project.cli("merge", runs.shards[0], worse, runs.shards[2], "-o", "worse.json")
    assert result.returncode == 1
    assert result.stdout.splitlines()[1:] == [
        "the run FAILED: 1 test(s) failed or errored: test_suite.py::test_fails",
        "the run FAILED: 1 test(s) pass on no model of their ladder: test_suite.py::test_ladder",
    ]


def test_merged_latencies_are_taken_over_every_answer_of_every_shard(runs: Runs) -> None:
    whole, merged = load(runs, runs.whole), load(runs, runs.merged)
    union: dict[str, list[float]] = {}
    for path in runs.shards:
        for model, times in _durations(load(runs, path)).items():
            union.setdefault(model, []).extend(times)
    assert sorted(union["llama3.2"]) == sorted(_durations(merged)["llama3.2"])
    for model, times in union.items():
        mine = merged["models"][model]
        # percentiles of the union, not a mean of the shards' percentiles
        assert mine["p50_ms"] == percentile(times, 50)
        assert mine["p95_ms"] == percentile(times, 95)
        # the same distribution as the whole run's: as many answers, each at least the
        # server's first-token delay, medians of one magnitude
        theirs = _durations(whole)[model]
        assert len(times) == len(theirs)
        assert min(times) >= 50 and min(theirs) >= 50
        assert 1 / 3 < mine["p50_ms"] / whole["models"][model]["p50_ms"] < 3


def test_merged_run_names_its_shards_and_is_not_partial(runs: Runs) -> None:
    merged = load(runs, runs.merged)
    shards = merged["run"]["shards"]
    assert [s["report"] for s in shards] == [str(p) for p in runs.shards]
    assert sum(s["tests"] for s in shards) == TESTS
    assert merged["run"]["wall_s"] == max(s["wall_s"] for s in shards)
    assert merged["run"]["filtered"] is False  # every group is there: the whole suite ran


@pytest.mark.parametrize("main", ["same", "better"])
def test_the_gate_gives_the_same_verdict_on_the_merged_and_the_whole_report(
    runs: Runs, main: str
) -> None:
    baseline = runs.main_same if main == "same" else runs.main_better
    verdicts = []
    for report in (runs.whole, runs.merged):
        result = runs.project.cli("gate", report, "--baseline", baseline, *GATE)
        assert result.stderr == ""
        gate = [line for line in result.stdout.splitlines() if line.startswith("baseline gate")]
        rows = [line.split() for line in result.stdout.splitlines() if line.startswith("  ")]
        verdicts.append((result.returncode, gate, rows))
    assert verdicts[0] == verdicts[1]
    code, gate, rows = verdicts[1]
    if main == "same":
        assert code == 0 and gate[0].startswith("baseline gate passed"), gate
    else:
        assert code == 1 and gate[0].startswith("baseline gate FAILED with 2 regression(s)")
        assert rows[1][:5] == ["now", "failing", "test_suite.py::test_fails", "passed", "failed"]
        assert rows[2][:5] == ["score", "drop", "test_suite.py::test_scored", "1.00", "0.70"]


def test_the_html_and_the_step_summary_come_from_the_merged_report_alone(
    runs: Runs, tmp_path: Path
) -> None:
    summary = tmp_path / "summary.md"
    result = runs.project.cli(
        "render", runs.merged, "--baseline", runs.main_better, *GATE,
        "--html", tmp_path / "report.html", "--markdown", summary,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "report.html").read_text()
    for test in load(runs, runs.whole)["tests"]:
        assert test["nodeid"] in html
    markdown = summary.read_text()
    assert markdown.startswith("\n## pytest-llm: 9 passed, 2 failed, 1 skipped")
    assert "### baseline gate FAILED with 2 regression(s)" in markdown
    assert "### Model ladder" in markdown


def test_a_gate_on_one_shard_alone_calls_the_other_shards_tests_not_run(runs: Runs) -> None:
    result = runs.project.cli("gate", runs.shards[0], "--baseline", runs.main_same, *GATE)
    assert result.returncode == 0, result.stdout
    assert "not run in this run (" in result.stdout
    assert "removed tests" not in result.stdout


# --- what the merge refuses ---------------------------------------------------------------


def merge_error(runs: Runs, *shards: str | Path) -> str:
    result = runs.project.cli("merge", *shards, "-o", "bad-merge.json")
    assert result.returncode == 2, result.stdout
    assert result.stdout == ""
    assert not (runs.project.path / "bad-merge.json").exists()
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    return lines[0]


def test_overlapping_shards_are_an_error_naming_the_tests(runs: Runs) -> None:
    first = merge_error(runs, *runs.shards, runs.whole)
    owner = {t["nodeid"]: str(p) for p in runs.shards for t in load(runs, p)["tests"]}
    named = [
        f"{t['nodeid']} ({owner[t['nodeid']]} and {runs.whole})"
        for t in load(runs, runs.whole)["tests"]
    ]
    assert first == (
        f"pytest-llm: error: {TESTS} test(s) ran in more than one shard: {', '.join(named[:5])} "
        f"and {TESTS - 5} more; every test must run in exactly one shard (the same --splits "
        "in every job, each --group once, no test selected twice)"
    )


def test_shards_of_other_settings_are_an_error_naming_the_setting(runs: Runs) -> None:
    other = Path("shard-2/seed7.json")
    result = runs.project.pytest("--splits=3", "--group=2", "--llm-seed=7", f"--llm-report={other}")
    assert (runs.project.path / other).exists(), result.stdout
    first = merge_error(runs, runs.shards[0], other, runs.shards[2])
    assert first == (
        f"pytest-llm: error: shard reports differ in run.seed: 42 in {runs.shards[0]}, "
        f"{runs.shards[2]}; 7 in {other}; merge the reports of one split run (the same "
        "command and settings in every shard)"
    )


def test_shards_of_another_plugin_version_or_model_digest_are_errors(runs: Runs) -> None:
    """What another CI machine could bring: another pytest-llm, or another model pulled
    under the same name (its digest at the same host differs)."""
    first, second = (load(runs, p) for p in runs.shards[:2])
    older = json.loads(json.dumps(second))
    older["run"]["versions"]["pytest-llm"] = "0.0.1"
    path = _variant(runs, "older.json", json.dumps(older))
    assert merge_error(runs, runs.shards[0], path, runs.shards[2]) == (
        "pytest-llm: error: shard reports differ in run.versions.pytest-llm: "
        f"{first['run']['versions']['pytest-llm']!r} in {runs.shards[0]}, {runs.shards[2]}; "
        "'0.0.1' in older.json; merge the reports of one split run (the same command and "
        "settings in every shard)"
    )
    host = runs.project.fake.url
    digest = first["run"]["digests"]["llama3.2"][host]
    assert second["run"]["digests"]["llama3.2"][host] == digest  # one server, one model
    other = json.loads(json.dumps(second))
    other["run"]["digests"]["llama3.2"][host] = "0" * 64
    path = _variant(runs, "other-model.json", json.dumps(other))
    assert merge_error(runs, runs.shards[0], path, runs.shards[2]) == (
        f"pytest-llm: error: shard reports differ in the digest of llama3.2 at {host}: "
        f"{digest} in {runs.shards[0]}, {'0' * 64} in other-model.json; the shards did not "
        "test the same model: pull the same one on every CI machine"
    )


def test_a_missing_group_is_an_error(runs: Runs) -> None:
    first = merge_error(runs, runs.shards[0], runs.shards[2])
    assert first == (
        f"pytest-llm: error: group 2 of the --splits=3 shards is missing (given: 1 in "
        f"{runs.shards[0]}, 3 in {runs.shards[2]}): merge the report of every group"
    )


def _variant(runs: Runs, name: str, text: str) -> Path:
    path = runs.project.path / name
    path.write_text(text)
    return Path(name)


def test_a_report_of_another_schema_version_is_an_error(runs: Runs) -> None:
    doc = load(runs, runs.shards[1])
    old = _variant(runs, "old.json", json.dumps({**doc, "schema": "pytest-llm-report/0"}))
    first = merge_error(runs, runs.shards[0], old, runs.shards[2])
    assert first.startswith("pytest-llm: error: shard='old.json' ")
    assert "(schema 'pytest-llm-report/0'" in first


def test_shards_of_two_schema_versions_are_an_error_and_an_older_one_is_refused(
    runs: Runs,
) -> None:
    """A report of an older schema (one the gate still reads as a baseline) cannot be merged
    with this version's, nor merged alone: its records may lack what the figures need."""
    (older_schema,) = COMPATIBLE
    doc = load(runs, runs.shards[1])
    older = _variant(runs, "shard-2/v1.json", json.dumps({**doc, "schema": older_schema}))
    assert merge_error(runs, runs.shards[0], older, runs.shards[2]) == (
        f"pytest-llm: error: shard reports differ in schema: {SCHEMA!r} in {runs.shards[0]}, "
        f"{runs.shards[2]}; {older_schema!r} in {older}; merge the reports of one split run "
        "(the same command and settings in every shard)"
    )
    assert merge_error(runs, older) == (
        f"pytest-llm: error: the shard reports are {older_schema!r} and this pytest-llm "
        f"writes {SCHEMA!r}: merge them with the pytest-llm that wrote them"
    )


@pytest.mark.parametrize("damage", ["truncated", "no llm records", "a worker without id", "empty"])
def test_a_damaged_shard_is_an_error_naming_the_file(runs: Runs, damage: str) -> None:
    text = (runs.project.path / runs.shards[1]).read_text()
    if damage == "truncated":  # a killed upload, a disk full
        broken = text[: len(text) // 2]
    elif damage == "no llm records":
        doc = json.loads(text)
        for test in doc["tests"]:
            del test["llm"]
        broken = json.dumps(doc)
    elif damage == "a worker without id":
        doc = json.loads(text)
        doc["run"]["workers"] = [{"host": "http://gpu1:11434"}]
        broken = json.dumps(doc)
    else:
        broken = ""
    path = _variant(runs, "broken.json", broken)
    first = merge_error(runs, runs.shards[0], path, runs.shards[2])
    if damage in ("no llm records", "a worker without id"):
        field = "llm" if damage == "no llm records" else "id"
        assert first == (
            f"pytest-llm: error: shard 'broken.json' is damaged: a record lacks the field "
            f"{field!r}; write it again with --llm-report"
        )
    else:
        assert first.startswith(
            "pytest-llm: error: shard='broken.json' is not a readable JSON report: "
        )


def test_the_same_shard_twice_and_an_output_over_an_input_are_errors(runs: Runs) -> None:
    shard = runs.shards[0]
    first = merge_error(runs, shard, shard)
    assert (
        first == f"pytest-llm: error: shard {str(shard)!r} is given twice (also as {str(shard)!r})"
    )
    before = (runs.project.path / shard).read_bytes()
    result = runs.project.cli("merge", *runs.shards, "-o", shard)
    assert result.returncode == 2
    assert (
        result.stderr
        == f"pytest-llm: error: -o {shard} is an input: write the output to another file\n"
    )
    assert (runs.project.path / shard).read_bytes() == before


# --- files the shards write ---------------------------------------------------------------


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and {"cassettes", "__snapshots__"} & set(p.relative_to(folder).parts)
    }


SNAPSHOTS = """

@pytest.mark.parametrize("n", range(4))
def test_snapshot(llm, llm_snapshot, n):
    assert llm.chat(f"count {n} words") == llm_snapshot
"""


def test_shards_on_separate_machines_write_disjoint_files_and_prune_none_of_the_others(
    tmp_path: Path, answers: Answers
) -> None:
    """Each shard records in its own copy of the project (its CI machine), under xdist: the
    files the shards write are disjoint and together the whole run's; a shard that prunes
    leaves the other shards' cassettes alone; the merged report names each shard's workers."""
    record = ("--llm-record-mode=once", "--snapshot-update")
    with FakeOllama(answers, models=("llama3.2", "small")) as fake:
        whole = make_project(tmp_path / "whole", fake)
        (whole.path / "test_suite.py").write_text(SUITE + SNAPSHOTS)
        whole.pytest(*record)
        expected = _files(whole.path)
        assert len([f for f in expected if f.startswith("cassettes")]) == 14
        assert len([f for f in expected if f.startswith("__snapshots__")]) == 4

        written: list[dict[str, bytes]] = []
        reports = []
        for group in range(1, SHARDS + 1):
            machine = make_project(tmp_path / f"machine-{group}", fake)
            (machine.path / "test_suite.py").write_text(SUITE + SNAPSHOTS)
            split = (f"--splits={SHARDS}", f"--group={group}", "-n", "1")  # each has its gw0
            machine.pytest(*split, *record, "--llm-report=report.json")
            report = json.loads((machine.path / "report.json").read_text())
            assert report["run"]["split"] == {"group": group, "splits": SHARDS}
            written.append(_files(machine.path))
            reports.append(machine.path / "report.json")
        for i, mine in enumerate(written):
            for theirs in written[i + 1 :]:
                assert not mine.keys() & theirs.keys()
        union = {name: data for files in written for name, data in files.items()}
        assert union.keys() == expected.keys()

        # the CI artifacts back in one folder: a replaying shard with --llm-prune deletes
        # none of the other shards' cassettes, and calls none of them unused
        for name, data in union.items():
            target = whole.path / "back" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        back = whole.path / "back"
        (back / "pytest.ini").write_text((whole.path / "pytest.ini").read_text())
        (back / "test_suite.py").write_text(SUITE + SNAPSHOTS)
        replay = Project(back, fake).pytest(
            "--splits=3", "--group=1", "--llm-record-mode=none", "--llm-prune"
        )
        assert "cassette of no test" not in replay.stdout, replay.stdout
        assert _files(back) == union

        merged = whole.cli("merge", *reports, "-o", "merged.json")
        assert merged.returncode == 1, merged.stderr  # test_fails failed
        doc = json.loads((whole.path / "merged.json").read_text())
        ids = [w["id"] for w in doc["run"]["workers"]]
        assert ids == ["shard1/gw0", "shard2/gw0", "shard3/gw0"]
        assert {t["worker"] for t in doc["tests"] if t["outcome"] != "skipped"} <= set(ids)
        assert doc["totals"]["tests"] == TESTS + 4
