"""``python -m bench --smoke`` keeps working: every benchmark runs at small sizes and the
table and the JSON have their shape (the figures themselves are for ``bench/README.md``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Every row of the table, in order (bench._registry.BENCHMARKS and what each gives).
ROWS = [
    "dataset-vs-promptfoo",
    "dataset-vs-ideal",
    "parametrized-n8",
    "harness-per-call",
    "proxy-per-call-ollama",
    "proxy-per-call-openai",
    "replay-per-test",
    "collect-only-startup",
    "memory-growth",
]


def bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "OLLAMA_"))}
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_smoke_mode_runs_every_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = bench("--smoke", "--no-install", "--json", str(out), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(out.read_text())
    assert document["smoke"] is True
    assert {"nproc", "cpu", "python", "date", "load_average"} <= set(document["machine"])
    rows = document["rows"]
    assert [row["id"] for row in rows] == ROWS
    for row in rows:
        assert row["error"] is None, row
        assert row["met"] is None, row  # smoke mode gives no verdicts
        if row["skipped"] is not None:  # only promptfoo may be missing (never installed here)
            assert row["id"] == "dataset-vs-promptfoo" and "promptfoo" in row["skipped"]
            continue
        assert isinstance(row["ours"], float) and isinstance(row["reference"], float), row
        assert row["difference"] == pytest.approx(row["ours"] - row["reference"])
        if row["unit"] != "MiB":  # times are never 0; a memory growth may be
            assert row["ours"] > 0 and row["reference"] > 0, row
            assert row["ratio"] == pytest.approx(row["ours"] / row["reference"])
        assert row["target"] and row["how"]
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert table[0] == "| # | figure | ours | reference | ratio | target | met? |"
    assert len(table) == 2 + len(ROWS)
    assert "smoke mode" in done.stdout


def test_an_unknown_benchmark_is_named_with_the_choices() -> None:
    done = bench("--only", "nonsense", timeout=60)
    assert done.returncode == 2
    assert "unknown benchmark nonsense: choose from dataset, parallel," in done.stderr


def test_start_up_leaves_the_harness_unloaded_until_a_name_is_used() -> None:
    """What the start-up row measures stays fixed: loading the plugin (as pytest does for a
    suite that never uses ``llm``) imports neither the harness nor its kin, and a public
    name still loads its module when used."""
    lazy = (
        "pytest_llm.harness",
        "pytest_llm.assertions",
        "pytest_llm.proxy",
        "pytest_llm.observer",
    )
    code = (
        "import sys, pytest_llm.plugin, pytest_llm; "
        f"print(sorted(m for m in {lazy!r} if m in sys.modules)); "
        "print(pytest_llm.Harness.__module__, 'pytest_llm.harness' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == ["[]", "pytest_llm.harness True"]
