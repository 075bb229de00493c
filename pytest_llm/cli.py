"""``python -m pytest_llm``: work with JSON reports outside a pytest run.

::

    python -m pytest_llm merge SHARD.json... -o merged.json
    python -m pytest_llm gate REPORT.json --baseline main.json [limits] [outputs]
    python -m pytest_llm render REPORT.json [--baseline main.json [limits]] [outputs]

``merge`` joins the reports of a suite's shards (:mod:`pytest_llm.report.merge`) and exits
as one run of the whole suite would have: 1 when a test failed (a ladder test judged over
every shard's rungs). ``gate`` is
the baseline gate of ``--llm-baseline`` (:func:`pytest_llm.baseline.compare`, with the
same limits under the same option names) on a finished report: it prints the ``llm
summary`` section and exits 1 when the gate fails. ``render`` writes the HTML report and
the Markdown step summary from a report alone. Outputs (``--html``, ``--markdown``) are
written atomically and never over an input; ``--step-summary`` appends the Markdown to
``$GITHUB_STEP_SUMMARY``.

Exit status: 0 done (the run passed, the gate passed), 1 the run (``merge``) or the gate
(``gate``) failed, 2 a usage error or a bad input, said in one line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .errors import ConfigError

if TYPE_CHECKING:
    from .baseline import Comparison, Limits

__all__ = ["main"]

PROG = "python -m pytest_llm"
#: Exit statuses.
OK, GATE_FAILED, USAGE = 0, 1, 2


class _Usage(Exception):
    """A usage error: one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _Usage(f"{message} (see {self.prog} --help)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        result: int = args.run(args)
        return result
    except (_Usage, ConfigError) as exc:
        print(f"pytest-llm: error: {exc}", file=sys.stderr)
        return USAGE


def _parser() -> _Parser:
    parser = _Parser(prog=PROG, description="Work with pytest-llm JSON reports (--llm-report).")
    commands = parser.add_subparsers(
        title="commands", metavar="COMMAND", required=True, parser_class=_Parser
    )

    merge = commands.add_parser(
        "merge",
        prog=f"{PROG} merge",
        help="merge the reports of a suite's shards into the report of one run; exit 1 "
        "when that run failed",
        description="Merge the --llm-report files of a suite's shards into one report whose "
        "figures are those of one run of the whole suite; exit 1 when that run failed (a "
        "test failed or errored, or passes on no model of its ladder).",
    )
    merge.add_argument("shards", nargs="+", type=Path, metavar="SHARD.json")
    merge.add_argument(
        "-o", "--output", type=Path, required=True, metavar="PATH", help="the merged report"
    )
    merge.set_defaults(run=_merge)

    gate = commands.add_parser(
        "gate",
        prog=f"{PROG} gate",
        help="the baseline gate on a report: exit 1 when it fails",
        description="Compare a report with a baseline report, as --llm-baseline does in a "
        "run: print the llm summary and exit 1 when the gate fails.",
    )
    gate.add_argument("report", type=Path, metavar="REPORT.json")
    _baseline_options(gate, required=True)
    _output_options(gate)
    gate.set_defaults(run=_gate)

    render = commands.add_parser(
        "render",
        prog=f"{PROG} render",
        help="write the HTML report and the Markdown step summary of a report",
        description="Write the HTML report and the Markdown summary from a JSON report "
        "alone; with --baseline they show the gate too.",
    )
    render.add_argument("report", type=Path, metavar="REPORT.json")
    _baseline_options(render, required=False)
    _output_options(render)
    render.set_defaults(run=_render)
    return parser


def _baseline_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """The gate's options, under the names of the pytest options (``--llm-...``)."""
    group = parser.add_argument_group("baseline gate (as in a pytest run)")
    group.add_argument(
        "--baseline",
        "--llm-baseline",
        dest="baseline",
        type=Path,
        required=required,
        metavar="PATH",
        help="the report to compare with (say, main's)",
    )
    group.add_argument(
        "--llm-max-score-drop",
        "--max-score-drop",
        dest="max_score_drop",
        type=float,
        metavar="DROP",
        help="allowed drop of a test's score (default: 0.1)",
    )
    group.add_argument(
        "--llm-max-latency-factor",
        "--max-latency-factor",
        dest="max_latency_factor",
        type=float,
        metavar="FACTOR",
        help="allowed growth of a model's p50 latency, as a ratio (default: 2)",
    )
    group.add_argument(
        "--llm-latency-floor-ms",
        "--latency-floor-ms",
        dest="latency_floor_ms",
        type=float,
        metavar="MS",
        help="latency growth under MS milliseconds is noise, never a regression (default: 50)",
    )
    group.add_argument(
        "--llm-max-token-factor",
        "--max-token-factor",
        dest="max_token_factor",
        type=float,
        metavar="FACTOR",
        help="allowed growth of a model's output tokens per call (default: any)",
    )
    group.add_argument(
        "--llm-fail-on-new-flags",
        "--fail-on-new-flags",
        dest="fail_on_new_flags",
        action="store_true",
        help="a test that passed in the baseline and is flagged now fails the gate",
    )
    group.add_argument(
        "--llm-baseline-optional",
        "--baseline-optional",
        dest="baseline_optional",
        action="store_true",
        help="a missing baseline file compares nothing (a first run, an expired artifact)",
    )


def _output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("outputs")
    group.add_argument("--html", type=Path, metavar="PATH", help="write the HTML report")
    group.add_argument(
        "--markdown", type=Path, metavar="PATH", help="write the Markdown summary to PATH"
    )
    group.add_argument(
        "--step-summary",
        action="store_true",
        help="append the Markdown summary to $GITHUB_STEP_SUMMARY (GitHub Actions)",
    )


# --- commands -------------------------------------------------------------------------------


def _merge(args: argparse.Namespace) -> int:
    from .report import outcome_counts
    from .report.merge import load_shards, merge_reports, run_failures

    _not_an_input(args.output, args.shards, "-o")
    doc = merge_reports(load_shards(args.shards))
    import json

    _write(args.output, json.dumps(doc, indent=1) + "\n", "-o")
    totals = doc["totals"]
    print(
        f"merged {len(args.shards)} shard reports into {args.output}: {totals['tests']} tests "
        f"({outcome_counts(totals)}), {totals['calls']} calls"
    )
    failures = run_failures(doc)
    for reason in failures:
        print(f"the run FAILED: {reason}")
    return GATE_FAILED if failures else OK


def _gate(args: argparse.Namespace) -> int:
    doc, comparison, note = _compared(args)
    from .report import summary_lines

    for line, _ in summary_lines(doc, comparison):
        print(line)
    if note:
        print(note)
    _outputs(args, doc, comparison)
    return GATE_FAILED if comparison is not None and comparison.failed else OK


def _render(args: argparse.Namespace) -> int:
    if not (args.html or args.markdown or args.step_summary):
        raise _Usage("nothing to render: give --html PATH, --markdown PATH or --step-summary")
    doc, comparison, note = _compared(args)
    if note:
        print(note)
    _outputs(args, doc, comparison)
    return OK


# --- parts ----------------------------------------------------------------------------------


def _compared(args: argparse.Namespace) -> tuple[dict[str, Any], Comparison | None, str | None]:
    """The report, its comparison with ``--baseline`` (if any), and why none was made."""
    from .baseline import compare
    from .report import load_report

    limits = _limits(args)  # a bad limit is an error before any file is read
    doc = load_report(args.report, source="report")
    if args.baseline is None:
        return doc, None, None
    if args.baseline_optional and not args.baseline.exists():
        return (
            doc,
            None,
            (
                f"baseline gate: no baseline at {args.baseline} (--llm-baseline-optional): "
                "compared nothing"
            ),
        )
    baseline = load_report(args.baseline)
    return doc, compare(baseline, doc, limits, source=str(args.baseline)), None


def _limits(args: argparse.Namespace) -> Limits:
    from .baseline import DEFAULT_LIMITS, Limits

    given = {
        name: getattr(args, name)
        for name in ("max_score_drop", "max_latency_factor", "latency_floor_ms")
        if getattr(args, name) is not None
    }
    try:
        return Limits(
            max_score_drop=given.get("max_score_drop", DEFAULT_LIMITS.max_score_drop),
            max_latency_factor=given.get("max_latency_factor", DEFAULT_LIMITS.max_latency_factor),
            latency_floor_ms=given.get("latency_floor_ms", DEFAULT_LIMITS.latency_floor_ms),
            fail_on_new_flags=bool(args.fail_on_new_flags),
            max_token_factor=args.max_token_factor,
        )
    except ValueError as exc:
        raise _Usage(f"llm baseline limit {exc}") from None


def _outputs(args: argparse.Namespace, doc: dict[str, Any], comparison: Comparison | None) -> None:
    inputs = [args.report] + ([args.baseline] if args.baseline else [])
    for path, option in ((args.html, "--html"), (args.markdown, "--markdown")):
        if path is not None:
            _not_an_input(path, inputs, option)
    if args.html is not None:
        from .report.html import render_html

        _write(args.html, render_html(doc, comparison), "--html")
    markdown = None
    if args.markdown is not None or args.step_summary:
        from .report import markdown_summary

        markdown = markdown_summary(doc, comparison)
    if args.markdown is not None and markdown is not None:
        _write(args.markdown, markdown, "--markdown")
    if args.step_summary and markdown is not None:
        summary = os.environ.get("GITHUB_STEP_SUMMARY", "").strip()
        if not summary:
            raise _Usage(
                "--step-summary: $GITHUB_STEP_SUMMARY is not set (it is in GitHub Actions)"
            )
        try:
            with open(summary, "a", encoding="utf-8") as handle:
                handle.write(markdown)
        except OSError as exc:
            raise _Usage(f"--step-summary: could not append to {summary}: {exc}") from None


def _not_an_input(path: Path, inputs: Sequence[Path], option: str) -> None:
    target = path.resolve()
    for source in inputs:
        if source.resolve() == target:
            raise _Usage(f"{option} {path} is an input: write the output to another file")
    if target.is_dir():
        raise _Usage(f"{option} {path} is a directory: give a file path")


def _write(path: Path, text: str, option: str) -> None:
    from ._files import write_text_atomic

    try:
        write_text_atomic(path, text)
    except OSError as exc:
        raise _Usage(f"{option}: could not write {path}: {exc.strerror or exc}") from None
