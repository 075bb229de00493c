"""The pytest entry point (``pytest11: llm``): options, markers, fixtures, reporting.

Each hook is a few lines that hand over to plain objects; ``ollama``, ``httpx``
and ``jsonschema`` load only when a test first calls a model.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator, Mapping, Sequence
from typing import Any

import pytest

from .backends import Backend, BackendPool
from .backends.registry import kind as backend_kind
from .cassettes import MODES, Cassette, CassetteSettings, CassetteSummary
from .cassettes import PROPERTY as CASSETTE_PROPERTY
from .config import (
    DEFAULT_HOST,
    OPTION_FIELDS,
    HarnessConfig,
    coerce,
    config_field_names,
    from_environment,
    host_cooldown,
    parse_pool,
    public_host,
    resolve,
)
from .dataset_hooks import DatasetSummary, case_report, report_cases, select_cases
from .datasets import PROPERTY as DATASET_PROPERTY
from .errors import BackendError, CassetteError, CheckError, ConfigError, JudgeError
from .flags import flag_reason
from .harness import Harness
from .junit import JUnitErrors
from .ladder import (
    LADDER_KEYS,
    RUNG_FIXTURE,
    LadderOptions,
    LadderSession,
    call_settings,
    ladder_of,
)
from .ladder import PROPERTY as LADDER_PROPERTY
from .report import Recorder, ReportOptions, error_info, selects_part
from .result import LLMResult
from .sampling import PROPERTY as SAMPLES_PROPERTY
from .sampling import ignored_settings
from .scorers import EmbeddingCache
from .scoring import Score, activated
from .timeout_guard import TimeoutGuard
from .transcript import SECTION, LiveLog, transcript
from .xdist import XdistHooks, slot_share, worker_id

SETTINGS_KEY = pytest.StashKey[Mapping[str, Any]]()
POOL_KEY = pytest.StashKey[BackendPool]()
ITEM_CONFIG_KEY = pytest.StashKey[HarnessConfig]()
CASSETTES_KEY = pytest.StashKey[CassetteSettings]()
EMBEDDINGS_KEY = pytest.StashKey[EmbeddingCache]()
HOSTS_KEY = pytest.StashKey[tuple[str, ...]]()
RECORDER_KEY = pytest.StashKey[Recorder]()
LADDER_KEY = pytest.StashKey[LadderSession]()
TIMEOUT_GUARD_KEY = pytest.StashKey[TimeoutGuard]()
#: Set on an item whose setup or call ended in an infrastructure error.
INFRASTRUCTURE_FAULT_KEY = pytest.StashKey[bool]()
#: Whether an item's call passed (its cassette's unused recordings are then known).
CALL_PASSED_KEY = pytest.StashKey[bool]()
#: The results of an item's model calls until its teardown report (the llm calls section).
RESULTS_KEY = pytest.StashKey[list[LLMResult]]()
#: ``--llm-live``: prints each call as it ends.
LIVE_KEY = pytest.StashKey[LiveLog]()
#: The ``user_properties`` the ``llm`` fixture adds: calls, scores, samples, datasets.
_PROPERTIES = ("llm", "llm_scores", SAMPLES_PROPERTY, DATASET_PROPERTY)

#: Errors that mean "could not test", reported as test errors (E) with a one-line fix.
INFRASTRUCTURE_ERRORS = (BackendError, CassetteError, ConfigError, JudgeError)
#: Test errors (E) too, but with their traceback: a bug in the test's own ``check``.
TEST_ERRORS = (*INFRASTRUCTURE_ERRORS, CheckError)

_OPTION_HELP = {
    "model": "model to test (default: llama3.2)",
    "host": "model server URL (default: $OLLAMA_HOST or http://127.0.0.1:11434)",
    "backend": "backend kind: ollama (default), openai, or one another package registers "
    "(entry point group pytest_llm.backends)",
    "timeout_seconds": "seconds one answer may take, all of it (default: 60)",
    "total_timeout_seconds": "seconds one llm call may take, every attempt and pause "
    "(default: timeout x attempts + backoff)",
    "max_retries": "extra attempts per model after invalid output (default: 2)",
    "min_score": "minimum quality score in [0, 1] for scored calls",
    "min_accuracy": "share of a dataset's cases (llm.evaluate) that must pass, in [0, 1] "
    "(default: 1, every case)",
    "seed": "sampling seed sent with every call (default: 42)",
    "judge_model": "model that judges outputs (LLM-as-judge scoring)",
    "on_low_quality": "a score or pass rate under its threshold: fail (default), flag, or "
    "flag-all (invalid output too); a flagged test does not fail the run",
    "model_version": "a version you declare for the tested model, part of its identity in "
    "cassettes (for servers that tell no digest)",
    "api_key_env": "NAME of the environment variable holding the API key "
    "(default: OPENAI_API_KEY for openai, OLLAMA_API_KEY for ollama)",
}

#: Run reports and the baseline gate (pytest_llm.report): option dest = ini name.
_REPORT_OPTIONS = (
    ("llm_report", "PATH", "write the JSON run report (one record per test) to PATH"),
    ("llm_html", "PATH", "write a self-contained HTML report with plots to PATH"),
    ("llm_baseline", "PATH", "compare with an earlier --llm-report; regressions fail the run"),
    ("llm_max_score_drop", "DROP", "baseline gate: allowed drop of a test's score (default: 0.1)"),
    (
        "llm_max_latency_factor",
        "FACTOR",
        "baseline gate: allowed growth of a model's p50 latency, as a ratio (default: 2)",
    ),
    (
        "llm_latency_floor_ms",
        "MS",
        "baseline gate: latency growth under MS milliseconds is noise, never a regression "
        "(default: 50)",
    ),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llm", "testing language model output (pytest-llm)")
    for name, (suffix, convert) in OPTION_FIELDS.items():
        help_text = _OPTION_HELP[name]
        group.addoption(f"--llm-{suffix.replace('_', '-')}", dest=f"llm_{suffix}", help=help_text)
        parser.addini(f"llm_{suffix}", help_text, type=_ini_type(convert), default=None)
    _add_cassette_and_snapshot_options(parser, group)
    _add_ladder_options(parser, group)
    group.addoption(
        "--llm-live",
        dest="llm_live",
        action="store_true",
        help="print each model call (prompt, attempts, answer, timings) as it ends; "
        "in the process that runs the tests, so not with -n",
    )
    group.addoption(
        "--llm-cases",
        dest="llm_cases",
        metavar="ID,ID",
        help="dataset tests (llm.evaluate) run only the cases with these ids",
    )
    help_cooldown = "seconds a host of the pool that is down is left alone (default: 30)"
    group.addoption("--llm-host-cooldown", dest="llm_host_cooldown", help=help_cooldown)
    parser.addini("llm_host_cooldown", help_cooldown, type=_ini_type(float), default=None)
    for name, metavar, help_text in _REPORT_OPTIONS:
        group.addoption(f"--{name.replace('_', '-')}", dest=name, metavar=metavar, help=help_text)
        if metavar == "PATH":  # a string, relative to the ini file (config.ini_path)
            parser.addini(name, f"{help_text}; relative to the ini file")
        else:
            parser.addini(name, help_text, type=_ini_type(float), default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "llm(**settings): settings for the llm fixture; fields: "
        + ", ".join(sorted([*config_field_names(), *LADDER_KEYS])),
    )
    try:
        settings = _base_settings(config)
        port = backend_kind(settings.get("backend", "ollama")).default_port
        pooled = parse_pool(settings.get("host", DEFAULT_HOST), default_port=port)
        config.stash[HOSTS_KEY] = hosts = tuple(h.url for h in pooled)
        settings["host"] = hosts[0]  # the pool's name: its tests use every host of it
        config.stash[SETTINGS_KEY] = settings
        resolve(base=config.stash[SETTINGS_KEY])
        config.stash[CASSETTES_KEY] = CassetteSettings.from_config(config)
        cooldown = host_cooldown(config)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    slot_dir, share = slot_share(config)  # an xdist worker's part of the pool's slots
    config.stash[POOL_KEY] = BackendPool(
        pooled, cooldown_seconds=cooldown, slot_dir=slot_dir, worker=share
    )
    config.stash[EMBEDDINGS_KEY] = EmbeddingCache()
    config.stash[TIMEOUT_GUARD_KEY] = TimeoutGuard(config)
    try:
        config.stash[RECORDER_KEY] = _recorder(config)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.pluginmanager.register(config.stash[RECORDER_KEY], "llm-report")
    worker = worker_id(config) is not None
    cassettes = CassetteSummary(
        config.stash[CASSETTES_KEY], filtered=selects_part(config), worker=worker
    )
    config.pluginmanager.register(cassettes, "llm-cassettes")
    try:
        ladder = LadderSession(
            LadderOptions.from_config(config), worker=worker, sizer=lambda m: _model_size(config, m)
        )
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[LADDER_KEY] = ladder
    config.pluginmanager.register(ladder, "llm-ladder")
    config.stash[RECORDER_KEY].ladder = ladder  # the JSON report's ladder part
    config.pluginmanager.register(JUnitErrors(config), "llm-junit")  # <error>, not <failure>
    if not worker:  # the llm datasets section, from the reports (the workers' too)
        config.pluginmanager.register(DatasetSummary(), "llm-datasets")
    if config.getoption("llm_live"):
        config.stash[LIVE_KEY] = _live_log(config)
    if config.pluginmanager.hasplugin("html") and config.getoption("htmlpath", None) and not worker:
        from .html_extras import PytestHtmlHooks  # pytest-html's hooks exist only with it

        config.pluginmanager.register(PytestHtmlHooks(), "llm-pytest-html")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(
            XdistHooks(config.stash[RECORDER_KEY], cassettes), "llm-xdist"
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    pool = config.stash.get(POOL_KEY, None)
    if pool is not None:
        pool.close()


def pytest_report_header(config: pytest.Config) -> str:
    c = resolve(base=config.stash[SETTINGS_KEY])
    mode = config.stash[CASSETTES_KEY].mode
    cassettes = "" if mode == "off" else f" record_mode={mode}"
    hosts: tuple[str, ...] = config.stash[HOSTS_KEY]  # a pool is spread over xdist workers
    return (
        f"llm: model={c.model} backend={c.backend} host={','.join(map(public_host, hosts))} "
        f"seed={c.seed}{cassettes}"
    )


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(collector: pytest.Collector) -> Generator[None, Any, Any]:
    """Check each test's ``llm`` settings at collection: a bad marker is a collection error.

    They are resolved again at setup (``llm_config``), so markers added later by hooks or
    ``request.applymarker`` count too.
    """
    made = yield
    items = made if isinstance(made, list) else [made]
    for item in items:
        if isinstance(item, pytest.Function) and item.get_closest_marker("llm") is not None:
            try:
                _item_config(item)
            except ConfigError as exc:
                raise collector.CollectError(f"{item.nodeid}: {exc}") from None
    return made


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The model ladder: a test that uses ``llm`` runs once per model (``pytest_llm.ladder``)."""
    if "llm" in metafunc.fixturenames:
        try:
            models = ladder_of(metafunc.definition, metafunc.config.stash[LADDER_KEY].options)
        except ConfigError:
            return  # pytest_pycollect_makeitem makes it the test's collection error
        if models:
            models = metafunc.config.stash[LADDER_KEY].ordered(models)
            metafunc.parametrize(RUNG_FIXTURE, models, ids=list(models), indirect=True)


@pytest.fixture
def _llm_rung(request: pytest.FixtureRequest) -> str | None:
    """The model of this test's rung of the ladder (``None``: no ladder)."""
    model: str | None = getattr(request, "param", None)
    if model is not None:
        session = request.config.stash[LADDER_KEY]
        ladder = session.ordered(ladder_of(request.node, session.options))
        test = request.node.nodeid.rsplit("[", 1)[0]
        data = {"test": test, "model": model, "ladder": list(ladder)}
        data["size"] = session.sizes.get(model)
        request.node.user_properties.append((LADDER_PROPERTY, json.dumps(data)))
    return model


@pytest.fixture
def llm_config(request: pytest.FixtureRequest, _llm_rung: str | None) -> HarnessConfig:
    """The resolved ``HarnessConfig`` for this test (marker > option > ini > env > default)."""
    config = _item_config(request.node)
    if _llm_rung is not None:  # the ladder's model for this item
        config = config.replace(model=_llm_rung)
    request.node.stash[ITEM_CONFIG_KEY] = config  # the run report names the test's host
    request.config.stash[TIMEOUT_GUARD_KEY].check(request.node, config)
    return config


@pytest.fixture
def llm(
    request: pytest.FixtureRequest, llm_config: HarnessConfig, _llm_cassette: Cassette | None
) -> Iterator[Harness]:
    """A ``Harness`` configured for this test; its calls are recorded in the test report."""
    records: list[dict[str, Any]] = []
    results: list[LLMResult] = request.node.stash.setdefault(RESULTS_KEY, [])
    live = request.config.stash.get(LIVE_KEY, None)
    results.clear()  # a rerun (pytest-rerunfailures) reports its own calls only
    request.node.user_properties[:] = [
        p for p in request.node.user_properties if p[0] not in _PROPERTIES
    ]

    def backend_for(c: HarnessConfig) -> Backend:
        return _backend(request.config, c, _llm_cassette, request.node.nodeid)

    def record(result: LLMResult) -> None:
        records.append(result.summary())
        results.append(result)  # for the llm calls section, should the test fail
        if live is not None:
            live(request.node.nodeid, len(results), result)

    def record_score(score: Score, result: LLMResult, attempt: str | None = None) -> None:
        scores.append({**score.as_dict(), "model": result.model, "attempt": attempt})

    scores: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    datasets: list[dict[str, Any]] = []

    def record_dataset(outcome: Any) -> None:
        datasets.append(outcome.summary())
        report_cases(request, outcome, llm_config.on_low_quality)  # each case a subtest

    harness = Harness(
        llm_config,
        backend=backend_for,
        on_result=record,
        on_score=record_score,
        on_sample=lambda outcome: samples.append(outcome.summary()),
        # with a cassette the cache is the test's own, so that its cassette holds every vector
        embeddings=None if _llm_cassette is not None else request.config.stash[EMBEDDINGS_KEY],
        on_dataset=record_dataset,
        select_cases=lambda cases: select_cases(request.config, cases),
    )
    with activated(harness):  # where assert_score, assert_similar and judge() find it
        yield harness
    for name, items in zip(_PROPERTIES, (records, scores, samples, datasets), strict=True):
        if items:  # before the teardown report is made, so it (and JUnit XML, xdist) carry them
            text = json.dumps(items, sort_keys=True, default=str)
            request.node.user_properties.append((name, text))
    ignored = ignored_settings(llm_config, called=bool(records), sampled=bool(samples))
    if ignored is not None:
        raise ConfigError(ignored)


@pytest.fixture
def llm_judge(llm: Harness) -> Harness:
    """A ``Harness`` for the judge model (``judge_model``) on the test's servers; its calls
    are recorded with the test's. ``pytest_llm.scorers.judge(rubric, harness=llm_judge)``."""
    return llm.for_judge()


@pytest.fixture
def _llm_cassette(request: pytest.FixtureRequest) -> Iterator[Cassette | None]:
    """This test's cassette (``None`` in record mode ``off``), written at its end and dropped."""
    settings = request.config.stash[CASSETTES_KEY]
    if settings.mode == "off":
        yield None
        return
    cassette = settings.cassette_for(request.node)
    yield cassette
    node = request.node
    cassette.save(
        keep=node.stash.get(INFRASTRUCTURE_FAULT_KEY, False),
        complete=node.stash.get(CALL_PASSED_KEY, False),
    )
    events = {
        "rerecorded": cassette.rerecorded,
        "unused": cassette.unused,
        "pruned": cassette.pruned,
    }
    if any(events.values()):  # the run's llm cassettes section lists them
        text = json.dumps({k: v for k, v in events.items() if v}, sort_keys=True)
        node.user_properties.append((CASSETTE_PROPERTY, text))


@pytest.fixture
def llm_snapshot(
    snapshot: Any,
    request: pytest.FixtureRequest,
    llm_config: HarnessConfig,
    _llm_cassette: Cassette | None,
) -> Any:
    """syrupy's ``snapshot`` with pytest-llm's extension: ``assert result == llm_snapshot``."""
    from .snapshot import LLMSnapshotAssertion, settings_from_ini

    def embed(model: str, texts: Sequence[str]) -> list[list[float]]:
        return _backend(request.config, llm_config, _llm_cassette).embed(model, texts)

    comparison = settings_from_ini(request.config)
    return LLMSnapshotAssertion.of(snapshot, comparison=comparison, embed=embed)


@pytest.fixture
def fake_ollama() -> Iterator[Any]:
    """A running :class:`pytest_llm.testing.FakeOllama`; script it with ``.script(...)``."""
    from .testing import FakeOllama

    with FakeOllama() as server:
        yield server


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item_config = item.stash.get(ITEM_CONFIG_KEY, None)
    if item_config is not None:  # the run report says which host served the test
        report.llm_host = item_config.host  # type: ignore[attr-defined]
        hosts = item.config.stash[POOL_KEY].hosts
        if hosts is not None:  # a host pool: the host that answered, the calls it moved
            served, moves = hosts.served(item.nodeid, forget=report.when == "teardown")
            report.llm_host = served or item_config.host  # type: ignore[attr-defined]
            report.llm_moved = moves  # type: ignore[attr-defined]
    if report.when == "call":
        item.stash[CALL_PASSED_KEY] = report.passed
    excinfo = call.excinfo
    if excinfo is not None and report.failed and excinfo.errisinstance(INFRASTRUCTURE_ERRORS):
        item.stash[INFRASTRUCTURE_FAULT_KEY] = True  # its cassette keeps what is on disk
    if excinfo is not None and report.failed and excinfo.errisinstance(TEST_ERRORS):
        report.llm_infrastructure = True  # type: ignore[attr-defined]
        report.llm_error = error_info(excinfo.value)  # type: ignore[attr-defined]
        if excinfo.errisinstance(INFRASTRUCTURE_ERRORS) and not item.config.getoption("fulltrace"):
            report.longrepr = _one_line(item, excinfo)
    return report


_UNFINISHED_KEY = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, specname="pytest_runtest_makereport")
def pytest_runtest_makereport_ladder_and_flags(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing rung of the ladder is ``rung-failed``; a quality shortfall under
    ``on_low_quality="flag"`` is a flagged pass (``pytest_llm.ladder``, ``flag_reason``)."""
    report = yield
    if report.when != "call" or not report.failed or call.excinfo is None:
        return report
    if getattr(report, "llm_infrastructure", False):
        return report  # infrastructure errors are never flagged or forgiven
    config = item.stash.get(ITEM_CONFIG_KEY, None)
    reason = flag_reason(call.excinfo.value, config)
    if reason is not None:
        report.outcome = "passed"
        report.longrepr = None
        report.llm_flagged = reason  # type: ignore[attr-defined]
        item.user_properties.append(("llm_flagged", reason))  # the teardown report's (JUnit)
        return report
    callspec = getattr(item, "callspec", None)
    model = callspec.params.get(RUNG_FIXTURE) if callspec is not None else None
    if model is not None and not item.config.stash[LADDER_KEY].options.counts(model):
        report.llm_rung_failed = True  # type: ignore[attr-defined]
    return report


@pytest.hookimpl(wrapper=True, specname="pytest_runtest_makereport")
def pytest_runtest_makereport_keeps_snapshots(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A test of ``llm_snapshot`` that did not pass, or any test that ended in an
    infrastructure error, keeps its snapshots (``pytest_llm.snapshot.keep_snapshots``)."""
    report = yield
    if report.failed and (
        "llm_snapshot" in getattr(item, "fixturenames", ())
        or (call.excinfo is not None and call.excinfo.errisinstance(INFRASTRUCTURE_ERRORS))
    ):
        item.stash[_UNFINISHED_KEY] = True
    if report.when == "teardown" and item.stash.get(_UNFINISHED_KEY, False):
        from .snapshot import keep_snapshots

        keep_snapshots(item)  # syrupy has seen the setup and call reports by now
    return report


@pytest.hookimpl(wrapper=True, specname="pytest_runtest_makereport")
def pytest_runtest_makereport_shows_calls(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A test that used ``llm`` and failed or errored shows its model calls (``llm calls``,
    beside captured output); they are dropped with the teardown report."""
    report = yield
    results = item.stash.get(RESULTS_KEY, None)
    if case_report(item, report):  # a dataset's case: its own calls only (dataset_hooks)
        return report
    if results and report.failed:
        report.sections.append((SECTION, transcript(results)))
    if report.when == "teardown" and results is not None:
        del item.stash[RESULTS_KEY]
    return report


def pytest_report_teststatus(report: pytest.TestReport) -> tuple[str, str, str] | None:
    """Infrastructure faults and broken checks during the call count as errors (E), not
    failures."""
    if report.when == "call" and getattr(report, "llm_infrastructure", False):
        return "error", "E", "ERROR"
    if report.when == "call" and getattr(report, "llm_rung_failed", False):
        return "rung-failed", "r", "RUNG FAILED"  # the llm ladder section says which passed
    if report.when == "call" and getattr(report, "llm_flagged", None):
        return "flagged", "f", "FLAGGED"
    return None


# --- plain helpers ----------------------------------------------------------------------------


def _add_cassette_and_snapshot_options(parser: pytest.Parser, group: Any) -> None:
    modes = ", ".join(MODES)
    help_mode = f"replay/record model answers in cassettes: {modes} (default: off)"
    group.addoption("--llm-record-mode", dest="llm_record_mode", help=help_mode)
    parser.addini("llm_record_mode", help_mode, default=None)
    help_dir = "directory of cassettes (default: cassettes/ next to each test module)"
    group.addoption("--llm-cassette-dir", dest="llm_cassette_dir", help=help_dir)
    group.addoption(
        "--llm-prune",
        dest="llm_prune",
        action="store_true",
        help="delete cassette recordings and files that no test of the run used "
        "(after a run of the whole suite without failures)",
    )
    parser.addini("llm_cassette_dir", help_dir + "; relative to the ini file")
    parser.addini(
        "llm_snapshot_mode", "llm_snapshot comparison: exact, lexical, embedding or structure"
    )
    parser.addini(
        "llm_snapshot_threshold",
        "llm_snapshot similarity threshold (default 0.9)",
        type=_ini_type(float),
        default=None,
    )
    parser.addini(
        "llm_snapshot_embedding_model", "model of llm_snapshot embeddings (nomic-embed-text)"
    )


def _backend(
    config: pytest.Config, c: HarnessConfig, cassette: Cassette | None, test: str | None = None
) -> Backend:
    """The session's backend for ``c`` (the host pool's for ``test``), through the test's
    cassette when one is in use."""
    backend = config.stash[POOL_KEY].for_config(c, test=test)
    return backend if cassette is None else cassette.wrap(backend)


_PYTEST_VERSION = tuple(int(p) for p in pytest.__version__.split(".")[:2] if p.isdigit())


def _ini_type(convert: type) -> Any:
    """The ``addini`` type of a setting whose values ``convert`` (``str``, ``int``, ``float``).

    pytest 9's native TOML configuration (``[tool.pytest]``) hands over typed values and
    checks them against this type, so a number must be declared one. pytest >= 9.2 takes
    ``float | str``: a TOML number, or a string (the classic ini form) that :func:`coerce`
    converts with an error naming the setting; pytest 8.4 to 9.1 take ``"float"``/``"int"``;
    older ones (which have no native TOML) strings only.
    """
    if convert is str:
        return None
    if _PYTEST_VERSION >= (9, 2):
        return convert | str
    return convert.__name__ if _PYTEST_VERSION >= (8, 4) else None


def _base_settings(config: pytest.Config) -> dict[str, Any]:
    """Settings before markers: option > ini > environment (defaults live in HarnessConfig)."""
    settings: dict[str, Any] = from_environment()
    for name, (suffix, _) in OPTION_FIELDS.items():
        try:
            ini = config.getini(f"llm_{suffix}")
        except (pytest.UsageError, TypeError, ValueError) as exc:  # pytest's own type check
            raise ConfigError(f"ini llm_{suffix} is invalid: {exc}") from None
        if ini not in (None, ""):
            settings[name] = coerce(name, ini, f"ini llm_{suffix}")
        option = config.getoption(f"llm_{suffix}")
        if option is not None:
            settings[name] = coerce(name, option, f"--llm-{suffix.replace('_', '-')}")
    return settings


def _live_log(config: pytest.Config) -> LiveLog:
    """``--llm-live``'s printer, on the terminal (past output capture); xdist workers print
    nowhere, so ``-n`` is refused."""
    if worker_id(config) is None and (getattr(config.option, "numprocesses", None) or 0):
        raise pytest.UsageError(
            "--llm-live prints from the process that runs the tests, which -n moves to "
            "workers whose output is not shown: run without -n (or with -p no:xdist)"
        )

    def write(line: str) -> None:  # as pytest's live logging does, past the capture
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            return
        if capture is None:
            reporter.write_line(line)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)

    return LiveLog(write)


def _recorder(config: pytest.Config) -> Recorder:
    """The run report's collector, for this process (a worker, the controller, or both)."""
    dist = config.getoption("dist", None) if config.pluginmanager.hasplugin("xdist") else None
    hosts: tuple[str, ...] = config.stash[HOSTS_KEY]
    return Recorder(
        options=ReportOptions.from_config(config),
        settings=resolve(base=config.stash[SETTINGS_KEY]),
        hosts=hosts,
        pool=config.stash[POOL_KEY],
        worker_id=worker_id(config),
        dist=None if dist in (None, "no") else str(dist),
    )


def _item_config(item: pytest.Item) -> HarnessConfig:
    markers = list(item.iter_markers("llm"))
    for marker in markers:
        if marker.args:
            raise ConfigError(
                f"@pytest.mark.llm takes keyword arguments only, got {marker.args!r}; "
                "write e.g. @pytest.mark.llm(model='llama3.2')"
            )
    ladder_of(item, item.config.stash[LADDER_KEY].options)  # a bad models= is an error too
    settings = call_settings(m.kwargs for m in markers)
    return resolve(base=item.config.stash[SETTINGS_KEY], markers=settings)


def _model_size(config: pytest.Config, model: str) -> tuple[str, str] | None:
    """What the session's server says of ``model``'s size (Ollama's ``/api/show``)."""
    backend = config.stash[POOL_KEY].for_config(resolve(base=config.stash[SETTINGS_KEY]))
    size = getattr(backend, "size", None)
    return size(model) if size is not None else None


def _add_ladder_options(parser: pytest.Parser, group: Any) -> None:
    help_models = "the model ladder: run every llm test once per model, smallest first"
    group.addoption("--llm-models", dest="llm_models", metavar="A,B,C", help=help_models)
    parser.addini("llm_models", help_models + " (comma-separated)", default=None)
    group.addoption(
        "--llm-ladder-require",
        dest="llm_ladder_require",
        metavar="MODEL",
        help="the ladder's MODEL must pass every test (its failing rungs fail the run)",
    )
    group.addoption(
        "--llm-ladder-order",
        dest="llm_ladder_order",
        metavar="ORDER",
        help="given (default) or size: smallest first by the server's parameter size "
        "(Ollama /api/show), quantisation breaking ties",
    )
    group.addoption(
        "--llm-baseline-optional",
        dest="llm_baseline_optional",
        action="store_true",
        help="baseline gate: a missing --llm-baseline file compares nothing (first run, an "
        "expired CI artifact) instead of being an error",
    )
    group.addoption(
        "--llm-max-token-factor",
        dest="llm_max_token_factor",
        metavar="FACTOR",
        help="baseline gate: allowed growth of a model's output tokens per call (default: any)",
    )
    group.addoption(
        "--llm-fail-on-new-flags",
        dest="llm_fail_on_new_flags",
        action="store_true",
        help="baseline gate: a test that passed in the baseline and is flagged now fails it",
    )
    group.addoption(
        "--llm-ladder-strict",
        dest="llm_ladder_strict",
        action="store_true",
        help="every failing rung of the ladder fails the run, as in a plain run",
    )


def _one_line(item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    """``ModelNotFound: ... run `ollama pull x` (test_file.py:12)`` — no library traceback."""
    path = getattr(item, "path", None)
    entry = next((e for e in reversed(excinfo.traceback) if e.path == path), None)
    where = f"{item.location[0]}:{entry.lineno + 1}" if entry is not None else item.nodeid
    return f"{excinfo.type.__name__}: {excinfo.value} ({where})"
