"""JUnit XML (``--junitxml``): an infrastructure error is an ``<error>``, and the file stays
valid for the ``junit_family`` in use.

pytest's junitxml writes every failed call as ``<failure>`` and keeps ``<error>`` for
setup and teardown: it looks at nothing but ``report.when``. A call that ended in an
infrastructure error (server down, model missing, timeout after retries, a broken
``check``) is a test error for pytest-llm (``E``), so its ``<failure>`` becomes an
``<error>`` (same message and text), and the suite's counts move with it.

A server that is down before the test starts is already a setup error, for every
reporter: the ``llm`` and ``llm_proxy`` fixtures knock on it at setup
(:mod:`pytest_llm.health`). This module is for what that cannot see, a server that fails
during the call. ``report.when`` is not relabelled for it: conftest files key on it
(``item.rep_call``), and the terminal would say "ERROR at setup" for a call.

Properties: pytest's junitxml turns every ``user_properties`` entry into a
``<properties>`` element inside ``<testcase>``, whatever the family. That is valid
``xunit1`` (``legacy``), where they stay, but not ``xunit2`` (pytest's default), whose
schema allows ``<properties>`` only on ``<testsuite>``: strict validators reject the
file. Under ``xunit2`` the entries pytest-llm wrote (:data:`pytest_llm.properties.NAMES`)
are taken out of each ``<testcase>``, and the ``<testsuite>`` gets the run's figures
instead (:data:`SUITE_PROPERTIES`); each test's details are in the JSON report
(``--llm-report``), whose path is one of them.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import pytest

from . import properties
from .config import ini_path

__all__ = ["SUITE_PROPERTIES", "JUnitErrors", "JUnitXML"]

#: The ``<testsuite>`` properties written under ``xunit2`` (when a test called a model).
SUITE_PROPERTIES = (
    "llm_models",
    "llm_tests",
    "llm_calls",
    "llm_tokens_in",
    "llm_tokens_out",
    "llm_flagged",
    "llm_report",
)


class JUnitXML:
    """Keeps pytest's JUnit XML true (infrastructure errors as ``<error>``) and valid for
    its ``junit_family`` (no ``<properties>`` inside ``<testcase>`` under ``xunit2``)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._models: dict[str, None] = {}
        self._tests = 0
        self._calls = 0
        self._tokens_in: int | None = 0
        self._tokens_out = 0
        self._flagged = 0

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> Generator[None, None, None]:
        reporter = self._open_reporter(report) if report.when == "teardown" else None
        yield  # junitxml has written the report by now
        if report.when == "call" and getattr(report, "llm_infrastructure", False):
            self.as_error(report)
        elif reporter is not None:
            self.out_of_testcase(report, reporter)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Before junitxml writes the file: the run's figures as ``<testsuite>`` properties."""
        xml = self._xml()
        if xml is None or xml.family != "xunit2" or not self._tests:
            return
        figures: dict[str, Any] = {
            "llm_models": ",".join(self._models),
            "llm_tests": self._tests,
            "llm_calls": self._calls,
            "llm_tokens_in": "unknown" if self._tokens_in is None else self._tokens_in,
            "llm_tokens_out": self._tokens_out,
            "llm_flagged": self._flagged,
        }
        report = self.config.getoption("llm_report", None) or ini_path(self.config, "llm_report")
        if report:
            figures["llm_report"] = str(report)
        for name in SUITE_PROPERTIES:
            if name in figures:
                xml.add_global_property(name, str(figures[name]))

    def as_error(self, report: pytest.TestReport) -> None:
        xml = self._xml()
        if xml is None:  # no --junitxml (or an xdist worker: the controller writes it)
            return
        nodes = getattr(xml.node_reporter(report), "nodes", [])
        for node in reversed(nodes):
            if node.tag == "failure":
                node.tag = "error"
                xml.stats["failure"] -= 1
                xml.stats["error"] += 1
                return

    def _open_reporter(self, report: pytest.TestReport) -> Any:
        """Under ``xunit2``, the ``<testcase>`` junitxml is about to finish for ``report``."""
        xml = self._xml()
        if xml is None or xml.family != "xunit2":
            return None
        key = (getattr(report, "id", report.nodeid), getattr(report, "node", None))
        return getattr(xml, "node_reporters", {}).get(key)

    def out_of_testcase(self, report: pytest.TestReport, reporter: Any) -> None:
        """Under ``xunit2``: take pytest-llm's entries out of the test's finished
        ``<testcase>`` (junitxml copied them there from the teardown report) and count them
        for the ``<testsuite>``."""
        ours = [(n, v) for n, v in report.user_properties if n in properties.NAMES]
        if not ours:
            return
        testcase = reporter.to_xml()  # the element junitxml finished (and will write)
        for group in testcase.findall("properties"):
            for prop in group.findall("property"):
                if prop.get("name") in properties.NAMES:
                    group.remove(prop)
            if len(group) == 0:
                testcase.remove(group)
        if str(report.outcome) == "rerun":
            return  # the run that counts is the last one
        self._count(ours)

    def _count(self, entries: list[tuple[str, object]]) -> None:
        for name, value in entries:
            if name == properties.CALLS:
                calls = json.loads(str(value))
                self._calls += len(calls)
                for call in calls:
                    self._models[str(call["model"])] = None
                    tokens = call.get("total_tokens_in", call.get("tokens_in"))
                    self._tokens_in = (
                        None if tokens is None or self._tokens_in is None
                        else self._tokens_in + int(tokens)
                    )  # fmt: skip
                    self._tokens_out += int(call.get("total_tokens_out", call.get("tokens_out", 0)))
            elif name == properties.FLAGGED:
                self._flagged += 1
        self._tests += 1

    def _xml(self) -> Any:
        try:
            from _pytest.junitxml import xml_key
        except ImportError:  # pragma: no cover - another pytest: leave its file as it is
            return None
        return self.config.stash.get(xml_key, None)


JUnitErrors = JUnitXML
"""The earlier name (``pytest_llm.plugin`` registers it)."""
