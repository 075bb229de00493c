"""The JSON report document (``--llm-report``), typed: schema ``pytest-llm-report/2``.

Each part of the document is a ``TypedDict`` here, and the same document is published
as a JSON Schema (:data:`SCHEMA_FILE`, ``pytest_llm/report/pytest-llm-report-2.schema.json``)
for the tools that read reports. A test keeps the two in step (every key of these types
is a property of the schema, and every report the test suite writes validates).

Times are milliseconds (``*_ms``) or seconds (``*_s``); a figure that could not be
measured is ``null``. Hosts never carry credentials (``user:password@`` is removed).

The records a test's report carries from elsewhere (a call's :class:`Call`, from
``LLMResult.summary()``; a sample's :class:`Sample`; a dataset's :class:`Dataset`; the
``ladder`` part) may gain keys; the schema requires the keys the report reads and
allows more. The report's own objects (run, totals, per-model figures, per-test
records) are closed: a key not listed is an error.

Version 2 against version 1 (``pytest-llm-report/1``), for consumers:

* ``tests[].judges``: the models that judged the test's answers (``llm_judge``,
  ``judge()``); they are no longer part of ``tests[].route``, which is the escalation
  route only. ``tests[].calls`` and the per-model figures still count judge calls.
* ``tests[].model`` of a test that failed or errored before any answer is the model it
  was set to ask, and the per-model ``tests``/``pass_rate`` count it.
* ``tests[].moved_from`` and ``run.hosts_down[].reason``/``moved``: a host pool's
  failovers (the hosts that failed a test's calls, which moved to other hosts).
* ``tests[].group`` is read from the ``xdist_group`` marker (pytest 9.2 no longer adds
  ``@group`` to node ids).

The baseline gate (:mod:`pytest_llm.baseline`) reads version 1 reports as well: the
figures it compares did not change.
"""

# No ``from __future__ import annotations`` here: ``TypedDict`` reads ``NotRequired`` from
# evaluated annotations (``__required_keys__``), which the schema test compares.

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

__all__ = [
    "COMPATIBLE",
    "OUTCOMES",
    "SCHEMA",
    "SCHEMA_FILE",
    "Call",
    "Dataset",
    "ErrorInfo",
    "Failure",
    "HostDown",
    "HostFailure",
    "ModelFigures",
    "Report",
    "ReportedTest",
    "Run",
    "Sample",
    "ScoreEntry",
    "Totals",
    "Try",
    "Worker",
    "json_schema",
]

SCHEMA = "pytest-llm-report/2"
#: Earlier versions the baseline gate still reads (the figures it compares are the same).
COMPATIBLE = ("pytest-llm-report/1",)
#: The JSON Schema of :data:`SCHEMA`, shipped in the package.
SCHEMA_FILE = Path(__file__).with_name("pytest-llm-report-2.schema.json")

Outcome = Literal["passed", "failed", "error", "skipped", "xfailed", "xpassed", "flagged"]
OUTCOMES: tuple[Outcome, ...] = (
    "passed",
    "failed",
    "error",
    "skipped",
    "xfailed",
    "xpassed",
    "flagged",
)


class Try(TypedDict):
    """One attempt of a call (``Attempt.figures()``): no text."""

    model: str
    rejected: str | None
    """Why the answer was not accepted (``invalid``, ``check``, ``score``, ``transport``)."""
    tokens_in: int | None
    tokens_out: int
    duration_ms: float
    ttft_ms: float | None
    server_ms: float | None
    queue_ms: float | None
    load_ms: float
    score: float | None
    cached: bool


class Call(TypedDict):
    """One model call of a test (``LLMResult.summary()``): the accepted answer's figures,
    totals over every attempt, the answer's first 500 characters and each attempt."""

    model: str
    route: list[str]
    success: bool
    tokens_in: int | None
    tokens_out: int
    total_tokens_in: int | None
    total_tokens_out: int
    duration_ms: float
    total_duration_ms: float
    ttft_ms: float | None
    load_ms: float
    retries: int
    reasks: int
    attempts: int
    score: float | None
    cached: bool
    answer: str | None
    tries: list[Try]
    role: NotRequired[str | None]
    """``"judge"`` for a judge's call (``llm_judge``, ``judge()``), else absent or null."""


class ScoreEntry(TypedDict):
    """A score computed in the test (``Score.as_dict()`` with the model it scored)."""

    scorer: str
    value: float
    threshold: float | None
    passed: bool
    reason: str
    details: dict[str, Any]
    model: str | None
    attempt: str | None
    """``accepted``/``rejected`` for a ``chat(scorer=)`` answer, null for ``llm.score``."""


class Sample(TypedDict):
    """One ``llm.sample()`` call (``SampleResult.summary()``)."""

    model: str | None
    n: int
    runs: int
    passes: int
    rate: float
    interval: list[float]
    min_pass_rate: float
    passed: bool
    stopped_early: bool
    scores: list[float | None]


class CaseRow(TypedDict):
    """One case of a dataset (``CaseResult.summary()``)."""

    id: str
    passed: bool
    reason: str | None
    model: str | None
    expected: Any
    predicted: Any
    score: float | None
    output: str | None


class Dataset(TypedDict):
    """One ``llm.evaluate()`` call (``DatasetResult.summary()``)."""

    cases: int
    passes: int
    accuracy: float
    interval: list[float]
    min_accuracy: float
    passed: bool
    failed_cases: list[dict[str, Any]]
    results: list[CaseRow]
    labels: NotRequired[list[Any]]
    confusion: NotRequired[Any]
    per_label: NotRequired[Any]


class Failure(TypedDict):
    """Why a phase failed: the message as pytest shows it, the test's model calls (the
    ``llm calls`` section) or null; each bounded to 4000 characters."""

    when: str
    message: str
    transcript: str | None


class ErrorInfo(TypedDict):
    """An infrastructure error (server down, model missing, timeout after retries)."""

    type: str
    host: str | None
    message: str


class HostFailure(TypedDict):
    """A host of the pool that failed one of a test's calls, which then moved to another
    host (or, with no host left, errored)."""

    host: str
    reason: str | None
    """``refused the connection``, ``timed out``, ``answered 503``, ``broke the answer``."""
    message: str | None
    down: bool
    """Whether that failure marked the host down (two in a row)."""


class ReportedTest(TypedDict):
    """One test, exactly once, in the order the tests ended (under xdist, the order the
    controller heard of their end; a test cut short, by a crashed worker or an
    interrupted run, comes last)."""

    nodeid: str
    group: str | None
    """The test's ``xdist_group`` (``@pytest.mark.xdist_group("db")``), else null."""
    outcome: Outcome
    """One word even when pytest counts two (a failed test whose teardown errors is
    ``failed``); ``flagged``: ``on_low_quality="flag"`` (the reason in ``flag``)."""
    duration_s: float
    """The test's call phase."""
    worker: str | None
    """The xdist worker (``gw0``), null without xdist."""
    host: str | None
    """The host that answered the test."""
    error: ErrorInfo | None
    """An infrastructure error (the outcome is then ``error``)."""
    moved_from: list[HostFailure]
    """The hosts of the pool that failed its calls, each once (see ``HostFailure``)."""
    failure: Failure | None
    """Why it failed or errored (message and model calls), null when it did not."""
    reruns: int
    """Runs repeated by pytest-rerunfailures; each run's calls count once."""
    rerun_failures: list[Failure]
    """The failure of each repeated run: a pass at the second try is not a clean pass."""
    flag: str | None
    rung_failed: bool
    """A failing rung of the model ladder, forgiven if another rung passed."""
    model: str | None
    """The model of the first call; for a test that made none, the model it was set to."""
    route: list[str]
    """Every model its calls tried, in order (escalations), judges left out."""
    judges: list[str]
    """The models that judged its answers."""
    calls: int
    """Model calls (one ``LLMResult`` each), judges' included."""
    attempts: int
    """Requests over every call (retries, re-asks and escalations included)."""
    retries: int
    reasks: int
    """Answers asked for again after a rejection (invalid, check, low score), over the
    accepted calls: a passed test with ``reasks`` is shown ``passed after N re-asks``."""
    tokens_in: int | None
    """Over every attempt; null when a server reported no usage (llama.cpp streaming)."""
    tokens_out: int
    model_ms: float
    """Client time over every call and attempt (a wait for a free slot included)."""
    latency_ms: float | None
    """Median over the test's calls."""
    ttft_ms: float | None
    """Median time to the first token over the test's calls."""
    score: float | None
    """Mean of the scores of its accepted answers (``llm.score``, ``assert_score`` too)."""
    pass_rate: float | None
    """Passes over runs of its ``llm.sample()`` calls (each with its interval in
    ``samples``), null without any."""
    cached: bool
    """Every call was replayed from a cassette."""
    llm: list[Call]
    samples: list[Sample]
    datasets: list[Dataset]
    scores: list[ScoreEntry]
    """Every score computed; a rejected answer's has ``attempt: "rejected"``."""


class HostDown(TypedDict):
    """A host that failed calls, once: the tests that errored with it (refused) and the
    tests whose calls moved to other hosts of the pool."""

    tests: int
    workers: list[str]
    message: str
    reason: str | None
    moved: list[str]


class Worker(TypedDict):
    id: str
    host: str
    tests: int
    llm_tests: int
    calls: int
    model_ms: float


class Run(TypedDict):
    wall_s: float
    model: str
    """The model setting before markers (``--llm-model``, ini, default): tests may set their
    own, so the models that answered are the keys of ``models``."""
    backend: str
    seed: int | None
    hosts: list[str]
    hosts_down: dict[str, HostDown]
    workers: list[Worker]
    digests: dict[str, dict[str, str]]
    dist: str | None
    filtered: bool
    split: NotRequired[dict[str, int] | None]
    """One shard of a split suite (pytest-split): ``{"group": I, "splits": N}``, else null."""
    shards: NotRequired[list[dict[str, Any]]]
    """A merged report only (:mod:`pytest_llm.report.merge`): one entry per shard."""
    versions: dict[str, str | None]


class Totals(TypedDict):
    """The run's totals over every test (every attempt of every call)."""

    tests: int
    llm_tests: int
    """Tests that called a model (or errored trying)."""
    passed: int
    failed: int
    errors: int
    skipped: int
    xfailed: int
    xpassed: int
    flagged: int
    rung_failed: int
    reruns: int
    calls: int
    """Chat calls (one ``LLMResult`` each)."""
    requests: int
    """Backend requests: every attempt of every call."""
    tokens_in: int | None
    tokens_out: int
    retries: int
    escalations: int
    cached: int
    reasks: int
    model_ms: float
    server_ms: float | None
    """The server's own time (prompt evaluation, generation, load) of the live answers;
    null when it tells none (OpenAI-compatible servers)."""
    queue_ms: float | None
    """Time the live requests waited for a slot at the server."""
    parallelism: float | None
    """``server_ms`` over the wall time: never more than the server's slots did; null
    when every call was replayed or the server tells no durations."""


class ModelFigures(TypedDict):
    """One model's figures: every attempt is charged to the model that made it."""

    tests: int
    """Tests whose route used it, and tests that failed or errored before any answer
    from it as the model they were set to ask."""
    passed: int
    pass_rate: float | None
    calls: int
    """Requests to it (every attempt)."""
    mean_score: float | None
    p50_ms: float | None
    p95_ms: float | None
    p50_ttft_ms: float | None
    p50_server_ms: float | None
    p50_queue_ms: float | None
    p50_decode_ms: float | None
    """``p50_ms`` and ``p95_ms`` per answer on the client (a wait for a slot included);
    ``p50_server_ms`` the server's prompt evaluation and generation, ``p50_queue_ms`` the
    wait there (Ollama); ``p50_decode_ms`` first token to last, on the client."""
    tokens_in: int | None
    tokens_out: int
    retries: int
    """Its answers after its first one in a call."""
    escalations: int
    """Calls that moved on from it to the next model of ``escalate_to``."""
    cached: int
    """Its answers replayed from a cassette."""


class Report(TypedDict):
    schema: str
    created: str
    run: Run
    totals: Totals
    models: dict[str, ModelFigures]
    tests: Sequence[ReportedTest]
    """A list, or during a run the tests kept on disk (``pytest_llm.report.stream``)."""
    ladder: dict[str, Any] | None


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of :data:`SCHEMA` (a dict, read from :data:`SCHEMA_FILE`)."""
    import json

    loaded: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return loaded
