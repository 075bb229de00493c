"""Host pools under xdist, worker totals in workeroutput, a host that is down."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pytest_llm import ConfigError, HarnessConfig
from pytest_llm.config import split_hosts
from pytest_llm.testing import FakeOllama

from .conftest import free_port

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


def test_a_host_pool_serves_every_worker_from_both_servers(
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
    assert {t["host"] for t in doc["tests"]} == {a.url, b.url}  # the host that answered it
    assert [w["host"] for w in doc["run"]["workers"]] == [f"{a.url},{b.url}"] * 4  # the pool
    per_host = {
        url: sum(t["calls"] for t in doc["tests"] if t["host"] == url) for url in (a.url, b.url)
    }
    assert per_host == {a.url: chats(a), b.url: chats(b)}
    result.stdout.fnmatch_lines(
        [f"host {a.url}: {chats(a)} calls (gw*)", f"host {b.url}: {chats(b)} calls (gw*)"]
    )
    assert set(doc["run"]["digests"]["llama3.2"]) == {a.url, b.url}


def test_the_tests_of_a_host_that_is_down_move_to_the_others(
    pytester: pytest.Pytester, two_fakes: tuple[FakeOllama, FakeOllama]
) -> None:
    a, _ = two_fakes
    down = f"http://127.0.0.1:{free_port()}"
    pytester.makepyfile(SUITE)
    report = pytester.path / "r.json"
    result = pytester.runpytest_subprocess(
        f"--llm-host={a.url},{down}", "-n", "2", f"--llm-report={report}", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=16)
    doc = json.loads(report.read_text())
    assert chats(a) == 16 and {t["host"] for t in doc["tests"]} == {a.url}
    moved = [t for t in doc["tests"] if t["retries"]]
    assert 1 <= len(moved) <= 4  # two failures in a row per worker, then it is down
    assert all(t["moved_from"][0]["host"] == down for t in moved)
    entry = doc["run"]["hosts_down"][down]
    assert entry["moved"] == sorted(t["nodeid"] for t in moved) and entry["tests"] == 0
    assert entry["reason"] == "refused the connection" and set(entry["workers"]) <= {"gw0", "gw1"}
    lines = [line for line in result.outlines if "HOST DOWN" in line]
    assert lines == [
        f"HOST DOWN {down}: {len(moved)} test(s) moved to other hosts of the pool on "
        f"{', '.join(entry['workers'])} (refused the connection); start the server there or "
        "remove it from --llm-host"
    ]
    assert doc["run"]["digests"] == {"llama3.2": {a.url: doc["run"]["digests"]["llama3.2"][a.url]}}


def test_without_xdist_sequential_tests_take_turns_on_the_pool(
    pytester: pytest.Pytester, two_fakes: tuple[FakeOllama, FakeOllama]
) -> None:
    a, b = two_fakes
    pytester.makepyfile(SUITE)
    result = pytester.runpytest(f"--llm-host={a.url},{b.url}#3", "-p", "no:xdist")
    result.assert_outcomes(passed=16)
    assert (chats(a), chats(b)) == (4, 12)  # one slot and three: a quarter and the rest


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
