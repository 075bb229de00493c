"""``scripts/real-model.sh --record-examples FILE...`` re-records the example files named
(as ``examples/test_app.py`` was) and no other, in a repository copy with a stub server."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import test_real_model_lane as lanes


def test_record_examples_runs_only_the_files_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def with_two_examples(path: Path) -> Path:
        script = copy(path)
        (path / "repo" / "examples" / "test_other.py").write_text("def test_other(llm): ...\n")
        return script

    copy = lanes.repository_copy
    monkeypatch.setattr(lanes, "repository_copy", with_two_examples)
    proc, seen = lanes.lane(
        tmp_path, "--record-examples", "examples/test_example.py", die_at="never"
    )
    recording = proc.stdout.split("re-recording the examples live", 1)[1]
    assert "record_mode=all" in recording and "collected 1 item" in recording
    assert "test_example.py" in recording and "test_other" not in recording
    assert [e for e in seen if "request" in e]  # the named example called the server


def test_files_without_record_examples_are_a_usage_error(tmp_path: Path) -> None:
    proc, seen = lanes.lane(tmp_path, "", "examples/test_example.py", die_at="never")
    assert proc.returncode == 2
    assert "usage:" in proc.stderr and "[--record-examples] [EXAMPLE_FILE ...]" in proc.stderr
    assert seen == []
