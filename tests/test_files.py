"""Files on disk: names within the file system's limits, no torn or orphaned files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_llm._files import (
    MAX_NAME_BYTES,
    ORPHAN_AGE_SECONDS,
    STALE_AGE_SECONDS,
    is_temporary,
    read_bytes,
    remove_orphans,
    write_text_atomic,
)

SNAPSHOTS = Path("__snapshots__")


@pytest.fixture(autouse=True)
def not_an_xdist_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """syrupy reads ``PYTEST_XDIST_WORKER``: pytester's sessions are not workers."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)


def names(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


def backdate(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


# --- write_text_atomic -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a" * 240 + ".json", "中" * 80 + ".llm.txt"], ids=["en", "zh"])
def test_a_long_name_is_written_through_a_bounded_temporary_file(tmp_path: Path, name: str) -> None:
    assert len(name.encode()) <= MAX_NAME_BYTES  # the name itself fits, with nothing to spare
    target = tmp_path / name
    write_text_atomic(target, "answer\n")
    write_text_atomic(target, "answer, again\n")
    assert target.read_text(encoding="utf-8") == "answer, again\n"
    assert names(tmp_path) == {name}


CHILD = """
import os, sys, time
from pathlib import Path
from pytest_llm import _files

def never(src, dst):  # the temporary file is complete; the rename never comes
    time.sleep(120)

os.replace = never
_files.write_text_atomic(Path(sys.argv[1]), "x" * 3_000_000)
"""


def wait_for_temporary(folder: Path, size: int, within: float = 30.0) -> Path:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for path in folder.iterdir():
            if is_temporary(path.name) and path.stat().st_size == size:
                return path
        time.sleep(0.05)
    raise AssertionError(f"no temporary file of {size} bytes in {folder} within {within} s")


def test_a_writer_killed_mid_write_leaves_an_orphan_that_the_next_write_removes(
    tmp_path: Path,
) -> None:
    target = tmp_path / ("test_answer[" + "x" * 220 + "].json")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(target)])
    try:
        orphan = wait_for_temporary(tmp_path, 3_000_000)
        assert len(orphan.name.encode()) <= MAX_NAME_BYTES
        backdate(orphan, 2 * ORPHAN_AGE_SECONDS)
        write_text_atomic(tmp_path / "other.json", "{}")
        assert orphan.exists()  # its writer still runs: the write is under way
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    os.utime(orphan)  # just modified: perhaps a writer on another machine
    write_text_atomic(tmp_path / "other.json", "{}")
    assert orphan.exists()
    backdate(orphan, 2 * ORPHAN_AGE_SECONDS)
    write_text_atomic(tmp_path / "other.json", "{}")
    assert names(tmp_path) == {"other.json"}  # the killed writer's file is gone, nothing else


def test_stale_files_of_any_writer_and_of_older_versions_are_removed(tmp_path: Path) -> None:
    mine = f".answer.json.{os.getpid()}.abcd_123.pytest-llm.tmp"
    old_format = ".answer.json.k2j4h6g8.tmp"  # what a killed writer left before 0.x
    other = ".notes.tmp"  # not ours: never touched
    for name, age in [(mine, ORPHAN_AGE_SECONDS * 2), (old_format, 60), (other, 10 * 86400)]:
        (tmp_path / name).write_text("x")
        backdate(tmp_path / name, age)
    assert remove_orphans(tmp_path) == []  # a live writer's file; a recent one
    for name in (mine, old_format):
        backdate(tmp_path / name, STALE_AGE_SECONDS + 1)
    removed = remove_orphans(tmp_path)
    assert sorted(path.name for path in removed) == sorted([mine, old_format])
    assert names(tmp_path) == {other}
    assert remove_orphans(tmp_path / "missing") == []


# --- snapshots with long names ------------------------------------------------------------

LONG_IDS = """
import os
import pytest

LONG = "a" * 300
CASES = [LONG, LONG + "b", "short"]


@pytest.mark.parametrize("case", CASES, ids=CASES)  # pytest shortens long ids it makes
def test_long(llm_snapshot, case):
    if os.environ.get("BREAK_LONG") and case == LONG:
        raise RuntimeError("broken before its assertion")
    assert f"answer for {case[-6:]}" == llm_snapshot


def test_{cjk}(llm_snapshot):
    assert "你好" == llm_snapshot


class TestGroup:
    @pytest.mark.parametrize("x", ["x" * 300], ids=["x" * 300])
    def test_in_class(self, llm_snapshot, x):
        assert "one" == llm_snapshot
        assert "two" == llm_snapshot(name="second" * 40)
"""


@pytest.mark.parametrize("dist", [["-n", "2"], ["-p", "no:xdist"]], ids=["xdist", "no-xdist"])
def test_long_test_ids_are_snapshotted_under_bounded_distinct_names(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, dist: list[str]
) -> None:
    pytester.makepyfile(test_long=LONG_IDS.replace("{cjk}", "中" * 90))
    folder = pytester.path / SNAPSHOTS / "test_long"

    created = pytester.runpytest("-p", "no:cacheprovider", "--snapshot-update", *dist)
    created.assert_outcomes(passed=5)
    created.stdout.fnmatch_lines(["*6 snapshots generated*"])
    files = names(folder)
    assert len(files) == 6
    assert all(len(name.encode()) <= MAX_NAME_BYTES for name in files), files
    assert not [name for name in files if name.endswith(".tmp")]
    assert f"test_long[{'a' * 300}].llm.txt" not in files
    assert "test_long[short].llm.txt" in files  # a name that fits is syrupy's, as before
    short = (folder / "test_long[short].llm.txt").read_text()
    assert short == "kind: text\n---\nanswer for short\n"
    for name in files - {"test_long[short].llm.txt"}:  # cut, hashed, named inside
        first = (folder / name).read_text(encoding="utf-8").split("\n", 1)[0]
        assert first.startswith("snapshot: ") and name.startswith(first[10:30]), (name, first)
    cjk = next(folder.glob("test_中*.llm.txt"))
    assert cjk.read_text(encoding="utf-8") == f"snapshot: test_{'中' * 90}\nkind: text\n---\n你好\n"

    again = pytester.runpytest("-p", "no:cacheprovider", *dist)
    again.assert_outcomes(passed=5)
    again.stdout.fnmatch_lines(["*6 snapshots passed*"])
    assert "unused" not in again.stdout.str()

    monkeypatch.setenv("BREAK_LONG", "1")  # a test that did not pass keeps its snapshot
    update = pytester.runpytest("-p", "no:cacheprovider", "--snapshot-update", *dist)
    update.assert_outcomes(passed=4, failed=1)
    assert "deleted" not in update.stdout.str() and "unused" not in update.stdout.str()
    assert names(folder) == files


def test_ids_syrupy_would_write_to_one_file_get_two(pytester: pytest.Pytester) -> None:
    """syrupy drops ``/`` from a file name: ``[a/b]`` and ``[ab]`` were one snapshot file, so
    one test compared its answer with the other's."""
    pytester.makepyfile(
        test_ids="""
        import pytest

        @pytest.mark.parametrize("case", ["a/b", "ab"])
        def test_snap(llm_snapshot, case):
            assert f"answer for {case}" == llm_snapshot
        """
    )
    created = pytester.runpytest("-p", "no:cacheprovider", "--snapshot-update")
    created.assert_outcomes(passed=2)
    files = names(pytester.path / SNAPSHOTS / "test_ids")
    assert len(files) == 2 and "test_snap[ab].llm.txt" in files, files
    again = pytester.runpytest("-p", "no:cacheprovider")
    again.assert_outcomes(passed=2)
    again.stdout.fnmatch_lines(["*2 snapshots passed*"])


@pytest.mark.parametrize("size", [0, 1, 1354, 200_000])
def test_read_bytes_reads_a_file_whole(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "f.json").write_bytes(data)
    assert read_bytes(tmp_path / "f.json") == data


def test_read_bytes_reads_a_file_its_size_does_not_tell_to_its_end() -> None:
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("no /proc (a file whose stat size is 0 but that holds text)")
    assert status.stat().st_size == 0
    assert read_bytes(status).startswith(b"Name:") and b"\nVmRSS:" in read_bytes(status)


def test_read_bytes_raises_what_open_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_bytes(tmp_path / "missing.json")
    with pytest.raises(IsADirectoryError):
        read_bytes(tmp_path)
