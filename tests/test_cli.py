"""``python -m pytest_llm``: the gate and the renderers on a finished report, and how the
command treats bad input (one line, exit status 2, no file written). The command runs
for real, as a subprocess, on reports a real session wrote."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_llm.testing import FakeOllama, RecordedRequest
from tests.test_shards import Project, clean_env, make_project

SUITE = """
def graded(result):
    return float(result.content)

def test_a(llm):
    llm.chat("a", scorer=graded)

def test_b(llm):
    llm.chat("b", scorer=graded)
"""


@dataclass
class Reports:
    project: Project
    report: Path  # test_b scored 0.5 where the baseline scored 0.9
    baseline: Path


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reports]:
    scores = {"a": "0.9", "b": "0.9"}

    def answer(request: RecordedRequest) -> str:
        return scores[str(request.messages[-1]["content"])]

    with FakeOllama(answer) as fake:
        project = make_project(tmp_path_factory.mktemp("cli"), fake)
        (project.path / "test_suite.py").write_text(SUITE)
        project.pytest("--llm-report=main.json")
        scores["b"] = "0.5"
        project.pytest("--llm-report=report.json")
        yield Reports(project, Path("report.json"), Path("main.json"))


def cli(reports: Reports, *args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pytest_llm", *map(str, args)]
    return subprocess.run(
        argv,
        cwd=reports.project.path,
        env={**clean_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def usage_error(reports: Reports, *args: str | Path) -> str:
    result = cli(reports, *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_the_gate_fails_with_exit_status_1_and_shows_the_regression(reports: Reports) -> None:
    result = cli(reports, "gate", reports.report, "--baseline", reports.baseline)
    assert result.returncode == 1, result.stdout
    assert (
        f"baseline gate FAILED with 1 regression(s) (baseline {reports.baseline}" in result.stdout
    )
    assert re.search(r"score drop +test_suite.py::test_b +0.90 +0.50 \(-0.40\)", result.stdout)


def test_the_gate_takes_the_limits_of_a_pytest_run(reports: Reports) -> None:
    result = cli(
        reports, "gate", reports.report, "--llm-baseline", reports.baseline,
        "--llm-max-score-drop", "0.5",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    assert "baseline gate passed (baseline main.json; max score drop 0.5," in result.stdout


def test_every_gate_option_of_pytest_is_an_option_of_the_gate_command(reports: Reports) -> None:
    """The two spellings cannot drift: each ``--llm-...`` option whose help says "baseline
    gate" (and ``--llm-baseline``) is accepted by ``gate`` under the same name."""
    pytest_help = subprocess.run(
        [sys.executable, "-m", "pytest", "--help"],
        cwd=reports.project.path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    options = set(re.findall(r"(--llm-[a-z-]+)[ =A-Z]*\s+baseline gate", pytest_help))
    options |= {"--llm-baseline"}
    assert len(options) >= 6, options
    gate_help = cli(reports, "gate", "--help").stdout
    for option in sorted(options):
        assert re.search(rf"{option}\b", gate_help), option


def test_a_missing_baseline_is_an_error_unless_optional(reports: Reports) -> None:
    first = usage_error(reports, "gate", reports.report, "--baseline", "gone.json")
    assert first.startswith("pytest-llm: error: --llm-baseline='gone.json': no such file; ")
    result = cli(
        reports, "gate", reports.report, "--baseline", "gone.json", "--llm-baseline-optional"
    )
    assert result.returncode == 0
    assert result.stdout.splitlines()[-1] == (
        "baseline gate: no baseline at gone.json (--llm-baseline-optional): compared nothing"
    )


def test_render_writes_the_html_and_the_markdown_from_the_report_alone(reports: Reports) -> None:
    result = cli(
        reports, "render", reports.report, "--baseline", reports.baseline,
        "--html", "out/report.html", "--markdown", "out/summary.md",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr  # render reports the gate, never fails it
    html = (reports.project.path / "out/report.html").read_text()
    markdown = (reports.project.path / "out/summary.md").read_text()
    assert html.startswith("<!DOCTYPE html>") and "test_suite.py::test_b" in html
    assert "## pytest-llm: 2 passed" in markdown
    assert "### baseline gate FAILED with 1 regression(s)" in markdown


def test_the_step_summary_is_appended_to(reports: Reports, tmp_path: Path) -> None:
    summary = tmp_path / "step-summary.md"
    summary.write_text("# an earlier step\n")
    result = cli(
        reports, "render", reports.report, "--step-summary", GITHUB_STEP_SUMMARY=str(summary)
    )
    assert result.returncode == 0, result.stderr
    text = summary.read_text()
    assert text.startswith("# an earlier step\n\n## pytest-llm: 2 passed")
    first = usage_error(reports, "render", reports.report, "--step-summary")
    assert first == (
        "pytest-llm: error: --step-summary: $GITHUB_STEP_SUMMARY is not set (it is in GitHub "
        "Actions)"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "the following arguments are required: COMMAND (see python -m pytest_llm --help)"),
        (
            ("split",),
            "argument COMMAND: invalid choice: 'split' (choose from 'merge', 'gate', 'render') "
            "(see python -m pytest_llm --help)",
        ),
        (
            ("gate", "report.json"),
            "the following arguments are required: --baseline/--llm-baseline "
            "(see python -m pytest_llm gate --help)",
        ),
        (
            ("gate", "report.json", "--baseline", "main.json", "--llm-max-score-drop", "2"),
            "llm baseline limit max_score_drop=2.0: expected a number in [0, 1], e.g. 0.1",
        ),
        (
            ("gate", "report.json", "--baseline", "main.json", "--llm-max-score-drop", "lots"),
            "argument --llm-max-score-drop/--max-score-drop: invalid float value: 'lots' "
            "(see python -m pytest_llm gate --help)",
        ),
        (
            ("render", "report.json"),
            "nothing to render: give --html PATH, --markdown PATH or --step-summary",
        ),
        (
            ("render", "report.json", "--html", "report.json"),
            "--html report.json is an input: write the output to another file",
        ),
        (
            ("render", "report.json", "--markdown", "out"),
            "--markdown out is a directory: give a file path",
        ),
        (
            ("render", "nothing.json", "--html", "x.html"),
            "report='nothing.json': no such file; write one with --llm-report PATH (for "
            "example on your main branch)",
        ),
    ],
)
def test_bad_usage_is_one_line_and_exit_status_2(
    reports: Reports, args: tuple[str, ...], message: str
) -> None:
    (reports.project.path / "out").mkdir(exist_ok=True)
    before = (reports.project.path / reports.report).read_bytes()
    assert usage_error(reports, *args) == f"pytest-llm: error: {message}"
    assert (reports.project.path / reports.report).read_bytes() == before
    assert not (reports.project.path / "x.html").exists()


def test_a_report_that_is_not_json_is_named(reports: Reports) -> None:
    (reports.project.path / "broken.json").write_text('{"schema": "pytest-llm-report/')
    first = usage_error(reports, "gate", "broken.json", "--baseline", reports.baseline)
    assert first.startswith(
        "pytest-llm: error: report='broken.json' is not a readable JSON report: Unterminated string"
    )
    assert json.loads((reports.project.path / reports.baseline).read_text())["tests"]
