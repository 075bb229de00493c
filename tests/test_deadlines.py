"""Deadlines that hold and backoff that respects the server, on both backends.

``timeout_seconds`` bounds a whole answer (a server dripping bytes, or sending a line that
never ends, is cut at the deadline), ``total_timeout_seconds`` bounds a whole call,
``Retry-After`` is honoured, and interrupting a test (Ctrl-C, pytest-timeout) stops its work.
Wall-time bounds are upper bounds with room for a loaded machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from fnmatch import fnmatchcase

import httpx
import pytest

from pytest_llm import HarnessConfig
from pytest_llm.backends import Backend, ChatRequest, create_backend
from pytest_llm.backends._deadline_transport import retry_after_seconds
from pytest_llm.backends.deadline import CallScope, call_scope, timeout_message
from pytest_llm.errors import BackendBusy, BackendTimeout
from pytest_llm.pacing import pause_seconds
from pytest_llm.testing import FakeOllama, RecordedRequest, Reply

from .conftest import StallingServer

VALID = '{"name": "Lyon"}'
LONG = " ".join(["word"] * 40)
CHAT_PATH = {"ollama": "/api/chat", "openai": "/v1/chat/completions"}


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


@pytest.fixture(params=["ollama", "openai"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def host_of(fake: FakeOllama, kind: str) -> str:
    return fake.url + ("/v1" if kind == "openai" else "")


def chats(fake: FakeOllama, kind: str) -> int:
    return sum(1 for r in fake.requests if r.path == CHAT_PATH[kind])


def backend_for(fake: FakeOllama, kind: str, timeout: float) -> Backend:
    return create_backend(kind, host_of(fake, kind), timeout_seconds=timeout)


def ask(backend: Backend) -> None:
    backend.chat(ChatRequest(model="llama3.2", messages=[{"role": "user", "content": "hi"}]))


def first_line(error: BaseException) -> str:
    return str(error).splitlines()[0]


# --- FakeOllama's faults of time ------------------------------------------------------------


def test_the_fake_drips_a_stream_one_byte_at_a_time(fake: FakeOllama, kind: str) -> None:
    fake.script(Reply(content="a b", drip=0.01))
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream("POST", fake.url + CHAT_PATH[kind], json=body, timeout=10) as response:
        pieces = list(response.iter_raw())
    assert all(len(piece) == 1 for piece in pieces[1:])  # the first may join the headers' read
    text = b"".join(pieces).decode()
    assert text.count("\n") >= 3 and ('"done":true' in text or "[DONE]" in text)


def test_the_fake_sends_a_line_that_never_ends(fake: FakeOllama, kind: str) -> None:
    fake.script(Reply(content="a b", endless_after=1, drip=0.02))
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    received = b""
    with httpx.stream("POST", fake.url + CHAT_PATH[kind], json=body, timeout=10) as response:
        for piece in response.iter_raw():
            received += piece
            if received.endswith(b"x" * 20):
                break
    last = received.rsplit(b"\n", 1)[1]
    assert last.endswith(b'"content":"' + b"x" * 20)  # still going, never ended
    wait_for(lambda: fake.in_flight == 0, 5)  # the client hung up: the fake lets go


@pytest.mark.parametrize("header", [2, "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_the_fake_says_retry_after(fake: FakeOllama, kind: str, header: int | str) -> None:
    fake.script(Reply(status=429, retry_after=header))
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(fake.url + CHAT_PATH[kind], json=body, timeout=10)
    assert (response.status_code, response.headers["retry-after"]) == (429, str(header))


# --- one answer: the backends ----------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(content=LONG, drip=0.1), id="drip"),
        pytest.param(Reply(content=LONG, endless_after=1), id="endless-line"),
        pytest.param(Reply(content=LONG, endless_after=0, drip=5.0), id="endless-then-silent"),
    ],
)
def test_a_slow_stream_ends_at_the_deadline(fake: FakeOllama, kind: str, reply: Reply) -> None:
    fake.script(reply)
    backend = backend_for(fake, kind, timeout=1)
    started = time.monotonic()
    with pytest.raises(BackendTimeout) as info:
        ask(backend)
    elapsed = time.monotonic() - started
    backend.close()
    assert first_line(info.value) == timeout_message("llama3.2", host_of(fake, kind), 1)
    assert chats(fake, kind) == 1
    assert elapsed < 1 + 1  # the deadline, plus 1 s for a loaded machine


def test_a_call_scope_bounds_the_wait_for_the_first_byte(fake: FakeOllama, kind: str) -> None:
    fake.script(Reply(hang=True))
    backend = backend_for(fake, kind, timeout=30)
    scope = CallScope.starting_now(0.5, "total_timeout_seconds=0.5")
    started = time.monotonic()
    with call_scope(scope), pytest.raises(BackendTimeout) as info:
        ask(backend)
    elapsed = time.monotonic() - started
    backend.close()
    assert first_line(info.value).startswith(
        f"no answer from 'llama3.2' at {host_of(fake, kind)} within timeout_seconds=30: the "
        "time for the whole call ran out (total_timeout_seconds=0.5: every attempt and pause"
    )
    assert chats(fake, kind) == 1
    assert elapsed < 0.5 + 1


def test_a_dripping_embedding_ends_at_the_deadline(kind: str) -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 99999\r\n\r\n"
    with StallingServer(head=head, tick=b" ", interval=0.05, limit=10) as server:
        backend = create_backend(kind, server.url, timeout_seconds=0.5)
        started = time.monotonic()
        with pytest.raises(BackendTimeout, match=r"within timeout_seconds=0\.5; raise it"):
            backend.embed("embedder", ["a text"])
        elapsed = time.monotonic() - started
        backend.close()
    assert server.accepted == 1
    assert elapsed < 0.5 + 1


def test_a_model_listing_is_not_cut_short_by_the_call_it_happens_in(
    fake: FakeOllama, kind: str
) -> None:
    # it serves the whole session: a failed read would leave every identity unknown
    backend, other = backend_for(fake, kind, timeout=5), backend_for(fake, kind, timeout=5)
    with call_scope(CallScope.starting_now(0.001, "total_timeout_seconds=0.001")):
        time.sleep(0.01)  # the call's time is spent
        identity = backend.digest("llama3.2")
    assert identity is not None and identity == other.digest("llama3.2")
    backend.close()
    other.close()


def test_the_environments_proxy_is_still_used(
    fake: FakeOllama, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a client given a transport reads no proxy itself: the backend reads it for its host
    monkeypatch.setenv("HTTP_PROXY", fake.url)  # the fake serves a proxied request as well
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    fake.script("through the proxy")
    host = "http://llm.invalid:11434" + ("/v1" if kind == "openai" else "")
    backend = create_backend(kind, host, timeout_seconds=5)
    completion = backend.chat(
        ChatRequest(model="llama3.2", messages=[{"role": "user", "content": "hi"}])
    )
    backend.close()
    assert completion.content == "through the proxy"
    (request,) = [r for r in fake.requests if r.path == CHAT_PATH[kind]]
    assert request.headers["host"] == "llm.invalid:11434"


def test_no_proxy_exempts_the_host(
    fake: FakeOllama, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    backend = backend_for(fake, kind, timeout=5)
    ask(backend)
    backend.close()
    assert chats(fake, kind) == 1


@pytest.mark.parametrize("header", [7, "Wed, 21 Oct 2015 07:28:00 GMT"], ids=["seconds", "date"])
def test_a_busy_server_says_when_to_come_back(
    fake: FakeOllama, kind: str, header: int | str
) -> None:
    fake.script(Reply(status=503, retry_after=header))
    backend = backend_for(fake, kind, timeout=5)
    with pytest.raises(BackendBusy) as info:
        ask(backend)
    backend.close()
    assert info.value.retry_after == (7 if header == 7 else 0)  # a date in the past: now
    assert chats(fake, kind) == 1


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    now = 1_800_000_000.0
    assert retry_after_seconds("2") == 2
    assert retry_after_seconds(" 1.5 ") == 1.5
    assert retry_after_seconds(formatdate(now + 30, usegmt=True), now=now) == 30
    assert retry_after_seconds(formatdate(now - 30, usegmt=True), now=now) == 0
    for unreadable in (None, "", "soon", "nan", "inf"):
        assert retry_after_seconds(unreadable) is None


# --- pacing: the pauses and the bound of a whole call ----------------------------------------


def test_backoff_has_jitter_and_honours_retry_after() -> None:
    config = HarnessConfig(retry_delay_seconds=1.0)
    plain = BackendTimeout("slow")
    assert pause_seconds(config, 1, plain, rng=lambda: 0.0) == 0.5
    assert pause_seconds(config, 2, plain, rng=lambda: 1.0) == 2.0
    assert pause_seconds(config, 9, plain, rng=lambda: 1.0) == 30.0  # the cap
    busy = BackendBusy("busy", status_code=503)
    busy.retry_after = 4.0
    assert pause_seconds(config, 1, busy, rng=lambda: 1.0) == 4.0
    pauses = {pause_seconds(config, 1, plain) for _ in range(50)}
    assert len(pauses) > 1 and all(0.5 <= p <= 1.0 for p in pauses)


def test_the_worst_case_of_a_call_is_known() -> None:
    config = HarnessConfig(timeout_seconds=10, max_retries=2, retry_delay_seconds=0.5)
    assert config.backoff_seconds == 0.5 + 1.0
    assert config.worst_case_seconds == 10 * 3 + 1.5
    two_models = config.replace(escalate_to=["big"])
    assert two_models.worst_case_seconds == 10 * 6 + 1.5
    assert config.replace(total_timeout_seconds=12).worst_case_seconds == 12
    with pytest.raises(ValueError, match="total_timeout_seconds=0 is invalid"):
        config.replace(total_timeout_seconds=0)


# --- whole sessions --------------------------------------------------------------------------


def session(pytester: pytest.Pytester, fake: FakeOllama, kind: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        f"--llm-backend={kind}",
        f"--llm-host={host_of(fake, kind)}",
        "-p",
        "no:cacheprovider",
        *args,
    )


def call_seconds(result: pytest.RunResult) -> float:
    """How long the test's call phase took, as pytest timed it (the session's start-up and
    the fixtures' setup are left out: they swing with the machine's load)."""
    reports = result.reprec.getreports("pytest_runtest_logreport")  # type: ignore[attr-defined]
    (call,) = [r for r in reports if r.when == "call"]
    return float(call.duration)


def error_line(result: pytest.RunResult) -> str:
    """The first line of the test's error: what follows its ``ERROR at call of`` header."""
    lines = result.outlines
    (at,) = [i for i, line in enumerate(lines) if "ERROR at call of" in line]
    return lines[at + 1]


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(content=LONG, drip=0.1), id="drip"),
        pytest.param(Reply(content=LONG, endless_after=2), id="endless-line"),
    ],
)
def test_session_a_drip_never_holds_a_test_past_the_timeout_plus_1s_per_attempt(
    pytester: pytest.Pytester, fake: FakeOllama, kind: str, reply: Reply
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm(timeout_seconds=1, max_retries=1, retry_delay_seconds=0)
        def test_drip(llm):
            llm.chat("hi")
        """
    )
    fake.script(reply)
    result = session(pytester, fake, kind)
    elapsed = call_seconds(result)  # the test's call alone: no session start on a busy machine
    result.assert_outcomes(errors=1)
    assert error_line(result) == (
        f"BackendTimeout: no answer from 'llama3.2' at {host_of(fake, kind)} within "
        "timeout_seconds=1; raise it with @pytest.mark.llm(timeout_seconds=...) or "
        "--llm-timeout (gave up after 2 attempt(s)) (test_session_a_drip_never_holds_a_test_"
        "past_the_timeout_plus_1s_per_attempt.py:5)"
    )
    assert chats(fake, kind) == 2
    assert elapsed < 2 * (1 + 1)  # 2 attempts of timeout_seconds=1, plus 1 s each


def test_session_total_timeout_bounds_every_attempt_of_a_call(
    pytester: pytest.Pytester, fake: FakeOllama, kind: str
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm(timeout_seconds=2, max_retries=5, retry_delay_seconds=0,
                         total_timeout_seconds=3)
        def test_drip(llm):
            llm.chat("hi")
        """
    )
    fake.script(Reply(content=LONG, drip=0.1))
    result = session(pytester, fake, kind)
    elapsed = call_seconds(result)  # the test's call alone: no session start on a busy machine
    result.assert_outcomes(errors=1)
    assert error_line(result).startswith(
        f"BackendTimeout: no answer from 'llama3.2' at {host_of(fake, kind)} within "
        "timeout_seconds=2: the time for the whole call ran out (total_timeout_seconds=3: "
        "every attempt and pause of one llm call); raise it with "
        "@pytest.mark.llm(total_timeout_seconds=...) or --llm-total-timeout "
        "(gave up after 2 attempt(s): the time for the whole call is spent "
        "(total_timeout_seconds=3))"
    )
    assert chats(fake, kind) == 2  # not 6: the second attempt had 1 s left, then none
    assert elapsed < 3 + 2


def test_total_timeout_from_the_command_line_and_the_ini(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_it(llm_config):
            print("TOTAL", llm_config.total_timeout_seconds, llm_config.worst_case_seconds)
        """
    )
    pytester.makeini("[pytest]\nllm_total_timeout = 7\n")
    pytester.runpytest("-s").stdout.fnmatch_lines(["*TOTAL 7.0 7.0*"])
    pytester.runpytest("-s", "--llm-total-timeout=2.5").stdout.fnmatch_lines(["*TOTAL 2.5 2.5*"])
    bad = pytester.runpytest("--llm-total-timeout=0")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*total_timeout_seconds=0.0 is invalid: expected a number >= 0.001*"])


TEST_BUSY = """
import pytest

@pytest.mark.llm(retry_delay_seconds=0.01, total_timeout_seconds={total})
def test_busy(llm):
    assert llm.chat("hi").content == '{{"name": "Lyon"}}'
"""


def arrivals(
    replies: list[Reply | str | Callable[[], Reply]],
) -> tuple[Callable[[RecordedRequest], Reply | str], list]:
    """A reply script that notes when each chat request arrived; a callable in ``replies``
    makes its reply when the request arrives (a ``Retry-After`` date from that moment)."""
    seen: list[float] = []

    def reply(request: RecordedRequest) -> Reply | str:
        seen.append(time.monotonic())
        chosen = replies[min(len(seen), len(replies)) - 1]
        return chosen() if callable(chosen) else chosen

    return reply, seen


@pytest.mark.parametrize("when", ["seconds", "date"])
def test_session_retry_after_is_honoured(
    pytester: pytest.Pytester, fake: FakeOllama, kind: str, when: str
) -> None:
    pytester.makepyfile(TEST_BUSY.format(total=30))

    def busy() -> Reply:  # dated when the request arrives: starting the session takes time
        header = 1 if when == "seconds" else formatdate(time.time() + 2, usegmt=True)
        return Reply(status=503, retry_after=header)

    script, seen = arrivals([busy, VALID])
    fake.script(script)
    result = session(pytester, fake, kind)
    result.assert_outcomes(passed=1)
    assert chats(fake, kind) == 2
    # the pause is ours, so it can only be longer; a date has 1 s resolution
    assert seen[1] - seen[0] >= (1.0 if when == "seconds" else 0.9)
    assert seen[1] - seen[0] < 2 + 2


def test_session_retry_after_beyond_the_calls_time_gives_up_at_once(
    pytester: pytest.Pytester, fake: FakeOllama, kind: str
) -> None:
    pytester.makepyfile(TEST_BUSY.format(total=5))
    fake.script(Reply(status=503, retry_after=60))
    result = session(pytester, fake, kind)
    elapsed = call_seconds(result)  # the test's call alone: no session start on a busy machine
    result.assert_outcomes(errors=1)
    assert fnmatchcase(
        error_line(result),
        f"BackendBusy: *{host_of(fake, kind)} is busy (503): server busy, please try again.  "
        "maximum pending requests exceeded (gave up after 1 attempt(s): the next one would "
        "start after a pause of 60.0 s (the server's Retry-After), and the call has * s left "
        "(total_timeout_seconds=5)) (test_session_retry_after_beyond_the_calls_time_gives_up_"
        "at_once.py:5)",
    )
    assert chats(fake, kind) == 1
    assert elapsed < 5


# --- interrupting a test stops its work -------------------------------------------------------

TEST_MAP = """
import pytest

@pytest.mark.llm(concurrency=2, timeout_seconds=30)
def test_map(llm):
    llm.map([f"prompt {i}" for i in range(6)])
"""


def wait_for(condition: Callable[[], bool], seconds: float) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.05)


@pytest.mark.parametrize(
    "reply, bound, xdist",
    [  # streamed slowly (4 s), or with the response's first byte after 20 s: both are cut
        pytest.param(Reply(content=LONG, token_delay=0.1), 3.0, False, id="mid-answer"),
        pytest.param(Reply(content="done", first_token_delay=20), 8.0, False, id="first-byte"),
        pytest.param(Reply(content=LONG, token_delay=0.1), 6.0, True, id="mid-answer-n2"),
    ],
)
def test_ctrl_c_during_map_cancels_the_queued_calls(
    pytester: pytest.Pytester, fake: FakeOllama, reply: Reply, bound: float, xdist: bool
) -> None:
    pytester.makepyfile(TEST_MAP)
    fake.script(reply)
    dist = ["-n", "2"] if xdist else ["-p", "no:xdist"]
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", f"--llm-host={fake.url}", "-p", "no:cacheprovider", *dist],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: Ctrl-C reaches xdist's workers too
    )
    try:
        wait_for(lambda: chats(fake, "ollama") == 2, 30)
        time.sleep(0.5)
        os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        interrupted = time.monotonic()
        output, _ = process.communicate(timeout=30)
        took = time.monotonic() - interrupted
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    time.sleep(0.3)  # a queued call that still started would have arrived by now
    assert "KeyboardInterrupt" in output
    assert chats(fake, "ollama") == 2  # not 6: the queued calls never started
    assert took < bound  # running calls cut, mid-answer or waiting for the first byte


TEST_TIMEOUTS = """
import pytest

@pytest.mark.timeout(2)
@pytest.mark.llm(concurrency=2, timeout_seconds=30)
def test_map(llm):
    llm.map([f"prompt {i}" for i in range(6)])

@pytest.mark.timeout(1)
@pytest.mark.llm(timeout_seconds=30, max_retries=0)
def test_chat(llm):
    llm.chat("the last prompt")

@pytest.mark.timeout(1)
@pytest.mark.llm(total_timeout_seconds=100)
def test_pause(llm):
    llm.chat("a busy prompt")
"""


def test_pytest_timeout_stops_the_calls_and_they_still_show(
    pytester: pytest.Pytester, fake: FakeOllama, kind: str
) -> None:
    pytester.makepyfile(TEST_TIMEOUTS)
    fake.script(
        lambda r: (
            Reply(hang=True)
            if "last" in str(r.messages)
            else Reply(status=503, retry_after=30)
            if "busy" in str(r.messages)
            else Reply(content=LONG, token_delay=0.1)
        )
    )
    started = time.monotonic()
    result = pytester.runpytest_subprocess(
        f"--llm-backend={kind}",
        f"--llm-host={host_of(fake, kind)}",
        *("-p", "no:cacheprovider", "-p", "no:xdist", "--llm-report=report.json"),
    )
    elapsed = time.monotonic() - started
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["*Failed: Timeout (>2.0s) from pytest-timeout.*"])
    result.stdout.fnmatch_lines(["*Failed: Timeout (>1.0s) from pytest-timeout.*"])
    warned = [line for line in result.outlines if "pytest-timeout stops" in line]
    assert len(warned) == 1 and "test_map after 2 s" in warned[0]
    assert "a call may take 91.5 s (timeout_seconds=30 x 3 attempt(s) + 1.5 s of backoff)" in (
        result.stdout.str().replace("\n", " ")
    )
    assert chats(fake, kind) == 4  # 2 of the map (4 queued never started), 1 chat, 1 busy
    tests = {
        t["nodeid"].rsplit("::", 1)[1]: t
        for t in json.loads((pytester.path / "report.json").read_text())["tests"]
    }
    for name, calls in (("test_map", 2), ("test_chat", 1), ("test_pause", 1)):
        record = tests[name]
        host = host_of(fake, kind)
        assert (record["calls"], record["model"], record["host"]) == (calls, "llama3.2", host)
        assert all(not c["success"] for c in record["llm"])
    (paused,) = tests["test_pause"]["llm"]
    assert paused["attempts"] == 2  # the 503, then the pause for its Retry-After, stopped
    assert elapsed < 2 + 1 + 1 + 10  # the limits, and a subprocess's start on a loaded machine
