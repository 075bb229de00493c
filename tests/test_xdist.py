"""Host pools spread over xdist workers, worker totals in workeroutput, a host that is down."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from pytest_llm import ConfigError, HarnessConfig
from pytest_llm.config import pick_host, split_hosts
from pytest_llm.testing import FakeOllama

SUITE = """
import pytest

@pytest.mark.parametrize("i", range(16))
def test_answer(llm, i):
    assert llm.chat(f"say {i}").content == "ok"
"""


@pytest.fixture
def two_fakes() -> Iterator[tuple[FakeOllama, FakeOllama]]:
    # a little latency, so that one worker cannot run every test before the others start
    with (
        FakeOllama("ok", first_token_delay=0.05) as a,
        FakeOllama("ok", first_token_delay=0.05) as b,
    ):
        yield a, b


def chats(fake: FakeOllama) -> int:
    return sum(1 for r in fake.requests if r.path == "/api/chat")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_host_pool_spreads_workers_over_both_servers(
    pytester: pytest.Pytester, two_fakes: tuple[FakeOllama, FakeOllama]
) -> None:
    a, b = two_fakes
    pytester.makepyfile(SUITE)
    report = pytester.path / "r.json"
    result = pytester.runpytest_subprocess(
        f"--llm-host={a.url}, {b.url}",
        "-n",
        "4",
        f"--llm-report={report}",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=16)
    assert chats(a) > 0 and chats(b) > 0 and chats(a) + chats(b) == 16
    result.stdout.fnmatch_lines(
        [f"llm: model=llama3.2 backend=ollama host={a.url},{b.url} seed=42"]
    )

    doc = json.loads(report.read_text())
    assert doc["run"]["hosts"] == [a.url, b.url]
    workers = {w["id"]: w for w in doc["run"]["workers"]}
    assert {w: workers[w]["host"] for w in sorted(workers)} == {
        "gw0": a.url, "gw1": b.url, "gw2": a.url, "gw3": b.url,
    }  # fmt: skip
    for test in doc["tests"]:  # each test ran on its worker's host
        assert test["host"] == workers[test["worker"]]["host"]
    per_host = {
        url: sum(t["calls"] for t in doc["tests"] if t["host"] == url) for url in (a.url, b.url)
    }
    assert per_host == {a.url: chats(a), b.url: chats(b)}
    result.stdout.fnmatch_lines(
        [f"host {a.url}: {chats(a)} calls (gw0, gw2)", f"host {b.url}: {chats(b)} calls (gw1, gw3)"]
    )
    assert set(doc["run"]["digests"]["llama3.2"]) == {a.url, b.url}


def test_a_host_that_is_down_is_reported_once(
    pytester: pytest.Pytester, two_fakes: tuple[FakeOllama, FakeOllama]
) -> None:
    a, _ = two_fakes
    down = f"http://127.0.0.1:{free_port()}"
    pytester.makepyfile(SUITE)
    report = pytester.path / "r.json"
    result = pytester.runpytest_subprocess(
        f"--llm-host={a.url},{down}", "-n", "2", f"--llm-report={report}", "-p", "no:cacheprovider"
    )
    doc = json.loads(report.read_text())
    errors = [t for t in doc["tests"] if t["outcome"] == "error"]
    assert errors and all(t["worker"] == "gw1" and t["host"] == down for t in errors)
    assert doc["totals"]["passed"] == chats(a) == 16 - len(errors)
    result.assert_outcomes(passed=16 - len(errors), errors=len(errors))
    assert doc["run"]["hosts_down"] == {
        down: {"tests": len(errors), "workers": ["gw1"], "message": errors[0]["error"]["message"]}
    }
    lines = [line for line in result.outlines if "HOST DOWN" in line]
    assert lines == [
        f"HOST DOWN {down}: {len(errors)} test(s) errored with BackendUnreachable on gw1; "
        "start the server there or remove it from --llm-host"
    ]
    assert doc["run"]["digests"] == {"llama3.2": {a.url: doc["run"]["digests"]["llama3.2"][a.url]}}


def test_without_xdist_the_first_host_serves_every_test(
    pytester: pytest.Pytester, two_fakes: tuple[FakeOllama, FakeOllama]
) -> None:
    a, b = two_fakes
    pytester.makepyfile(SUITE)
    result = pytester.runpytest(f"--llm-host={a.url},{b.url}", "-p", "no:xdist")
    result.assert_outcomes(passed=16)
    assert (chats(a), chats(b)) == (16, 0)


def test_the_pool_comes_from_ini_too(
    pytester: pytest.Pytester, two_fakes: tuple[FakeOllama, FakeOllama]
) -> None:
    a, b = two_fakes
    pytester.makeini(f"[pytest]\nllm_host = {a.url},\n  {b.url}\n")
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=16)
    assert chats(a) > 0 and chats(b) > 0


def test_a_marker_host_is_one_url(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm(host="http://a:1,http://b:2")
        def test_x(llm_config):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*host='http://a:1,http://b:2' is invalid: expected one URL*"])


def test_an_empty_pool_entry_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--llm-host=gpu1,,gpu2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llm-host='gpu1,,gpu2' has an empty entry*"])


def test_split_hosts_normalizes_each_entry() -> None:
    assert split_hosts(" gpu1, http://gpu2:8080/ ") == ("http://gpu1:11434", "http://gpu2:8080")
    with pytest.raises(ConfigError, match="has an empty entry"):
        split_hosts("gpu1,")
    with pytest.raises(ConfigError, match="one URL"):
        HarnessConfig(host="http://a:1,http://b:2")


def test_pick_host_is_stable_by_worker_id() -> None:
    hosts = ("http://a:1", "http://b:2", "http://c:3")
    assert [pick_host(hosts, f"gw{i}") for i in range(5)] == [
        "http://a:1", "http://b:2", "http://c:3", "http://a:1", "http://b:2",
    ]  # fmt: skip
    assert pick_host(hosts, None) == "http://a:1"
    assert pick_host(hosts, "custom") == pick_host(hosts, "custom") in hosts
    assert pick_host(hosts[:1], "gw7") == "http://a:1"


def test_a_crashed_worker_does_not_break_the_report(
    pytester: pytest.Pytester, two_fakes: tuple[FakeOllama, FakeOllama]
) -> None:
    a, _ = two_fakes
    pytester.makepyfile(
        """
        import os

        def test_crash(llm):
            llm.chat("bye")
            os._exit(3)

        def test_fine(llm):
            llm.chat("hi")
        """
    )
    report = pytester.path / "r.json"
    result = pytester.runpytest_subprocess(
        f"--llm-host={a.url}", "-n", "2", f"--llm-report={report}", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1, failed=1)
    doc = json.loads(report.read_text())
    assert {t["nodeid"].split("::")[1]: t["outcome"] for t in doc["tests"]} == {
        "test_crash": "failed", "test_fine": "passed",
    }  # fmt: skip
    assert (
        len(doc["run"]["workers"]) <= 2
        and sum(1 for line in result.outlines if "llm summary" in line) == 1
    )
