"""Every ready-made scorer on hand-made outputs, edge cases included; embeddings over HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from pydantic import BaseModel

from pytest_llm import Harness, HarnessConfig, LLMResult, Score
from pytest_llm.scorers import (
    EmbeddingCache,
    contains_all,
    contains_any,
    embedding_similarity,
    exact_match,
    length_between,
    lexical_similarity,
    matches_regex,
    schema_conformance,
    valid_json,
)
from pytest_llm.scoring import activated, run_scorer
from pytest_llm.testing import FakeOllama

# Text decoded from bytes with errors="surrogateescape" holds lone surrogates: not UTF-8 safe.
UNSAFE = b"caf\xe9 au lait \xff".decode("utf-8", "surrogateescape")
LONG = " ".join(f"word{i % 97}" for i in range(60_000))  # ~ 400 kB of text


def result(content: str) -> LLMResult:
    return LLMResult(content=content, model="m")


def test_exact_match() -> None:
    scorer = exact_match("Paris")
    assert scorer("  Paris\n").value == 1.0
    miss = scorer(result("paris"))
    assert miss.value == 0.0 and miss.name == "exact_match"
    assert "expected exactly 'Paris', got 'paris'" in miss.reason
    assert exact_match("Paris", case_sensitive=False)("PARIS").value == 1.0
    assert exact_match("Paris", strip=False)(" Paris").value == 0.0
    assert exact_match("")("").value == 1.0
    assert exact_match("x")(UNSAFE).value == 0.0


def test_contains_all_is_the_fraction_found() -> None:
    scorer = contains_all("Paris", "Seine", "Louvre", "Eiffel")
    score = scorer("paris sits on the SEINE")
    assert score.value == 0.5
    assert score.reason == "missing 2 of 4: 'Louvre', 'Eiffel'"
    assert score.details == {"missing": ["Louvre", "Eiffel"]}
    assert scorer("Paris Seine Louvre Eiffel").reason == "contains all 4 keyword(s)"
    assert contains_all("Paris", case_sensitive=True)("paris").value == 0.0
    assert scorer("").value == 0.0
    assert contains_all("caf")(UNSAFE).value == 1.0
    with pytest.raises(TypeError, match="at least one keyword"):
        contains_all()
    with pytest.raises(TypeError, match="non-empty"):
        contains_all("")


def test_contains_any() -> None:
    scorer = contains_any("yes", "oui")
    assert scorer("Oui, bien sûr").details == {"found": ["oui"]}
    assert scorer("Oui").value == 1.0
    none = scorer("no")
    assert (none.value, none.reason) == (0.0, "contains none of 'yes', 'oui'")


def test_matches_regex() -> None:
    scorer = matches_regex(r"\b\d{4}-\d{2}-\d{2}\b")
    hit = scorer("released on 2024-05-01.")
    assert (hit.value, hit.details["match"]) == (1.0, "2024-05-01")
    assert scorer("sometime in May").reason == r"no match for /\b\d{4}-\d{2}-\d{2}\b/"
    assert matches_regex(re.compile("^$"))("").value == 1.0
    with pytest.raises(re.error):
        matches_regex("(")


def test_valid_json() -> None:
    assert valid_json()('{"a": [1, 2]}').value == 1.0
    assert valid_json()('```json\n{"a": 1}\n```').value == 1.0
    bad = valid_json()("{'a': 1}")
    assert bad.value == 0.0 and "not valid JSON" in bad.reason
    assert valid_json()("").value == 0.0
    assert valid_json()(UNSAFE).value == 0.0


class City(BaseModel):
    name: str
    population: int
    country: str
    nickname: str | None = None


CITY_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "population": {"type": "integer", "minimum": 0},
        "country": {"type": "string"},
        "nickname": {"type": "string"},
    },
    "required": ["name", "population", "country"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("schema", [City, CITY_SCHEMA], ids=["pydantic", "json-schema"])
def test_schema_conformance_counts_fields(schema: object) -> None:
    scorer = schema_conformance(schema)  # type: ignore[arg-type]
    full = scorer('{"name": "Lyon", "population": 500000, "country": "FR"}')
    assert (full.value, full.reason) == (1.0, "all 3 field(s) present and valid")
    one_bad = scorer('{"name": "Lyon", "population": "many", "country": "FR"}')
    assert one_bad.value == pytest.approx(2 / 3)
    assert list(one_bad.details["invalid"]) == ["population"]
    missing = scorer('{"name": "Lyon"}')
    assert missing.value == pytest.approx(1 / 3)
    assert missing.details["missing"] == ["population", "country"]
    assert "missing population; missing country" in missing.reason
    # an optional field that is present counts too
    optional_bad = scorer('{"name": "L", "population": 1, "country": "FR", "nickname": 3}')
    assert optional_bad.value == pytest.approx(3 / 4)
    assert scorer("not json").value == 0.0
    assert scorer("[1, 2]").value == 0.0
    assert scorer("").value == 0.0


def test_schema_conformance_counts_an_undeclared_key_once() -> None:
    score = schema_conformance(CITY_SCHEMA)(
        '{"name": "Lyon", "population": 1, "country": "FR", "mayor": "x"}'
    )
    assert score.value == pytest.approx(3 / 4)
    assert "Additional properties are not allowed" in score.reason


def test_schema_conformance_of_a_non_object_schema_is_pass_or_fail() -> None:
    scorer = schema_conformance({"type": "array", "items": {"type": "integer"}})
    assert scorer("[1, 2, 3]").value == 1.0
    assert scorer('[1, "x"]').value == 0.0


def test_length_between_is_graded_outside_the_bounds() -> None:
    scorer = length_between(10, 20)
    assert scorer("x" * 15).value == 1.0
    short = scorer("x" * 5)
    assert (short.value, short.reason) == (0.5, "5 chars, under min_length 10")
    assert scorer("x" * 40).value == 0.5
    assert scorer("").value == 0.0
    assert length_between(max_length=3, unit="words")("one two three four five six").value == 0.5
    assert length_between(max_length=100)(LONG).value == pytest.approx(100 / len(LONG))
    assert length_between(min_length=0)("").value == 1.0
    with pytest.raises(TypeError):
        length_between()
    with pytest.raises(ValueError, match="invalid bounds"):
        length_between(5, 2)
    with pytest.raises(ValueError, match="unit"):
        length_between(1, unit="tokens")  # type: ignore[arg-type]


def test_lexical_similarity() -> None:
    scorer = lexical_similarity("The capital of France is Paris.")
    assert scorer("the capital of france is paris").value == 1.0
    close = scorer("The capital of France is Lyon.")
    assert close.value == pytest.approx(10 / 12)
    assert close.reason.startswith("lexical similarity 0.83 to 'The capital")
    assert scorer("Bananas are yellow").value < 0.2
    assert scorer("").value == 0.0
    assert lexical_similarity("")("").value == 1.0
    assert lexical_similarity("?!")("?!").value == 1.0  # no words: characters compared
    assert lexical_similarity(UNSAFE)(UNSAFE).value == 1.0


def test_lexical_similarity_of_very_long_outputs() -> None:
    # difflib's SequenceMatcher needs minutes on this; rapidfuzz a fraction of a second.
    edited = LONG.replace("word5 ", "other ")
    score = lexical_similarity(LONG)(edited)
    assert 0.97 < score.value < 1.0


def test_scorers_take_results_and_run_scorer_applies_the_threshold() -> None:
    score = run_scorer(contains_all("a", "b"), result("a"), 0.6)
    assert isinstance(score, Score)
    assert (score.value, score.threshold, score.passed) == (0.5, 0.6, False)
    assert str(score) == "contains_all=0.500 (min 0.6): missing 1 of 2: 'b'"


# --- embeddings over real HTTP ------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(models=["llama3.2", "nomic-embed-text", "other-embed"]) as server:
        yield server


def embedded(fake: FakeOllama) -> list[str]:
    return [t for r in fake.requests if r.path == "/api/embed" for t in r.body["input"]]


def test_embedding_similarity_scores_meaning_and_caches_the_reference(fake: FakeOllama) -> None:
    reference = "The cat sat on the mat."
    scorer = embedding_similarity(reference)
    with Harness(HarnessConfig(host=fake.url)) as h:
        close = h.score(result("the cat sat on the mat!"), scorer)
        far = h.score(result("Quarterly revenue grew by 4 percent"), scorer)
        again = h.score(result("the cat sat on the mat!"), scorer)
    assert close.value > 0.9 and far.value < 0.5
    assert close.details["model"] == "nomic-embed-text"
    assert "cosine similarity" in close.reason and "(nomic-embed-text)" in close.reason
    assert again.value == close.value
    # the reference went over the wire once, each distinct output once
    assert embedded(fake).count(reference) == 1
    assert len(embedded(fake)) == 3
    assert {r.body["model"] for r in fake.requests if r.path == "/api/embed"} == {
        "nomic-embed-text"
    }


def test_embedding_cache_is_shared_per_server_and_model(fake: FakeOllama) -> None:
    cache = EmbeddingCache()
    with Harness(HarnessConfig(host=fake.url), embeddings=cache) as first:
        first.embed(["a", "b"], model="nomic-embed-text")
    with Harness(HarnessConfig(host=fake.url), embeddings=cache) as second:
        second.embed(["b", "c", "c"], model="nomic-embed-text")
        second.embed(["b"], model="other-embed")
    assert embedded(fake) == ["a", "b", "c", "b"]


def test_embedding_cache_is_bounded(fake: FakeOllama) -> None:
    cache = EmbeddingCache(max_entries=2)
    with Harness(HarnessConfig(host=fake.url), embeddings=cache) as h:
        for text in ["a", "b", "c", "a"]:
            h.embed([text], model="nomic-embed-text")
    assert embedded(fake) == ["a", "b", "c", "a"]  # "a" was evicted by "c"


def test_embedding_edge_cases_empty_unsafe_and_long(fake: FakeOllama) -> None:
    with Harness(HarnessConfig(host=fake.url)) as h:
        assert h.score(result(""), embedding_similarity("")).value == 1.0
        unsafe = h.score(result(UNSAFE), embedding_similarity("café au lait"))
        long = h.score(result(LONG), embedding_similarity("word1 word2"))
    assert unsafe.value > 0.5
    assert 0.0 <= long.value <= 1.0
    assert "caf? au lait ?" in embedded(fake)  # lone surrogates replaced, not a crash


def test_embedding_similarity_needs_a_harness() -> None:
    with pytest.raises(RuntimeError, match="needs a model server: use it in a test that requests"):
        embedding_similarity("x")("y")


def test_embedding_similarity_uses_the_active_harness(fake: FakeOllama) -> None:
    with Harness(HarnessConfig(host=fake.url)) as h, activated(h):
        score = embedding_similarity("hello world", model="other-embed")("hello world")
    assert score.value == pytest.approx(1.0)
    assert embedded(fake) == ["hello world"]  # the same text is embedded once


def test_missing_embedding_model_is_a_backend_error(fake: FakeOllama) -> None:
    from pytest_llm import ModelNotFound

    with Harness(HarnessConfig(host=fake.url)) as h, pytest.raises(ModelNotFound, match="pull"):
        h.score(result("x"), embedding_similarity("y", model="missing-embed"))


# --- assert_score / assert_similar -----------------------------------------------------------


def test_assert_score_passes_with_the_score_and_fails_with_threshold_and_reason() -> None:
    from pytest_llm import ScoreTooLow, assert_score

    assert assert_score("Paris", contains_all("Paris"), min=1.0).value == 1.0
    with pytest.raises(ScoreTooLow) as info:
        assert_score(result("Paris"), contains_all("Paris", "Seine"), min=0.8)
    assert str(info.value) == (
        "expected contains_all >= 0.8 (from model m), got 0.500: missing 1 of 2: 'Seine'\n"
        "output: 'Paris'"
    )
    # a scorer written for LLMResult works on plain text too
    assert assert_score("x", lambda r: 1.0 if r.content == "x" else 0.0, min=1.0).value == 1.0
    with pytest.raises(TypeError, match=r"needs min=\.\.\. \(or a min_score setting"):
        assert_score("x", contains_all("x"))


def test_assert_score_uses_and_reports_through_the_active_harness(fake: FakeOllama) -> None:
    from pytest_llm import ScoreTooLow, assert_score
    from pytest_llm.observer import Observer

    seen: list[tuple[Score, LLMResult]] = []
    config = HarnessConfig(host=fake.url, min_score=0.6)

    class Watch(Observer):
        def on_score(self, score: Score, result: LLMResult, attempt: str | None = None) -> None:
            seen.append((score, result))

    with Harness(config, observer=Watch()) as h, activated(h):
        with pytest.raises(ScoreTooLow, match=r">= 0\.6"):  # min_score is the default min
            assert_score(result("a"), contains_all("a", "b"))
        assert_score(result("a"), contains_all("a", "b"), min=0.5)
    assert [(s.value, s.threshold, r.model) for s, r in seen] == [(0.5, 0.6, "m"), (0.5, 0.5, "m")]


def test_assert_similar(fake: FakeOllama) -> None:
    from pytest_llm import ScoreTooLow, assert_similar

    assert assert_similar("Paris is the capital.", "paris is the capital", min=0.9).value == 1.0
    with pytest.raises(ScoreTooLow, match=r"expected lexical_similarity >= 0\.9, got 0\.000"):
        assert_similar("Bananas", "paris", min=0.9)
    with Harness(HarnessConfig(host=fake.url)) as h, activated(h):
        score = assert_similar("the cat sat", "The cat sat.", min=0.8, method="embedding")
        assert score.details["model"] == "nomic-embed-text"
        with pytest.raises(ScoreTooLow, match=r"expected embedding_similarity >= 0\.9"):
            assert_similar("revenue grew", "The cat sat.", min=0.9, method="embedding")
    with pytest.raises(ValueError, match="method must be 'lexical' or 'embedding'"):
        assert_similar("a", "b", min=0.5, method="cosine")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model= is for method='embedding'"):
        assert_similar("a", "b", min=0.5, model="nomic-embed-text")
