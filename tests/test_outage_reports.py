"""A server down is an error for every reporter: the check at setup (pytest_llm.health).

Real sessions: pytest-html and pytest-sugar in subprocesses (both keep state in their
modules), the setup check against real sockets (a server that counts the connections it
takes, a FakeOllama that counts the requests it gets).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from pytest_llm.testing import FakeOllama

from .conftest import free_url


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama("fine") as server:
        yield server


class Knocks:
    """A TCP server that takes connections, counts them, and closes each after reading what
    came within 0.2 s (``received``; it speaks no HTTP)."""

    def __init__(self) -> None:
        self.count = 0
        self.received = b""
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.count += 1
            connection.settimeout(0.2)
            with connection, contextlib.suppress(OSError):  # OSError: nothing came
                self.received += connection.recv(1024)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


@pytest.fixture
def knocks() -> Iterator[Knocks]:
    server = Knocks()
    yield server
    server.close()


OUTAGES = """
import pytest
from pytest_llm.testing import FakeOllama

DYING = FakeOllama("fine").start()

@pytest.mark.llm(host={down!r})
def test_server_down(llm):
    llm.chat("hi")

@pytest.mark.llm(host=DYING.url)
def test_server_dies_during_the_test(llm):
    DYING.stop()  # up at setup, gone at the call
    llm.chat("hi")

def test_wrong_answer(llm):
    assert llm.chat("hi").content == "something else"

def test_fine(llm):
    assert llm.chat("hi").content == "fine"
"""


def html_counts(html: str) -> dict[str, int]:
    """pytest-html's summary: ``<span class="failed">2 Failed,</span>`` → ``{"failed": 2}``."""
    return {k: int(v) for k, v in re.findall(r'<span class="(\w+)">(\d+) [A-Z]', html)}


def test_pytest_html_counts_a_server_down_as_an_error(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(test_faults=OUTAGES.format(down=free_url()))
    html, junit = pytester.path / "report.html", pytester.path / "junit.xml"
    started = time.monotonic()
    result = pytester.runpytest_subprocess(
        f"--llm-host={fake.url}", "--llm-retries=0", "-p", "no:cacheprovider", "-p", "no:xdist",
        f"--html={html}", "--self-contained-html", f"--junitxml={junit}",
    )  # fmt: skip
    assert time.monotonic() - started < 60
    result.assert_outcomes(passed=1, failed=1, errors=2)  # the terminal
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_server_down*",
            "BackendUnreachable: Ollama is not reachable at *",
            "*ERROR at call of test_server_dies_during_the_test*",
        ]
    )

    # pytest-html tells an error by its phase: the server down at setup is one; the server
    # that died during the call is a failure there (its message is the same one-line error)
    counts = html_counts(html.read_text(encoding="utf-8"))
    assert (counts["passed"], counts["failed"], counts["error"]) == (1, 2, 1)
    assert "test_faults.py::test_server_down::setup" in html.read_text(encoding="utf-8")

    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("errors"), suite.get("failures")) == ("2", "1")

    chats = [r for r in fake.requests if r.path == "/api/chat"]
    assert len(chats) == 2  # one per test whose server is up at the call


def sugar_counts(output: str) -> dict[str, int]:
    """pytest-sugar's ``Results`` block: ``   1 passed`` → ``{"passed": 1}``."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", output)
    block = plain.split("Results (", 1)[1]
    return {k: int(v) for v, k in re.findall(r"^\s+(\d+) (\w+)$", block, re.MULTILINE)}


def test_pytest_sugar_counts_a_server_down_as_an_error(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile(test_faults=OUTAGES.format(down=free_url()))
    result = pytester.runpytest_subprocess(
        f"--llm-host={fake.url}", "--llm-retries=0", "-p", "no:cacheprovider", "-p", "no:xdist",
        "--force-sugar",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    counts = sugar_counts(result.stdout.str())
    assert (counts["passed"], counts["failed"], counts["error"]) == (1, 2, 1)


CALLS_NOTHING = """
import pytest

@pytest.mark.parametrize("n", range(3))
def test_sets_up(llm, n):
    pass
"""


@pytest.mark.parametrize(
    ("args", "knocked"),
    [
        ((), 1),  # once per host per process, however many tests
        (("--llm-record-mode=all",), 1),  # every call goes to the server
        (("--llm-record-mode=none",), 0),  # replays need no server
        (("--llm-record-mode=once",), 0),  # nor may these
        (("-o", "llm_check_host=false"), 0),
    ],
    ids=["off", "all", "none", "once", "turned-off"],
)
def test_the_check_knocks_once_per_host_and_only_in_live_modes(
    pytester: pytest.Pytester, knocks: Knocks, args: tuple[str, ...], knocked: int
) -> None:
    pytester.makepyfile(CALLS_NOTHING)
    result = pytester.runpytest(
        f"--llm-host={knocks.url}", "-p", "no:cacheprovider", "-p", "no:xdist", *args
    )
    result.assert_outcomes(passed=3)
    assert knocks.count == knocked
    assert knocks.received == b""  # a knock, not a request: a server counts no request


def test_a_test_of_fake_ollama_calls_that_server(pytester: pytest.Pytester) -> None:
    # the configured host is down, but the test calls the fake_ollama fixture's server
    pytester.makepyfile(
        """
        def test_own_server(fake_ollama, llm):
            fake_ollama.script("ok")
            assert llm.chat("hi", host=fake_ollama.url).content == "ok"
        """
    )
    result = pytester.runpytest(f"--llm-host={free_url()}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_a_recorded_test_replays_with_the_server_down(
    pytester: pytest.Pytester, fake: FakeOllama
) -> None:
    pytester.makepyfile("def test_recorded(llm):\n    assert llm.chat('hi').content == 'fine'\n")
    common = ("-p", "no:cacheprovider", "-p", "no:xdist")
    recorded = pytester.runpytest(f"--llm-host={fake.url}", "--llm-record-mode=all", *common)
    recorded.assert_outcomes(passed=1)
    replayed = pytester.runpytest(f"--llm-host={free_url()}", "--llm-record-mode=none", *common)
    replayed.assert_outcomes(passed=1)


def test_a_pool_is_down_only_when_every_host_is(pytester: pytest.Pytester, knocks: Knocks) -> None:
    pytester.makepyfile(CALLS_NOTHING)
    common = ("-p", "no:cacheprovider", "-p", "no:xdist")
    result = pytester.runpytest(f"--llm-host={free_url()},{knocks.url}", *common)
    result.assert_outcomes(passed=3)
    assert knocks.count == 1

    first, second = free_url(), free_url()
    down = pytester.runpytest(f"--llm-host={first},{second}", *common)
    down.assert_outcomes(errors=3)
    down.stdout.fnmatch_lines(  # every host, and why it is out
        [
            "BackendUnreachable: no host of the pool takes connections (2 hosts): "
            f"{first}: Ollama is not*; {second}: Ollama is not*"
        ]
    )


def test_the_openai_backend_says_its_own_message_at_setup(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(llm):\n    llm.chat('hi')\n")
    host = free_url()
    result = pytester.runpytest(
        f"--llm-host={host}", "--llm-backend=openai", "-p", "no:cacheprovider", "-p", "no:xdist"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at setup of test_x*", f"BackendUnreachable: nothing answers at {host}*"]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
