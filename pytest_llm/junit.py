"""JUnit XML (``--junitxml``) writes an infrastructure error as ``<error>``, as the terminal
and the JSON report name it.

pytest's junitxml writes every failed call as ``<failure>`` and keeps ``<error>`` for
setup and teardown: it looks at nothing but ``report.when``. A call that ended in an
infrastructure error (server down, model missing, timeout after retries, a broken
``check``) is a test error for pytest-llm (``E``), so its ``<failure>`` becomes an
``<error>`` (same message and text), and the suite's counts move with it.

Why not check the server in the ``llm`` fixture's setup, where every reporter (pytest-html,
pytest-sugar too) would see an error? A test may call another host than the configured one
(``llm.chat(..., host=fake_ollama.url)``), or start its server in a fixture set up after
``llm``: a check there would fail tests that work, and it would still miss a fault during
the call. Nor is ``report.when`` relabelled: conftest files key on it (``item.rep_call``),
and the terminal would say "ERROR at setup" for a call.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

__all__ = ["JUnitErrors"]


class JUnitErrors:
    """Turns the ``<failure>`` junitxml wrote for an infrastructure error into ``<error>``."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> Generator[None, None, None]:
        yield  # junitxml has written the report by now
        if report.when == "call" and getattr(report, "llm_infrastructure", False):
            self.as_error(report)

    def as_error(self, report: pytest.TestReport) -> None:
        try:
            from _pytest.junitxml import xml_key
        except ImportError:  # pragma: no cover - another pytest: leave its file as it is
            return
        xml = self.config.stash.get(xml_key, None)
        if xml is None:  # no --junitxml (or an xdist worker: the controller writes it)
            return
        nodes = getattr(xml.node_reporter(report), "nodes", [])
        for node in reversed(nodes):
            if node.tag == "failure":
                node.tag = "error"
                xml.stats["failure"] -= 1
                xml.stats["error"] += 1
                return
