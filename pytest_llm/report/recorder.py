"""The :class:`Recorder` plugin object: collects the test records and, on the controller,
summarises and writes the reports.

Memory does not grow with the tests beyond a few bytes each: a test's record lives
while its reports arrive; when the test ends (``pytest_runtest_logfinish``) it is counted
in the run's figures (:class:`~.figures.RunFigures`) and written to disk
(:class:`~.stream.SpooledTests`), and the report's own ``user_properties`` entries are
taken off the test's item and, once every plugin has seen it, off its teardown report
(pytest's terminal reporter keeps every report to the end)."""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .._files import write_text_atomic
from ..backends import BackendPool
from ..config import HarnessConfig, public_host
from .document import Report
from .figures import RunFigures, down_host, report_document, versions
from .options import ReportOptions
from .records import REPORTED, TestRecord, split_group
from .stream import SpooledTests, write_report

if TYPE_CHECKING:
    from ..baseline import Comparison
    from ..ladder import LadderSession

__all__ = ["Recorder", "item_settings", "xdist_group"]


class Recorder:
    """Collects the test records and, on the controller, summarises and writes.

    An xdist worker keeps no test records (the controller builds them from the same
    reports): it only notes which models answered live on which server, a set that does
    not grow with the number of tests, to ask for their digests at the end.
    """

    def __init__(
        self,
        *,
        options: ReportOptions,
        settings: HarnessConfig,
        hosts: Sequence[str],
        pool: BackendPool,
        worker_id: str | None,
        dist: str | None,
    ) -> None:
        self.options = options
        self.settings = settings
        self.hosts = [public_host(h) for h in hosts]
        self.pool = pool
        self.worker_id = worker_id
        self.dist = dist
        self.baseline: dict[str, Any] | None = None
        #: Why the gate compared nothing although --llm-baseline was given (optional, missing).
        self.no_baseline: str | None = None
        if options.baseline and not worker_id:
            if options.baseline_optional and not options.baseline.exists():
                self.no_baseline = (
                    f"baseline gate: no baseline at {options.baseline} "
                    "(--llm-baseline-optional): compared nothing"
                )
            else:
                from ..baseline import load_report  # the gate's parts load when asked for

                self.baseline = load_report(options.baseline)
        #: The tests whose reports are still arriving (each leaves when it ends).
        self.records: dict[str, TestRecord] = {}
        #: The tests that ended, as the report holds them: on disk, beside the report; kept
        #: only for what reads them back (the report files, the step summary, the gate).
        self.tests = SpooledTests(options.report.parent if options.report else None)
        self._keeps_tests = self._wants_files() or bool(options.step_summary or self.baseline)
        #: The run's figures over ``tests``, kept as each test ends.
        self.figures = RunFigures()
        self.workers: list[dict[str, Any]] = []  # the workers' workeroutput (pytest_llm.xdist)
        self.live_models: dict[str, set[str]] = {}  # host -> models that answered live there
        self.down: set[str] = set()
        self.doc: Report | None = None
        self.comparison: Comparison | None = None
        self.problems: list[str] = []
        #: The model ladder of the run (set by the plugin): the report's ``ladder`` part.
        self.ladder: LadderSession | None = None
        self._started = time.perf_counter()

    # hooks ------------------------------------------------------------------------------

    def pytest_sessionstart(self) -> None:
        self._started = time.perf_counter()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """What a test's record needs from the item, on the report (it travels to the
        xdist controller): its ``xdist_group`` marker, and the model its ``llm`` was set to
        (for a test that fails before any answer)."""
        report = yield
        group = xdist_group(item)
        if group is not None:
            report.llm_group = group  # type: ignore[attr-defined]
        settings = item_settings(item)
        if settings is not None:
            report.llm_model = settings.model  # type: ignore[attr-defined]
        if report.when == "teardown" and any(n in REPORTED for n, _ in item.user_properties):
            # the report has its own copy; the item (kept to the end) needs them no more
            item.user_properties[:] = [p for p in item.user_properties if p[0] not in REPORTED]
        return report

    @pytest.hookimpl(wrapper=True, tryfirst=True, specname="pytest_runtest_logreport")
    def pytest_runtest_logreport_then_slim(
        self, report: pytest.TestReport
    ) -> Generator[None, None, None]:
        """Once every plugin has seen a teardown report (this wrapper is the outermost:
        JUnit XML has copied its properties, pytest-html built its row, an xdist worker
        sent it, this recorder folded it in), it keeps no calls, scores, samples or
        datasets: pytest's terminal reporter holds every report until the end. The list
        is replaced, not emptied, so a plugin that kept it keeps what it saw."""
        yield
        if report.when == "teardown" and any(n in REPORTED for n, _ in report.user_properties):
            report.user_properties = [p for p in report.user_properties if p[0] not in REPORTED]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if getattr(report, "llm_case", None) is not None:
            return  # a dataset's case (a subtest): in its test's "datasets" part
        if self.worker_id is not None:  # the controller records the test from this report
            phase = TestRecord(nodeid=report.nodeid)
            phase.update(report)
            self._note_servers(phase)
            return
        nodeid, group = (
            split_group(report.nodeid) if self.dist == "loadgroup" else (report.nodeid, None)
        )
        record = self.records.get(nodeid)
        if record is None:
            record = self.records[nodeid] = TestRecord(nodeid=nodeid, group=group)
        record.update(report)

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        """The test ended, every rerun included (pytest-rerunfailures, xdist pass it on)."""
        if self.worker_id is None:
            self._end(split_group(nodeid)[0] if self.dist == "loadgroup" else nodeid)

    def _end(self, nodeid: str, *, last: bool = False) -> None:
        """Count the test in the figures, write it to disk and forget it; not while a
        rerun of it is to come (pytest-rerunfailures ends each run), unless ``last``."""
        record = self.records.get(nodeid)
        if record is None or (record.rerun_pending and not last):
            return  # a test without reports (deselected by a plugin), or to be run again
        del self.records[nodeid]
        self._note_servers(record)
        test = record.as_json()
        self.figures.add(test)
        if self._keeps_tests:
            self.tests.append(test)

    def pytest_unconfigure(self) -> None:
        self.tests.close()

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.worker_id is not None or session.config.option.collectonly:
            return  # a worker hands its host and digests over in workeroutput (pytest_llm.xdist)
        self.doc = self.finish()
        if self.baseline is not None:
            from ..baseline import compare

            self.comparison = compare(
                self.baseline, self.doc, self.options.limits, source=str(self.options.baseline)
            )
        self._write_outputs()
        failed = self.problems or (self.comparison is not None and self.comparison.failed)
        if failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        doc = self.doc
        if doc is None:
            return
        from .text import sampling_lines, summary_lines  # not loaded by a run that never ends

        if doc["totals"]["llm_tests"] or self.options.baseline:
            terminalreporter.write_sep("=", "llm summary")
            for text, color in summary_lines(doc, self.comparison, self.figures):
                terminalreporter.write_line(text, **({color: True} if color else {}))
            for problem in self.problems:
                terminalreporter.write_line(problem, red=True, bold=True)
            if self.no_baseline:
                terminalreporter.write_line(self.no_baseline, yellow=True)
        sampled = sampling_lines(self.figures)
        if sampled:
            terminalreporter.write_sep("=", "llm sampling")
            for line in sampled:
                terminalreporter.write_line(line)

    # used by pytest_llm.xdist -----------------------------------------------------------

    def worker_output(self) -> dict[str, Any]:
        """What only this worker knows (its ``workeroutput``): its hosts (a host pool's, every
        one, comma-separated: each call took the one it was given), the model digests."""
        return {
            "id": self.worker_id,
            "host": ",".join(self.hosts),
            "digests": self._digests() if self._wants_files() else {},
        }

    def add_worker(self, output: Mapping[str, Any]) -> None:
        self.workers.append(dict(output))

    # the end ----------------------------------------------------------------------------

    def finish(self) -> Report:
        """The report document of the whole run (its ``tests`` on disk)."""
        for nodeid in list(self.records):  # cut short: a crashed worker, an interrupted run
            self._end(nodeid, last=True)
        digests: dict[str, dict[str, str]] = {}
        if self.workers:
            for worker in self.workers:
                for model, by_host in worker["digests"].items():
                    digests.setdefault(model, {}).update(by_host)
        elif self._wants_files():  # this process ran the tests (their servers noted)
            digests = self._digests()
        run = {
            "wall_s": round(time.perf_counter() - self._started, 3),
            "model": self.settings.model,
            "backend": self.settings.backend,
            "seed": self.settings.seed,
            "hosts": self.hosts,
            "hosts_down": self.figures.hosts_down(),
            "workers": self.figures.workers({w["id"]: w["host"] for w in self.workers}),
            "digests": digests,
            "dist": self.dist,
            "filtered": self.options.filtered,
            "split": self.options.split,
            "versions": versions(),
        }
        ladder = self.ladder.document() if self.ladder is not None and self.ladder.rungs else None
        return report_document(self.tests, run=run, ladder=ladder, figures=self.figures)

    def _wants_files(self) -> bool:
        return self.options.report is not None or self.options.html is not None

    def _note_servers(self, record: TestRecord) -> None:
        """Which models answered live on which server; replayed calls asked no server."""
        down = down_host(record.error, record.host)
        if down is not None:
            self.down.add(down)
        if record.host:
            live = {c["model"] for c in record.calls if not c.get("cached")}
            self.live_models.setdefault(record.host, set()).update(live)

    def _digests(self) -> dict[str, dict[str, str]]:
        """Digests of the models that answered live, from the servers this process used
        (hosts that were down skipped): asked of the backend pool."""
        live = {host: sorted(models) for host, models in self.live_models.items()}
        return self.pool.digests(live, skip=sorted(self.down))

    def _write_outputs(self) -> None:
        assert self.doc is not None
        doc = self.doc

        def write_html(path: Path) -> None:
            from .html import render_html  # loaded by the runs that ask for it only

            write_text_atomic(path, render_html(doc, self.comparison))

        outputs: list[tuple[Path | None, str, Any]] = [
            (self.options.report, "--llm-report", lambda path: write_report(path, doc)),
            (self.options.html, "--llm-html", write_html),
        ]
        for path, option, write in outputs:
            if path is None:
                continue
            try:
                write(path)
            except OSError as exc:
                self.problems.append(f"pytest-llm: {option}: could not write {path}: {exc}")
        if self.options.step_summary is not None and self.doc["totals"]["llm_tests"]:
            from .markdown import markdown_summary

            try:
                with self.options.step_summary.open("a", encoding="utf-8") as handle:
                    handle.write(markdown_summary(self.doc, self.comparison))
            except OSError as exc:
                self.problems.append(
                    f"pytest-llm: GITHUB_STEP_SUMMARY: could not append to "
                    f"{self.options.step_summary}: {exc}"
                )


def xdist_group(item: pytest.Item) -> str | None:
    """The test's ``xdist_group`` marker's name (``@pytest.mark.xdist_group("db")`` or
    ``name="db"``), as pytest-xdist reads it for ``--dist loadgroup``; None without one."""
    marker = item.get_closest_marker("xdist_group")
    if marker is None:
        return None
    name = marker.args[0] if marker.args else marker.kwargs.get("name", "default")
    return str(name)


def item_settings(item: pytest.Item) -> HarnessConfig | None:
    """The settings the test's ``llm`` fixture resolved, if it used one."""
    from ..plugin import item_config  # the plugin is loaded: it registered this object

    return item_config(item)
