"""Host pools (pytest_llm.backends.pool): slots, the least-loaded choice, health, failover."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_llm import BackendTimeout, BackendUnreachable, ConfigError, Harness, HarnessConfig
from pytest_llm.backends import BackendPool, ChatRequest
from pytest_llm.backends.deadline import Deadline
from pytest_llm.backends.pool import HostPool, worker_share
from pytest_llm.config import PoolHost, parse_pool
from pytest_llm.testing import FakeOllama, Reply

from .conftest import free_port


def chats(fake: FakeOllama) -> int:
    return sum(1 for r in fake.requests if r.path == "/api/chat")


def harness(pool: BackendPool, host: str, test: str = "t", **settings: object) -> Harness:
    config = HarnessConfig(host=host, **settings)  # type: ignore[arg-type]
    return Harness(config, backend=lambda c: pool.for_config(c, test=test))


@pytest.fixture
def pool_of() -> Iterator[list[BackendPool]]:
    made: list[BackendPool] = []
    yield made
    for pool in made:
        pool.close()


def make(made: list[BackendPool], *hosts: tuple[str, int | None], **kw: object) -> BackendPool:
    pool = BackendPool(list(hosts), **kw)  # type: ignore[arg-type]
    made.append(pool)
    return pool


# --- the URL#N syntax -------------------------------------------------------------------------


def test_slots_are_declared_with_a_hash_after_the_url() -> None:
    assert parse_pool(" gpu1#4, http://gpu2:8080/ ,gpu3#1") == (
        PoolHost("http://gpu1:11434", 4),
        PoolHost("http://gpu2:8080", None),
        PoolHost("http://gpu3:11434", 1),
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("gpu1#0", "declares '0' slots"),
        ("gpu1#x", "declares 'x' slots"),
        ("gpu1#", "declares no number of slots"),
        ("gpu1#2#3", "declares '2#3' slots"),
        ("gpu1#2,gpu1", "names http://gpu1:11434 twice"),
        ("gpu1#2,", "has an empty entry"),
    ],
)
def test_a_malformed_pool_says_what_to_write(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match="URL#N") as caught:
        parse_pool(text, "--llm-host")
    assert says in str(caught.value) and "--llm-host=" in str(caught.value)


def test_a_single_host_setting_takes_no_slots() -> None:
    with pytest.raises(ConfigError, match="slots, URL#N, are declared in --llm-host/llm_host"):
        HarnessConfig(host="http://gpu1:11434#4")


def test_worker_shares_add_up_to_the_slots() -> None:
    for slots in range(1, 9):
        for workers in range(1, 6):
            shares = [worker_share(slots, workers, i) for i in range(workers)]
            assert sum(shares) == slots and max(shares) - min(shares) <= 1


# --- slots and the choice of a host -----------------------------------------------------------


def test_map_spreads_over_the_pool_and_never_exceeds_a_hosts_slots(
    pool_of: list[BackendPool],
) -> None:
    with (
        FakeOllama("ok", first_token_delay=0.1) as a,
        FakeOllama("ok", first_token_delay=0.1) as b,
    ):
        pool = make(pool_of, (a.url, 2), (b.url, 1))
        results = harness(pool, a.url, concurrency=8).map([f"q{i}" for i in range(12)])
        assert [r.content for r in results] == ["ok"] * 12
        assert (a.max_in_flight, b.max_in_flight) == (2, 1)  # the fakes have no limit
        assert chats(a) + chats(b) == 12 and chats(a) >= 6 and chats(b) >= 3
        assert pool.hosts is not None
        figures = pool.hosts.figures()
        assert figures[a.url] == {"slots": 2, "requests": chats(a), "peak": 2}


def test_sample_and_a_dataset_spread_over_the_pool(pool_of: list[BackendPool]) -> None:
    with (
        FakeOllama("yes", first_token_delay=0.1) as a,
        FakeOllama("yes", first_token_delay=0.1) as b,
    ):
        pool = make(pool_of, (a.url, 1), (b.url, 1))
        llm = harness(pool, a.url, concurrency=4, temperature=0.8)
        assert llm.sample("q", 6).passes == 6
        assert chats(a) >= 2 and chats(b) >= 2 and chats(a) + chats(b) == 6
        cases = [{"id": f"c{i}", "text": f"t{i}", "label": "yes"} for i in range(6)]
        outcome = llm.evaluate(cases, "Is {text} ok?", expected="label")
        assert outcome.passed and chats(a) + chats(b) == 12
        assert chats(a) >= 4 and chats(b) >= 4
        assert a.max_in_flight == 1 and b.max_in_flight == 1


def test_sequential_calls_take_turns_by_slots(pool_of: list[BackendPool]) -> None:
    with FakeOllama("ok") as a, FakeOllama("ok") as b:
        pool = make(pool_of, (a.url, 2), (b.url, None))
        llm = harness(pool, a.url)
        for i in range(6):
            llm.chat(f"q{i}")
        assert (chats(a), chats(b)) == (4, 2)


def test_a_marker_host_outside_the_pool_bypasses_it(pool_of: list[BackendPool]) -> None:
    with FakeOllama("pool") as a, FakeOllama("pool") as b, FakeOllama("alone") as c:
        pool = make(pool_of, (a.url, 1), (b.url, 1))
        assert harness(pool, c.url).chat("q").content == "alone"
        assert chats(a) + chats(b) == 0


def test_slots_in_a_shared_directory_hold_across_processes(tmp_path: Path) -> None:
    # two HostPools on one directory act as two xdist workers: flock locks conflict
    # between open files whatever process holds them
    first = HostPool([("http://a:1", 1), ("http://b:1", 1)], slot_dir=tmp_path)
    second = HostPool([("http://a:1", 1), ("http://b:1", 1)], slot_dir=tmp_path)
    try:
        assert first.shared and second.shared
        wait = Deadline(model="m", host="pool", timeout_seconds=5)
        one = first.acquire(wait)
        two = second.acquire(wait)
        assert {one.url, two.url} == {"http://a:1", "http://b:1"}
        started = time.perf_counter()
        with pytest.raises(Exception, match="every slot was busy, with the other xdist workers"):
            first.acquire(Deadline(model="m", host="pool", timeout_seconds=0.2))
        assert 0.15 < time.perf_counter() - started < 3
        two.release()
        three = first.acquire(wait)  # the other worker's slot is free again
        assert three.url == two.url
        one.release()
        three.release()
    finally:
        first.close()
        second.close()


def test_a_call_waits_for_a_slot_no_longer_than_its_time(pool_of: list[BackendPool]) -> None:
    with FakeOllama("ok", first_token_delay=1.5) as a:
        pool = make(pool_of, (a.url, 1))
        backend = pool.for_config(HarnessConfig(host=a.url, timeout_seconds=0.4 + 2))
        request = ChatRequest(model="llama3.2", messages=[{"role": "user", "content": "q"}])
        holder = threading.Thread(target=backend.chat, args=(request,))
        holder.start()
        try:
            time.sleep(0.2)
            waiting = pool.for_config(HarnessConfig(host=a.url, timeout_seconds=0.4))
            started = time.perf_counter()
            with pytest.raises(BackendTimeout, match=r"no free slot .* \(1 slot\(s\)\)"):
                waiting.chat(request)
            assert 0.3 < time.perf_counter() - started < 1.4
        finally:
            holder.join(10)
        assert a.max_in_flight == 1 and chats(a) == 1


# --- health and failover ----------------------------------------------------------------------


def test_a_refusing_host_is_marked_down_and_its_calls_move(pool_of: list[BackendPool]) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    with FakeOllama("ok") as a:
        pool = make(pool_of, (down, None), (a.url, None))
        llm = harness(pool, down, test="tests/t.py::test_x")
        results = [llm.chat(f"q{i}") for i in range(4)]
        assert all(r.content == "ok" for r in results)
        moved = [r for r in results if r.retries]
        assert len(moved) == 2  # round robin put two calls on it; then it is down
        assert [a.rejected for a in moved[0].attempts] == ["transport", None]
        assert "moved to another host of the pool" in (moved[0].attempts[0].error or "")
        assert chats(a) == 4
        assert pool.hosts is not None
        health = pool.hosts.health()
        assert list(health) == [down]
        assert health[down]["reason"] == "refused the connection"
        assert health[down]["downs"] == 1 and health[down]["moved"] == ["tests/t.py::test_x"]
        host, moves = pool.hosts.served("tests/t.py::test_x", forget=True)
        assert host == a.url and [m["host"] for m in moves] == [down] and moves[0]["down"]
        assert pool.hosts.served("tests/t.py::test_x") == (None, [])


def test_a_hung_host_is_marked_down_after_two_timeouts(pool_of: list[BackendPool]) -> None:
    with FakeOllama(Reply(hang=True)) as hung, FakeOllama("ok") as a:
        pool = make(pool_of, (hung.url, None), (a.url, None))
        llm = harness(pool, hung.url, timeout_seconds=0.5)
        started = time.perf_counter()
        results = [llm.chat(f"q{i}") for i in range(5)]
        took = time.perf_counter() - started
        assert [r.retries for r in results].count(1) == 2 and chats(a) == 5
        assert 0.9 < took < 6  # two timeouts, then no more waiting on it
        assert pool.hosts is not None
        assert pool.hosts.health()[hung.url]["reason"] == "timed out"


def test_a_host_answering_503_moves_its_calls(pool_of: list[BackendPool]) -> None:
    with FakeOllama(Reply(status=503)) as busy, FakeOllama("ok") as a:
        pool = make(pool_of, (busy.url, None), (a.url, None))
        results = harness(pool, busy.url, concurrency=4).map([f"q{i}" for i in range(6)])
        assert all(r.content == "ok" for r in results)
        assert pool.hosts is not None
        assert pool.hosts.health()[busy.url]["reason"] == "answered 503"
        assert chats(busy) == 2  # two 503s in a row: down for the rest of the cool-down


def test_a_host_is_tried_again_after_its_cool_down(pool_of: list[BackendPool]) -> None:
    flaky = [Reply(status=500), Reply(status=500), "back"]
    with FakeOllama(flaky) as a, FakeOllama("b") as b:
        pool = make(pool_of, (a.url, None), (b.url, None), cooldown_seconds=0.5)
        llm = harness(pool, a.url)
        assert [llm.chat(f"q{i}").content for i in range(4)] == ["b"] * 4
        assert chats(a) == 2  # down after two 500s: the next calls all went to b
        time.sleep(0.6)
        assert {llm.chat(f"r{i}").content for i in range(4)} == {"back", "b"}
        assert chats(a) >= 3


def test_with_every_host_down_the_error_names_each(pool_of: list[BackendPool]) -> None:
    one, two = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
    pool = make(pool_of, (one, None), (two, 3))
    llm = harness(pool, one)
    for _ in range(3):
        started = time.perf_counter()
        with pytest.raises(BackendUnreachable) as caught:
            llm.chat("q")
        assert time.perf_counter() - started < 2  # not retried: nothing left to try
        message = str(caught.value)
        assert message.startswith("no healthy host left in the pool of 2: ")
        assert f"{one} refused the connection" in message
        assert f"{two} refused the connection" in message
    assert "(down, tried again in 30 s)" in message
    assert caught.value.host == f"{one},{two}"


def test_pool_errors_never_show_credentials(pool_of: list[BackendPool]) -> None:
    one, two = (f"127.0.0.1:{free_port()}" for _ in range(2))
    pool = make(pool_of, (f"http://user:secret@{one}", None), (f"http://{two}", None))
    with pytest.raises(BackendUnreachable) as caught:
        harness(pool, f"http://user:secret@{one}").chat("q")
    assert "secret" not in str(caught.value) and "secret" not in str(caught.value.host)
    assert f"http://{one} refused the connection" in str(caught.value)


def test_a_missing_model_is_not_a_reason_to_move(pool_of: list[BackendPool]) -> None:
    from pytest_llm import ModelNotFound

    with FakeOllama("ok", models=("other",)) as a, FakeOllama("ok") as b:
        pool = make(pool_of, (a.url, None), (b.url, None))
        with pytest.raises(ModelNotFound, match=a.url.replace(".", r"\.")):
            harness(pool, a.url).chat("q")
        assert chats(b) == 0
        assert pool.hosts is not None and pool.hosts.health() == {}


def test_the_model_identity_does_not_depend_on_the_host(pool_of: list[BackendPool]) -> None:
    with FakeOllama("ok") as a, FakeOllama("ok") as b:
        pool = make(pool_of, (a.url, None), (b.url, None))
        llm = harness(pool, a.url)
        identities = {llm.chat(f"q{i}").metadata["model_identity"] for i in range(4)}
        assert identities == {a.digest_of("llama3.2")} and chats(a) == chats(b) == 2


# --- whole sessions (pytester) ----------------------------------------------------------------

SUITE = """
import pytest

@pytest.mark.parametrize("i", range(8))
def test_answer(llm, i):
    assert llm.chat(f"say {i}").content == "ok"

def test_map(llm):
    answers = llm.map([f"item {i}" for i in range(8)], concurrency=8)
    assert [r.content for r in answers] == ["ok"] * 8
"""


@pytest.fixture
def three() -> Iterator[tuple[FakeOllama, FakeOllama, FakeOllama]]:
    # no limit of their own: max_in_flight is what the pool let through
    with (
        FakeOllama("ok", first_token_delay=0.2) as a,
        FakeOllama("ok", first_token_delay=0.2) as b,
        FakeOllama("ok", first_token_delay=0.2) as c,
    ):
        yield a, b, c


@pytest.mark.parametrize("workers", [None, 3], ids=["sequential", "xdist-3"])
def test_a_session_spreads_over_the_pool_within_each_hosts_slots(
    pytester: pytest.Pytester,
    three: tuple[FakeOllama, FakeOllama, FakeOllama],
    workers: int | None,
) -> None:
    a, b, c = three
    pytester.makepyfile(SUITE)
    xdist = ["-n", str(workers)] if workers else ["-p", "no:xdist"]
    result = pytester.runpytest_subprocess(
        f"--llm-host={a.url}#2, {b.url}, {c.url}#1", *xdist, "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=9)
    counts = [chats(f) for f in three]
    assert sum(counts) == 16 and all(n >= 2 for n in counts), counts
    assert counts[0] >= max(counts[1:]), counts  # two slots take more of the load
    peaks = [f.max_in_flight for f in three]
    assert peaks[0] <= 2 and peaks[1] <= 1 and peaks[2] <= 1, peaks  # over every worker
    assert sum(peaks) >= 3, peaks  # the map test filled the pool
    result.stdout.fnmatch_lines([f"llm: * host={a.url},{b.url},{c.url} *"])


FAULTS = {
    "refused": None,
    "hung": Reply(hang=True),
    "503": Reply(status=503),
}
REASONS = {"refused": "refused the connection", "hung": "timed out", "503": "answered 503"}


@pytest.mark.parametrize(
    ("fault", "workers"),
    [("refused", None), ("hung", None), ("503", None), ("refused", 2), ("hung", 2)],
    ids=["refused", "hung", "503", "refused-xdist-2", "hung-xdist-2"],
)
def test_a_failing_hosts_tests_move_and_pass(
    pytester: pytest.Pytester, fault: str, workers: int | None
) -> None:
    with contextlib.ExitStack() as stack:
        good = stack.enter_context(FakeOllama("ok"))
        reply = FAULTS[fault]
        bad = None if reply is None else stack.enter_context(FakeOllama(reply))
        bad_url = bad.url if bad is not None else f"http://127.0.0.1:{free_port()}"
        pytester.makepyfile(SUITE)
        xdist = ["-n", str(workers)] if workers else ["-p", "no:xdist"]
        started = time.perf_counter()
        report = pytester.path / "r.json"
        result = pytester.runpytest_subprocess(
            f"--llm-host={bad_url},{good.url}#4",
            "--llm-timeout=1",
            f"--llm-report={report}",
            *xdist,
            "-p",
            "no:cacheprovider",
        )
        took = time.perf_counter() - started
        result.assert_outcomes(passed=9)
        assert chats(good) == 16
        if bad is not None:  # two failures in a row per process, then it is left alone
            assert chats(bad) <= 2 * (workers or 1)
        assert took < 60  # a hung host costs a timeout or two, not one per test

        doc = json.loads(report.read_text())
        moved = sorted(t["nodeid"] for t in doc["tests"] if t["moved_from"])
        assert moved and all(t["host"] == good.url for t in doc["tests"])
        entry = doc["run"]["hosts_down"][bad_url]
        assert (entry["reason"], entry["moved"], entry["tests"]) == (REASONS[fault], moved, 0)
        assert list(doc["run"]["hosts_down"]) == [bad_url]
        lines = [line for line in result.outlines if "HOST DOWN" in line]
        assert len(lines) == 1  # once, whatever the number of tests or workers
        assert lines[0].startswith(
            f"HOST DOWN {bad_url}: {len(moved)} test(s) moved to other hosts of the pool"
        )
        assert f"({REASONS[fault]}); start the server there" in lines[0]
        assert doc["totals"]["retries"] >= len(moved)  # each move is a transport retry


def test_with_every_host_down_each_test_errors_naming_the_hosts(pytester: pytest.Pytester) -> None:
    one, two = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_subprocess(
        f"--llm-host={one},{two}#2",
        "-o",
        "llm_check_host=false",  # the calls' own errors, not the setup check's
        "-p",
        "no:xdist",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(errors=9)
    errors = [line for line in result.outlines if line.startswith("BackendUnreachable: ")]
    assert len(errors) == 9  # one line each, no traceback
    for line in errors:
        assert line.startswith("BackendUnreachable: no healthy host left in the pool of 2: ")
        assert f"{one} refused the connection" in line and f"{two} refused the connection" in line
    down = [line for line in result.outlines if "HOST DOWN" in line]
    assert down == [
        f"HOST DOWN {one}: 9 test(s) errored with BackendUnreachable (refused the connection); "
        "start the server there or remove it from --llm-host",
        f"HOST DOWN {two}: 9 test(s) errored with BackendUnreachable (refused the connection); "
        "start the server there or remove it from --llm-host",
    ]


def test_cassettes_do_not_depend_on_the_host_that_answered(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    with FakeOllama("ok") as a, FakeOllama("ok") as b:
        recorded = pytester.runpytest_subprocess(
            f"--llm-host={a.url},{b.url}", "--llm-record-mode=once", "-p", "no:xdist"
        )
        recorded.assert_outcomes(passed=9)
        assert chats(a) > 0 and chats(b) > 0
    with FakeOllama("not recorded") as other:  # the same model, on a third server alone
        replayed = pytester.runpytest_subprocess(
            f"--llm-host={other.url}", "--llm-record-mode=none", "-p", "no:xdist"
        )
        replayed.assert_outcomes(passed=9)
        assert chats(other) == 0
