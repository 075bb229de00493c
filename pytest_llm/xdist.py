"""pytest-xdist support: hooks that exist only when xdist is loaded.

Per-test data needs nothing special: it travels to the controller inside the
test reports (``user_properties`` and the ``llm_*`` report attributes), and the
controller's :class:`~pytest_llm.report.Recorder` derives each worker's share of
tests, calls and model time from them. What a report cannot carry is which host the
worker was given and the digests of the models that answered it: each worker puts
those in ``workeroutput`` at the end of its session and the controller merges them in
``pytest_testnodedown``. The other way, the controller hands each worker the directory of
the host pool's slot lock files in ``workerinput`` (``pytest_configure_node``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .cassettes import CassetteSummary
from .report import Recorder

__all__ = ["SLOTS_KEY", "WORKEROUTPUT_KEY", "XdistHooks", "slot_share", "worker_id"]

#: The key of this plugin's entry in ``workeroutput``.
WORKEROUTPUT_KEY = "pytest_llm"
#: The key of the host pool's slot directory in ``workerinput`` (see :func:`slot_share`).
SLOTS_KEY = "pytest_llm_slots"


def slot_share(config: pytest.Config) -> tuple[Path | None, tuple[int, int] | None]:
    """An xdist worker's part of the run's host pool: the directory of the slot lock files
    its controller shares (``None`` without xdist) and ``(index, count)`` of the worker."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is None or workerinput.get(SLOTS_KEY) is None:
        return None, None
    number = str(workerinput["workerid"]).removeprefix("gw")
    count = int(workerinput.get("workercount", 1))
    index = int(number) if number.isdigit() else 0
    return Path(workerinput[SLOTS_KEY]), (index % count, count)


def worker_id(config: pytest.Config) -> str | None:
    """``gw0``, ``gw1`` … in an xdist worker; ``None`` on the controller or without xdist.

    Read from ``workerinput``, not from ``PYTEST_XDIST_WORKER``: that variable leaks into
    every pytest started from inside a worker (pytester, subprocesses) and would make
    those sessions believe they are workers too.
    """
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    return None if workerinput is None else str(workerinput["workerid"])


class XdistHooks:
    """Registered by the plugin only when ``config.pluginmanager.hasplugin("xdist")``."""

    def __init__(self, recorder: Recorder, cassettes: CassetteSummary) -> None:
        self.recorder = recorder
        self.cassettes = cassettes

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """On the controller: a host pool's slots are lock files in a directory every
        worker shares, so that together they never exceed a host's slots."""
        directory = self.recorder.pool.slot_dir()
        if directory is not None:
            node.workerinput[SLOTS_KEY] = str(directory)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """On the controller: the tests of the run, whose cassettes are not unused."""
        self.cassettes.collected(ids)

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput: dict[str, Any] | None = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:  # a worker: its host and digests go to the controller
            workeroutput[WORKEROUTPUT_KEY] = self.recorder.worker_output()

    @pytest.hookimpl
    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        """On the controller: merge a worker's output (absent when the worker crashed)."""
        output = getattr(node, "workeroutput", {}).get(WORKEROUTPUT_KEY)
        if output is not None:
            self.recorder.add_worker(output)
