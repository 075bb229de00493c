"""llm_snapshot: whole pytest sessions (pytester) storing and comparing answers with syrupy."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llm import LLMResult
from pytest_llm.snapshot import Answer, Comparison, compare, structure_differences
from pytest_llm.testing import FakeOllama

from .conftest import free_url

SNAPSHOTS = Path("__snapshots__")


@pytest.fixture(autouse=True)
def not_an_xdist_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``pytest -n 2`` this module runs in a worker, and syrupy takes the sessions
    pytester starts for workers too (it reads ``PYTEST_XDIST_WORKER``): no summary."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def snapshot_file(pytester: pytest.Pytester, test: str, module: str) -> Path:
    return pytester.path / SNAPSHOTS / module / f"{test}.llm.txt"


def without_identity(text: str) -> str:
    """A snapshot file without its ``identity:`` line, checked to sit under ``model:``
    (it is there when the backend tells the model's identity; its format is the
    backend's)."""
    lines = text.split("\n")
    if len(lines) > 1 and lines[1].startswith("identity: "):
        assert lines[0].startswith("model: ") and len(lines[1]) > len("identity: ")
        del lines[1]
    return "\n".join(lines)


def snapshot_summary(result: pytest.RunResult) -> str:
    """syrupy's report at the end of a run (what it says about unused snapshots)."""
    text = result.stdout.str().split("snapshot report summary", 1)[-1]
    return text.split("short test summary info", 1)[0]


def test_an_answer_is_stored_as_readable_text_with_its_model(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_capital="""
        def test_capital(llm, llm_snapshot):
            assert llm.chat("Capital of France?") == llm_snapshot
        """
    )
    with FakeOllama("The capital of France is Paris.\nIt lies on the Seine.") as fake:
        created = run(pytester, f"--llm-host={fake.url}", "--snapshot-update")
        created.assert_outcomes(passed=1)
        created.stdout.fnmatch_lines(["*1 snapshot generated*"])
        path = snapshot_file(pytester, "test_capital", "test_capital")
        assert without_identity(path.read_text()) == (
            "model: llama3.2\nkind: text\n---\nThe capital of France is Paris.\n"
            "It lies on the Seine.\n"
        )
        again = run(pytester, f"--llm-host={fake.url}")
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines(["*1 snapshot passed*"])


def test_a_structured_answer_is_stored_as_json(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_city="""
        from pydantic import BaseModel

        class City(BaseModel):
            name: str
            population: int

        def test_city(llm, llm_snapshot):
            assert llm.chat("Lyon as JSON", schema=City) == llm_snapshot
        """
    )
    with FakeOllama('{"population": 513275, "name": "Lyon"}') as fake:
        run(pytester, f"--llm-host={fake.url}", "--snapshot-update").assert_outcomes(passed=1)
    assert without_identity(snapshot_file(pytester, "test_city", "test_city").read_text()) == (
        'model: llama3.2\nkind: json\n---\n{\n  "name": "Lyon",\n  "population": 513275\n}\n'
    )


LEXICAL = """
import pytest

@pytest.mark.parametrize("answer", [
    "The capital of France is Paris, a city on the Seine.",
    "The capital of France is Paris, a city by the Seine!",
    "I cannot answer that question.",
], ids=["same", "near", "other"])
def test_lexical(llm_snapshot, answer, request):
    if request.config.getoption("--snapshot-update"):
        answer = "The capital of France is Paris, a city on the Seine."
    assert answer == llm_snapshot(name="capital", mode="lexical", threshold=0.9)
"""


def test_lexical_threshold_passes_a_near_answer_and_fails_another_with_a_diff(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_lexical=LEXICAL)
    run(pytester, "--snapshot-update").assert_outcomes(passed=3)
    result = run(pytester)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_lexical?other? _*",
            "E*assert ?+ received? == ?- snapshot?",
            "E*lexical similarity 0.* < threshold 0.9",
            "E*- The capital of France is Paris, a city on the Seine.",
            "E*+ I cannot answer that question.",
        ]
    )
    assert "test_lexical[near]" not in result.stdout.str().split("short test summary")[1]


def test_ini_sets_the_default_mode_and_threshold(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_ini="""
        def test_near(llm_snapshot, request):
            stored = "The capital of France is Paris, a city on the Seine."
            near = "The capital of France is Paris, a city by the Seine!"
            update = request.config.getoption("--snapshot-update")
            assert (stored if update else near) == llm_snapshot
        """
    )
    run(pytester, "--snapshot-update").assert_outcomes(passed=1)
    pytester.makeini("[pytest]\nllm_snapshot_mode = lexical\nllm_snapshot_threshold = 0.8\n")
    run(pytester).assert_outcomes(passed=1)
    pytester.makeini("[pytest]\nllm_snapshot_mode = lexical\nllm_snapshot_threshold = 0.99\n")
    strict = run(pytester)
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["E*lexical similarity 0.9* < threshold 0.99"])
    pytester.makeini("[pytest]\nllm_snapshot_mode = fuzzy\n")
    bad = run(pytester)
    bad.assert_outcomes(errors=1)
    bad.stdout.fnmatch_lines(
        ["*ConfigError: ini llm_snapshot mode 'fuzzy' is invalid: expected one of exact, *"]
    )


STRUCTURE = """
import json, pytest

STORED = {"name": "Lyon", "population": 513275, "districts": [{"n": 1, "mayor": "A"}]}
NOW = {
    "values": {"name": "Paris", "population": 2102650, "districts": [{"n": 4, "mayor": "B"}] * 3},
    "missing": {"name": "Paris", "districts": []},
}

@pytest.mark.parametrize("case", ["values", "missing"])
def test_structure(llm_snapshot, case, request):
    update = request.config.getoption("--snapshot-update")
    assert (STORED if update else NOW[case]) == llm_snapshot(name="city", mode="structure")
"""


def test_structure_mode_ignores_values_but_catches_a_missing_key(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_structure=STRUCTURE)
    run(pytester, "--snapshot-update").assert_outcomes(passed=2)
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*_ test_structure?missing? _*", "E*the structure differs: missing key population"]
    )


def test_exact_mode_shows_the_diff_and_snapshot_update_rewrites(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_exact="def test_exact(llm_snapshot):\n    assert 'old' == llm_snapshot"
    )
    run(pytester, "--snapshot-update").assert_outcomes(passed=1)
    pytester.makepyfile(
        test_exact="def test_exact(llm_snapshot):\n    assert 'new' == llm_snapshot"
    )
    failed = run(pytester)
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(
        ["E*the answer differs (mode 'exact')", "E*- old", "E*+ new", "*1 snapshot failed*"]
    )
    run(pytester, "--snapshot-update").stdout.fnmatch_lines(["*1 snapshot updated*"])
    assert snapshot_file(pytester, "test_exact", "test_exact").read_text().endswith("---\nnew\n")


def test_embedding_mode_uses_the_backend_and_replays_from_the_cassette(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_embed="""
        import pytest

        @pytest.mark.parametrize("answer", [
            "The cat sat on the warm mat.",
            "the cat sat on the warm mat!",
            "Quarterly revenue grew by four percent.",
        ], ids=["same", "near", "other"])
        def test_embed(llm_snapshot, answer, request):
            if request.config.getoption("--snapshot-update"):
                answer = "The cat sat on the warm mat."
            assert answer == llm_snapshot(name="cat", mode="embedding", threshold=0.9)
        """
    )
    run(pytester, "--snapshot-update").assert_outcomes(passed=3)
    with FakeOllama(models=["nomic-embed-text"]) as fake:
        live = run(pytester, f"--llm-host={fake.url}", "--llm-record-mode=once")
        embeds = [r for r in fake.requests if r.path == "/api/embed"]
    live.assert_outcomes(passed=2, failed=1)
    assert len(embeds) == 2  # an identical answer needs no embedding
    live.stdout.fnmatch_lines(
        ["E*embedding similarity *< threshold 0.9 (embeddings of nomic-embed-text)"]
    )
    replayed = run(pytester, f"--llm-host={free_url()}", "--llm-record-mode=none")
    replayed.assert_outcomes(passed=2, failed=1)
    assert [x for x in replayed.outlines if "embedding similarity" in x] == [
        x for x in live.outlines if "embedding similarity" in x
    ]


def test_a_server_fault_while_embedding_is_a_test_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_down="""
        def test_down(llm_snapshot, request):
            text = "stored" if request.config.getoption("--snapshot-update") else "changed"
            assert text == llm_snapshot(mode="embedding")
        """
    )
    run(pytester, "--snapshot-update").assert_outcomes(passed=1)
    result = run(pytester, f"--llm-host={free_url()}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*BackendUnreachable: Ollama is not reachable at *"])


def test_bad_arguments_are_errors_that_say_what_to_write(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad="""
        def test_mode(llm_snapshot):
            assert "x" == llm_snapshot(mode="fuzzy")

        def test_threshold_without_a_similarity_mode(llm_snapshot):
            assert "x" == llm_snapshot(threshold=0.5)

        def test_property_filters(llm_snapshot):
            assert "x" == llm_snapshot(exclude=lambda prop, path: True)
        """
    )
    result = run(pytester)
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(
        [
            "*ConfigError: llm_snapshot mode 'fuzzy' is invalid: expected one of exact, "
            "lexical, embedding, structure*",
            "*ConfigError: threshold= applies to mode='lexical' or mode='embedding', not "
            "mode='exact'; write llm_snapshot(mode='lexical', threshold=0.5)*",
            "*ConfigError: llm_snapshot does not take exclude=*",
        ]
    )


PARALLEL = """
import pytest

@pytest.mark.parametrize("i", range(6))
def test_parallel(llm_snapshot, i, request):
    version = "v2" if request.config.getoption("--snapshot-update") and {update} else "v1"
    assert f"answer {{i}} {{version}}" == llm_snapshot
"""


def test_snapshot_update_under_xdist_writes_every_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_parallel=PARALLEL.format(update=False))
    created = pytester.runpytest_subprocess("-n", "2", "--snapshot-update")
    created.assert_outcomes(passed=6)
    folder = pytester.path / SNAPSHOTS / "test_parallel"
    assert sorted(p.name for p in folder.iterdir()) == [
        f"test_parallel[{i}].llm.txt" for i in range(6)
    ]
    pytester.runpytest_subprocess("-n", "2").assert_outcomes(passed=6)

    pytester.makepyfile(test_parallel=PARALLEL.format(update=True))
    pytester.runpytest_subprocess("-n", "2", "--snapshot-update").assert_outcomes(passed=6)
    for i in range(6):
        assert (folder / f"test_parallel[{i}].llm.txt").read_text().endswith(f"answer {i} v2\n")


@pytest.mark.parametrize("dist", [["-n", "2"], ["-p", "no:xdist"]])
def test_unused_snapshots_are_reported_as_syrupy_does(
    pytester: pytest.Pytester, dist: list[str]
) -> None:
    pytester.makepyfile(
        test_unused="""
        def test_kept(llm_snapshot):
            assert "kept" == llm_snapshot

        def test_removed(llm_snapshot):
            assert "removed" == llm_snapshot
        """
    )
    pytester.runpytest_subprocess(*dist, "--snapshot-update").assert_outcomes(passed=2)
    pytester.makepyfile(
        test_unused="def test_kept(llm_snapshot):\n    assert 'kept' == llm_snapshot"
    )
    result = pytester.runpytest_subprocess(*dist)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*1 snapshot passed. 1 snapshot unused.*"])
    cleaned = pytester.runpytest_subprocess(*dist, "--snapshot-update")
    cleaned.stdout.fnmatch_lines(["*1 unused snapshot deleted*"])
    assert not snapshot_file(pytester, "test_removed", "test_unused").exists()


KEPT = """
def test_capital(llm, llm_snapshot):
    assert llm.chat("Capital of France?") == llm_snapshot

def test_plain(llm_snapshot):
    assert "plain" == llm_snapshot
"""


@pytest.mark.parametrize("fault", ["cassette miss", "server down"])
@pytest.mark.parametrize("dist", [["-n", "2"], ["-p", "no:xdist"]], ids=["xdist", "no-xdist"])
def test_a_test_that_could_not_run_keeps_its_snapshot(
    pytester: pytest.Pytester, dist: list[str], fault: str
) -> None:
    pytester.makepyfile(test_kept=KEPT)
    with FakeOllama("The capital of France is Paris.") as fake:
        run(pytester, f"--llm-host={fake.url}", "--snapshot-update").assert_outcomes(passed=2)
    path = snapshot_file(pytester, "test_capital", "test_kept")
    stored = path.read_text()
    faulty = (
        ["--llm-record-mode=none", f"--llm-host={free_url()}"]
        if fault == "cassette miss"
        else [f"--llm-host={free_url()}"]
    )
    error = "CassetteError" if fault == "cassette miss" else "BackendUnreachable"

    plain = pytester.runpytest_subprocess(*dist, *faulty)
    plain.assert_outcomes(passed=1, errors=1)
    plain.stdout.fnmatch_lines([f"*{error}*", "*1 snapshot passed.", "*1 passed, 1 error*"])
    assert "unused" not in snapshot_summary(plain)
    assert "--snapshot-update" not in snapshot_summary(plain)
    assert path.read_text() == stored

    updated = pytester.runpytest_subprocess(*dist, *faulty, "--snapshot-update")
    updated.assert_outcomes(passed=1, errors=1)
    updated.stdout.fnmatch_lines([f"*{error}*", "*1 snapshot passed.", "*1 passed, 1 error*"])
    assert "deleted" not in snapshot_summary(updated)
    assert "unused" not in snapshot_summary(updated)
    assert path.read_text() == stored


UNFINISHED = """
import os
import pytest

WRITE = os.environ.get("WRITE_SNAPSHOTS") == "1"

@pytest.fixture
def broken():
    if not WRITE:
        raise RuntimeError("fixture broke")

def test_setup_error(broken, llm_snapshot):
    assert "setup" == llm_snapshot

def test_failure(llm_snapshot):
    assert WRITE, "failed before its snapshot"
    assert "failure" == llm_snapshot

def test_skip(llm_snapshot):
    if not WRITE:
        pytest.skip("not today")
    assert "skip" == llm_snapshot

@pytest.mark.xfail(not WRITE, reason="known", strict=True)
def test_xfail(llm_snapshot):
    assert WRITE
    assert "xfail" == llm_snapshot

def test_passes(llm_snapshot):
    assert "passes" == llm_snapshot
"""


def test_snapshots_are_unused_only_when_their_test_passed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test that errored in setup, failed, was skipped or xfailed before its assertion
    keeps its snapshot: it was not shown to be unused. A removed one still is."""
    pytester.makepyfile(test_unfinished=UNFINISHED)
    monkeypatch.setenv("WRITE_SNAPSHOTS", "1")
    run(pytester, "--snapshot-update").assert_outcomes(passed=5)
    folder = pytester.path / SNAPSHOTS / "test_unfinished"
    written = {p.name: p.read_text() for p in folder.iterdir()}
    assert len(written) == 5
    monkeypatch.delenv("WRITE_SNAPSHOTS")

    updated = run(pytester, "--snapshot-update")
    updated.assert_outcomes(passed=1, failed=1, errors=1, skipped=1, xfailed=1)
    updated.stdout.fnmatch_lines(["*1 snapshot passed."])
    assert "deleted" not in snapshot_summary(updated)
    assert {p.name: p.read_text() for p in folder.iterdir()} == written

    plain = run(pytester)
    plain.stdout.fnmatch_lines(["*1 snapshot passed."])
    assert "unused" not in snapshot_summary(plain)
    assert "--snapshot-update" not in snapshot_summary(plain)

    pytester.makepyfile(test_unfinished=UNFINISHED.replace("def test_passes", "def _gone"))
    cleaned = run(pytester, "--snapshot-update")
    cleaned.stdout.fnmatch_lines(["*1 unused snapshot deleted.*"])
    assert {p.name for p in folder.iterdir()} == set(written) - {"test_passes.llm.txt"}


PROVENANCE = """
import os
from pytest_llm import LLMResult

def test_answer(llm_snapshot):
    identity = os.environ.get("IDENTITY")
    result = LLMResult(
        content=os.environ.get("ANSWER", "Paris."),
        model=os.environ["MODEL"],
        metadata={} if identity is None else {"model_identity": identity},
    )
    assert result == llm_snapshot
"""


def test_a_rewritten_snapshot_names_the_model_that_made_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_provenance=PROVENANCE)
    path = snapshot_file(pytester, "test_answer", "test_provenance")
    monkeypatch.setenv("MODEL", "model-a")
    monkeypatch.setenv("IDENTITY", "sha256:aaa")
    run(pytester, "--snapshot-update").assert_outcomes(passed=1)
    assert path.read_text() == "model: model-a\nidentity: sha256:aaa\nkind: text\n---\nParis.\n"

    monkeypatch.setenv("MODEL", "model-b")
    monkeypatch.setenv("IDENTITY", "sha256:bbb")
    same = run(pytester)  # the same answer from another model still matches ...
    same.assert_outcomes(passed=1)
    run(pytester, "--snapshot-update-new-only").assert_outcomes(passed=1)
    assert path.read_text().startswith("model: model-a\nidentity: sha256:aaa\n")
    rewritten = run(pytester, "--snapshot-update")  # ... and an update says who made it
    rewritten.assert_outcomes(passed=1)
    rewritten.stdout.fnmatch_lines(["*1 snapshot updated.*"])
    assert path.read_text() == "model: model-b\nidentity: sha256:bbb\nkind: text\n---\nParis.\n"
    run(pytester, "--snapshot-update").stdout.fnmatch_lines(["*1 snapshot passed.*"])

    monkeypatch.delenv("IDENTITY")  # an answer of unknown identity keeps the known one
    run(pytester, "--snapshot-update").stdout.fnmatch_lines(["*1 snapshot passed.*"])
    assert path.read_text().startswith("model: model-b\nidentity: sha256:bbb\n")

    path.write_text("Paris.\n")  # written by hand: the user's, whichever model answers
    run(pytester, "--snapshot-update").stdout.fnmatch_lines(["*1 snapshot passed.*"])
    assert path.read_text() == "Paris.\n"


def test_a_diff_after_a_model_change_names_both_models(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_provenance=PROVENANCE)
    monkeypatch.setenv("MODEL", "model-a")
    monkeypatch.setenv("IDENTITY", "sha256:aaa")
    run(pytester, "--snapshot-update").assert_outcomes(passed=1)
    monkeypatch.setenv("MODEL", "model-b")
    monkeypatch.setenv("IDENTITY", "sha256:bbb")
    monkeypatch.setenv("ANSWER", "Lyon.")
    failed = run(pytester, "-vv")
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(
        [
            "E*the answer differs (mode 'exact')",
            "E*the snapshot was made by model model-a (identity sha256:aaa), "
            "this answer by model-b (identity sha256:bbb)",
            "E*- Paris.",
            "E*+ Lyon.",
        ]
    )
    monkeypatch.setenv("MODEL", "model-a")
    monkeypatch.delenv("IDENTITY")  # the same model, identity unknown: nothing to say
    same_model = run(pytester)
    same_model.assert_outcomes(failed=1)
    assert "the snapshot was made by" not in same_model.stdout.str()


def test_a_model_change_rewrites_a_snapshot_written_from_a_live_answer(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_live="""
        def test_capital(llm, llm_snapshot):
            assert llm.chat("Capital of France?") == llm_snapshot
        """
    )
    path = snapshot_file(pytester, "test_capital", "test_live")
    with FakeOllama("Paris.", models=["model-a", "model-b"]) as fake:
        host = f"--llm-host={fake.url}"
        run(pytester, host, "--llm-model=model-a", "--snapshot-update").assert_outcomes(passed=1)
        assert path.read_text().startswith("model: model-a\n")
        updated = run(pytester, host, "--llm-model=model-b", "--snapshot-update")
    updated.stdout.fnmatch_lines(["*1 snapshot updated.*"])
    assert path.read_text().startswith("model: model-b\n")
    assert path.read_text().endswith("kind: text\n---\nParis.\n")


# --- the pieces, without pytest sessions ------------------------------------------------------


def test_answer_files_round_trip_exactly() -> None:
    for answer in (
        Answer("text", "two\r\nlines\n", "m"),
        Answer("text", ""),
        Answer("json", '{\n  "a": 1\n}', "llama3.2"),
        Answer("text", "x", "m", "sha256:1f2e"),
    ):
        assert Answer.loads(answer.dumps()) == answer
    assert Answer.loads("hand-written, no header\n") == Answer("text", "hand-written, no header")


def test_kinds_must_agree_and_identical_bodies_need_no_embedding() -> None:
    text, data = Answer.of('{"a": 1}'), Answer.of({"a": 1})
    verdict = compare(text, data, Comparison(mode="lexical"))
    assert not verdict.matched
    assert verdict.reason == "the snapshot holds a text answer, this one is json"

    def no_embeddings(model: str, texts: object) -> list[list[float]]:
        raise AssertionError("not needed")

    assert compare(data, data, Comparison(mode="embedding"), no_embeddings).matched


def test_structure_differences_name_each_path() -> None:
    stored = {"a": 1, "b": [{"c": "x"}], "d": None}
    assert structure_differences(stored, {"a": 2.5, "b": [{"c": "y"}, {"c": "z"}], "d": None}) == []
    assert structure_differences(stored, {"a": "1", "b": [{"c": "x", "e": 1}], "x": None}) == [
        "missing key d",
        "unexpected key x",
        "a is string, the snapshot has number",
        "unexpected key b[0].e",
    ]
    assert structure_differences([], [1]) == structure_differences([1], []) == []


def test_answers_carry_the_model_identity_and_old_files_still_read() -> None:
    result = LLMResult(content="Paris.", model="m", metadata={"model_identity": "sha256:aaa"})
    assert Answer.of(result) == Answer("text", "Paris.", "m", "sha256:aaa")
    assert Answer.of(LLMResult(content="Paris.", model="m")).identity is None
    # a file written before the identity line existed
    old = Answer.loads("model: smollm2:135m\nkind: text\n---\nThe capital of France is Paris.\n")
    assert (old.model, old.identity, old.kind) == ("smollm2:135m", None, "text")
    assert old.body == "The capital of France is Paris."
    two_lines = Answer("text", "x", "m", "a\nb")  # a header line stays one line
    assert two_lines.dumps() == "model: m\nidentity: a b\nkind: text\n---\nx\n"
