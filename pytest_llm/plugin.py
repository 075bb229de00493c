"""The pytest entry point (``pytest11: llm``): options, markers, fixtures, reporting.

Each hook is a few lines that hand over to plain objects; ``ollama``, ``httpx``
and ``jsonschema`` load only when a test first calls a model.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from . import properties
from .backends import Backend
from .cassettes import MODES, Cassette, CassetteBackend, CassetteSummary
from .cassettes import PROPERTY as CASSETTE_PROPERTY
from .config import (
    OPTION_FIELDS,
    HarnessConfig,
    config_field_names,
    public_host,
)
from .errors import BackendError, CassetteError, CheckError, ConfigError, JudgeError
from .flags import flag_reason
from .health import add_ini as add_health_ini
from .health import check_reachable, refuses_connections
from .junit import JUnitErrors
from .ladder import LADDER_KEYS, LADDERED, call_settings, ladder_of, rung_of
from .ladder import PROPERTY as LADDER_PROPERTY
from .report import error_info, selects_part
from .session import SESSION_KEY, LLMSession, session_of
from .transcript import SECTION, LiveLog, transcript
from .xdist import XdistHooks, worker_id

if TYPE_CHECKING:  # imported where used: a suite that never uses llm never loads them
    from .harness import Harness
    from .observer import TestObserver

#: The item's ``llm_proxy`` (a ``pytest_llm.LLMProxy``), whose fault is the test's error.
PROXY_KEY = pytest.StashKey[Any]()

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
    add_health_ini(parser)  # llm_check_host
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
        session = LLMSession.start(config)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(session.recorder, "llm-report")
    worker = worker_id(config) is not None
    cassettes = CassetteSummary(session.cassettes, filtered=selects_part(config), worker=worker)
    config.pluginmanager.register(cassettes, "llm-cassettes")
    config.pluginmanager.register(session.ladder, "llm-ladder")
    config.pluginmanager.register(JUnitErrors(config), "llm-junit")  # <error>, not <failure>
    if not worker:  # the llm datasets section, from the reports (the workers' too)
        from .dataset_hooks import DatasetSummary

        config.pluginmanager.register(DatasetSummary(), "llm-datasets")
    if config.getoption("llm_live"):
        session.live = _live_log(config)
    if config.pluginmanager.hasplugin("html") and config.getoption("htmlpath", None) and not worker:
        from .html_extras import PytestHtmlHooks  # pytest-html's hooks exist only with it

        config.pluginmanager.register(PytestHtmlHooks(), "llm-pytest-html")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(session.recorder, cassettes), "llm-xdist")


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.close()


def pytest_report_header(config: pytest.Config) -> str:
    session = session_of(config)
    c = session.config_for()
    mode = session.cassettes.mode
    cassettes = "" if mode == "off" else f" record_mode={mode}"
    hosts = session.hosts  # a pool is spread over xdist workers
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
    """The model ladder: a test that uses ``llm`` or ``llm_proxy`` runs once per model
    (``pytest_llm.ladder``), that fixture parametrized with the rung's model."""
    laddered = next((name for name in LADDERED if name in metafunc.fixturenames), None)
    if laddered is None:
        return
    try:
        ladder = session_of(metafunc.config).ladder
        models = ladder_of(metafunc.definition, ladder.options)
    except ConfigError:
        return  # pytest_pycollect_makeitem makes it the test's collection error
    if models:
        models = ladder.ordered(models)
        metafunc.parametrize(laddered, models, ids=list(models), indirect=True)


@pytest.fixture
def llm_config(request: pytest.FixtureRequest) -> HarnessConfig:
    """The resolved ``HarnessConfig`` for this test (marker > option > ini > env > default)."""
    return _TestParts.of(request).config


class _TestParts:
    """What ``llm``, ``llm_proxy``, ``llm_snapshot`` and ``llm_config`` share in one test:
    its config, its observer (what it saw goes into the test's report) and its cassette.

    The first of those fixtures to be set up makes them (:meth:`of`); they are finished
    after the last one is torn down: the observer's properties are added to the test's
    report, then the cassette is written and dropped. The reports' hooks read the rest
    (:func:`parts_of`): the config (the host that served the test), the observer until
    the teardown report (the ``llm calls`` section), what the call's outcome says of the
    cassette. One object rather than a fixture, or a stash entry, each: a replayed test
    sets up one fixture, not five, and its item holds one entry for the whole session.
    """

    __slots__ = (
        "call_passed", "cassette", "config", "finished", "infrastructure_fault", "observer",
        "rung",
    )  # fmt: skip

    def __init__(self, request: pytest.FixtureRequest) -> None:
        node, config = request.node, _item_config(request.node)
        session = session_of(request.config)
        self.rung = rung_of(node)  # the ladder's model for this item
        if self.rung is not None:
            config = config.replace(model=self.rung)
            ladder = session.ladder.ordered(ladder_of(node, session.ladder.options))
            rung = {"test": node.nodeid.rsplit("[", 1)[0], "model": self.rung}
            rung |= {"ladder": list(ladder), "size": session.ladder.sizes.get(self.rung)}
            node.user_properties.append((LADDER_PROPERTY, json.dumps(rung)))
        session.timeout_guard.check(node, config)
        self.config = config
        self.observer: TestObserver | None = _observer(request, config)
        settings = session.cassettes
        self.cassette = None if settings.mode == "off" else settings.cassette_for(node)
        self.call_passed = False  # its cassette's unused recordings are known only then
        self.infrastructure_fault = False  # its cassette keeps what is on disk then
        self.finished = False

    @property
    def watching(self) -> TestObserver:
        """The observer, for a fixture being set up (it is let go at the teardown report)."""
        if self.observer is None:
            raise RuntimeError("the test's observer was asked for after its teardown report")
        return self.observer

    @classmethod
    def of(cls, request: pytest.FixtureRequest) -> _TestParts:
        """This test's parts, made (and their finish planned) by the first fixture asking."""
        node = request.node
        parts = parts_of(node)
        if parts is None or parts.finished:  # a rerun (pytest-rerunfailures) makes its own
            made = parts = cls(request)
            node.stash[_PARTS_KEY] = made
            # runs after the asking fixture's own teardown: the last of them to end
            request.addfinalizer(lambda: made._finish(node))
        return parts

    def _finish(self, node: pytest.Item) -> None:
        self.finished = True
        # before the teardown report is made, so it (and JUnit XML, xdist) carry them
        if self.observer is not None:
            node.user_properties.extend(self.observer.properties())
        cassette, self.cassette = self.cassette, None
        if cassette is None:
            return
        cassette.save(keep=self.infrastructure_fault, complete=self.call_passed)
        events = {
            "rerecorded": cassette.rerecorded,
            "unused": cassette.unused,
            "pruned": cassette.pruned,
        }
        if any(events.values()):  # the run's llm cassettes section lists them
            text = json.dumps({k: v for k, v in events.items() if v}, sort_keys=True)
            node.user_properties.append((CASSETTE_PROPERTY, text))


_PARTS_KEY = pytest.StashKey[_TestParts]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Once a test's reports are all made (reruns included), its parts leave the item,
    which pytest keeps to the end of the session."""
    try:
        return (yield)
    finally:
        if _PARTS_KEY in item.stash:
            del item.stash[_PARTS_KEY]


def parts_of(item: pytest.Item) -> _TestParts | None:
    """The parts of a test that used ``llm`` (or ``llm_proxy``, ...), else ``None``."""
    return item.stash.get(_PARTS_KEY, None)


def item_config(item: pytest.Item) -> HarnessConfig | None:
    """The settings a test's ``llm`` (or ``llm_config``, ...) resolved, if it used one."""
    parts = parts_of(item)
    return None if parts is None else parts.config


def _observer(request: pytest.FixtureRequest, config: HarnessConfig) -> TestObserver:
    """This test's :class:`~pytest_llm.observer.TestObserver`, shared by ``llm`` and
    ``llm_proxy``."""
    node = request.node
    live = session_of(request.config).live
    from .dataset_hooks import report_cases, select_cases
    from .observer import PROPERTIES, TestObserver

    observer = TestObserver(
        live=None if live is None else lambda n, result: live(node.nodeid, n, result),
        dataset=lambda outcome: report_cases(request, outcome, config.on_low_quality),
        select=lambda cases: select_cases(request.config, cases),
    )
    # a rerun (pytest-rerunfailures) reports its own calls only
    node.user_properties[:] = [p for p in node.user_properties if p[0] not in PROPERTIES]
    return observer


@pytest.fixture
def llm(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """A ``Harness`` configured for this test; its calls are recorded in the test report."""
    from .harness import Harness
    from .sampling import ignored_settings
    from .scoring import activated

    parts = _TestParts.of(request)
    config, observer, cassette = parts.config, parts.watching, parts.cassette
    session = session_of(request.config)
    check_reachable(request, config, session.pool, session.cassettes.mode)  # down: setup error
    harness = Harness(
        config,
        backend=lambda c: _backend(request.config, c, cassette, request.node.nodeid),
        observer=observer,
        # with a cassette the cache is the test's own, so that its cassette holds every vector
        embeddings=None if cassette is not None else session.embeddings,
    )
    with activated(harness):  # where assert_score, assert_similar and judge() find it
        yield harness
    ignored = ignored_settings(config, called=observer.called, sampled=bool(observer.samples))
    if ignored is not None:
        raise ConfigError(ignored)


@pytest.fixture
def llm_judge(llm: Harness) -> Harness:
    """A ``Harness`` for the judge model (``judge_model``) on the test's servers; its calls
    are recorded with the test's. ``pytest_llm.scorers.judge(rubric, harness=llm_judge)``."""
    return llm.for_judge()


@pytest.fixture
def llm_snapshot(snapshot: Any, request: pytest.FixtureRequest) -> Any:
    """syrupy's ``snapshot`` with pytest-llm's extension: ``assert result == llm_snapshot``."""
    from .snapshot import LLMSnapshotAssertion, settings_from_ini

    parts = _TestParts.of(request)

    def embed(model: str, texts: Sequence[str]) -> list[list[float]]:
        return _backend(request.config, parts.config, parts.cassette).embed(model, texts)

    comparison = settings_from_ini(request.config)
    return LLMSnapshotAssertion.of(snapshot, comparison=comparison, embed=embed)


@pytest.fixture(scope="session")
def _llm_proxy_server() -> Iterator[Any]:
    """The process's proxy server (so one per xdist worker), started when a test first
    asks for ``llm_proxy``."""
    from .proxy.server import ProxyServer

    with ProxyServer() as server:
        yield server


@pytest.fixture
def llm_proxy(request: pytest.FixtureRequest, _llm_proxy_server: Any) -> Iterator[Any]:
    """A :class:`pytest_llm.LLMProxy`: the application's own model calls (any client, any
    subprocess) reach the test's backend through it, recorded and reported as ``llm``'s."""
    from .proxy import LLMProxy

    parts = _TestParts.of(request)
    session = session_of(request.config)
    check_reachable(request, parts.config, session.pool, session.cassettes.mode)  # down: error
    # before the environment
    backend = _backend(request.config, parts.config, parts.cassette, request.node.nodeid)
    proxy = LLMProxy(
        url=_llm_proxy_server.url,
        backend=backend,
        config=parts.config,
        test=request.node.nodeid,
        on_result=parts.watching.on_result,
    )
    if parts.rung is not None:  # on the ladder, the rung's model answers whatever is asked
        proxy.models.setdefault("*", parts.rung)
    request.node.stash[PROXY_KEY] = proxy  # its fault is the test's error (pytest_runtest_call)
    with _llm_proxy_server.serving(proxy), proxy.environment():
        yield proxy


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """A proxied call's infrastructure error (a cassette miss, a server down) is the test's
    error, whatever the application made of the error answer it got."""
    try:
        return (yield)
    finally:
        proxy = item.stash.get(PROXY_KEY, None)
        if proxy is not None and proxy.fault is not None:
            raise proxy.fault


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
    parts = parts_of(item)
    if parts is not None:  # the run report says which host served the test
        report.llm_host = parts.config.host  # type: ignore[attr-defined]
        hosts = session_of(item.config).pool.hosts
        if hosts is not None:  # a host pool: the host that answered, the calls it moved
            served, moves = hosts.served(item.nodeid, forget=report.when == "teardown")
            report.llm_host = served or parts.config.host  # type: ignore[attr-defined]
            report.llm_moved = moves  # type: ignore[attr-defined]
        if report.when == "call":
            parts.call_passed = report.passed
    excinfo = call.excinfo
    if excinfo is None or not report.failed:
        return report
    if parts is not None and excinfo.errisinstance(INFRASTRUCTURE_ERRORS):
        parts.infrastructure_fault = True  # its cassette keeps what is on disk
    if excinfo.errisinstance(TEST_ERRORS):
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
    reason = flag_reason(call.excinfo.value, item_config(item))
    if reason is not None:
        report.outcome = "passed"
        report.longrepr = None
        report.llm_flagged = reason  # type: ignore[attr-defined]
        item.user_properties.append((properties.FLAGGED, reason))  # the teardown report's
        return report
    model = rung_of(item)
    if model is not None and not session_of(item.config).ladder.options.counts(model):
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
    parts = parts_of(item)
    observer = None if parts is None else parts.observer
    from .dataset_hooks import case_report

    if case_report(item, report):  # a dataset's case: its own calls only (dataset_hooks)
        return report
    if observer is not None and observer.results and report.failed:
        report.sections.append((SECTION, transcript(observer.results)))
    if report.when == "teardown" and parts is not None:
        parts.observer = None  # what it saw is in the report: the item is kept to the end
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
    cassette when one is in use; then it is made only when a call goes to the server."""
    pool = session_of(config).pool
    if cassette is None:
        return pool.for_config(c, test=test)
    return CassetteBackend(
        lambda: pool.for_config(c, test=test),
        cassette,
        name=c.backend,
        host=c.host,
        refused=lambda: refuses_connections(config, c, pool),
    )


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


def _item_config(item: pytest.Item) -> HarnessConfig:
    markers = list(item.iter_markers("llm"))
    for marker in markers:
        if marker.args:
            raise ConfigError(
                f"@pytest.mark.llm takes keyword arguments only, got {marker.args!r}; "
                "write e.g. @pytest.mark.llm(model='llama3.2')"
            )
    session = session_of(item.config)
    ladder_of(item, session.ladder.options)  # a bad models= is an error too
    return session.config_for(call_settings(m.kwargs for m in markers))


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
