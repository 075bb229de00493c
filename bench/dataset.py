"""A dataset test (``llm.evaluate``) against promptfoo on the same server and cases.

Target (issue 13, row 1): 64 cases, a server with 8 slots answering each in 250 ms, a
JSON Schema check on every answer:

* the dataset test (one ``pytest`` session, ``concurrency=8``) takes at most 0.8 x what
  ``promptfoo eval -j 8`` takes (its Ollama provider, ``is-json`` with the same schema,
  the schema also sent as ``format`` as the harness does), and
* at most 1.15 x the ideal (64 x 0.25 / 8 = 2 s) plus the plugin's start-up: the same
  session against a server that answers at once.

The three sessions alternate run by run against FakeOllama (each run's request count is
checked, so neither side answers from a cache); each figure is a median, wall clock.
promptfoo is installed with npm into a cache folder (see ``bench.promptfoo``); when that
is impossible the promptfoo row is skipped with the reason.

    python -m bench.dataset [--runs 3] [--cases 64] [--latency 0.25] [--slots 8]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench import promptfoo
from bench._report import Row, Settings, skipped, verdict
from bench._side_by_side import BenchError, chat_calls, median, pytest_args, quiet_env, run
from pytest_llm.testing import FakeOllama

VS_PROMPTFOO = 0.8
VS_IDEAL = 1.15
LABELS = ("billing", "bug", "feature")
SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": list(LABELS)},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["label", "confidence"],
}
ANSWER = json.dumps({"label": "billing", "confidence": 0.9})
PROMPT = "Classify this support ticket as billing, bug or feature; answer as JSON: {text}"
SUITE = """
import json

import pytest

from pytest_llm import load_cases

CASES = load_cases("cases.jsonl", id="id")
SCHEMA = json.loads({schema!r})

@pytest.mark.llm(concurrency={slots})
def test_tickets(llm):
    result = llm.evaluate(CASES, {prompt!r}, schema=SCHEMA, label="label")
    assert result.passes == len(CASES) == {cases}
"""


@dataclass(frozen=True)
class Sizes:
    cases: int
    latency: float
    slots: int

    @property
    def ideal_s(self) -> float:
        return self.cases * self.latency / self.slots


def write_cases(workdir: Path, sizes: Sizes) -> None:
    """The cases as JSONL, the dataset test, and promptfoo's config over the same cases."""
    lines = [
        json.dumps({"id": f"t{i}", "text": f"ticket {i}: I was charged twice for plan {i}"})
        for i in range(sizes.cases)
    ]
    (workdir / "cases.jsonl").write_text("\n".join(lines) + "\n")
    (workdir / "pytest.ini").write_text("[pytest]\n")
    (workdir / "test_dataset.py").write_text(
        SUITE.format(schema=json.dumps(SCHEMA), slots=sizes.slots, prompt=PROMPT, cases=sizes.cases)
    )
    config = {
        "description": "pytest-llm bench: the dataset row",
        "prompts": [PROMPT.replace("{text}", "{{text}}")],
        "providers": [
            {"id": "ollama:chat:llama3.2", "config": {"format": SCHEMA, "temperature": 0}}
        ],
        "defaultTest": {"assert": [{"type": "is-json", "value": SCHEMA}]},
        "tests": [{"vars": json.loads(line)} for line in lines],
    }
    (workdir / "promptfooconfig.yaml").write_text(json.dumps(config, indent=2) + "\n")


def dataset_session(workdir: Path, fake: FakeOllama, sizes: Sizes) -> float:
    before = chat_calls(fake)
    done = run(pytest_args("-p", "no:xdist", f"--llm-host={fake.url}"), cwd=workdir,
               env=quiet_env(), timeout=300, what="the dataset test")  # fmt: skip
    if chat_calls(fake) - before != sizes.cases:
        raise BenchError(f"the dataset test made {chat_calls(fake) - before} calls, "
                         f"not {sizes.cases}")  # fmt: skip
    return done.wall_s


def promptfoo_session(workdir: Path, tool: promptfoo.Promptfoo, fake: FakeOllama,
                      sizes: Sizes) -> float:  # fmt: skip
    before = chat_calls(fake)
    args = [str(tool.executable), "eval", "-c", "promptfooconfig.yaml", "-j", str(sizes.slots),
            "--no-cache", "--no-progress-bar", "--no-table", "--no-share"]  # fmt: skip
    env = tool.env(workdir / ".promptfoo", OLLAMA_BASE_URL=fake.url)
    done = run(args, cwd=workdir, env=env, timeout=300, what="promptfoo eval")
    if chat_calls(fake) - before != sizes.cases:
        raise BenchError(f"promptfoo made {chat_calls(fake) - before} calls, not {sizes.cases}")
    if f"{sizes.cases} passed (100%)" not in done.stdout.replace(",", ""):
        raise BenchError(f"promptfoo did not pass every case:\n{done.stdout[-1500:]}")
    return done.wall_s


def measure(
    workdir: Path, sizes: Sizes, runs: int, tool: promptfoo.Promptfoo | None, warmup: bool = True
) -> dict[str, float]:
    """Median wall seconds: the dataset test, its start-up (instant server), promptfoo."""
    write_cases(workdir, sizes)
    walls: dict[str, list[float]] = {"dataset": [], "startup": [], "promptfoo": []}
    with (
        FakeOllama(ANSWER) as instant,
        FakeOllama(ANSWER, first_token_delay=sizes.latency, parallel=sizes.slots) as loaded,
    ):
        if warmup:  # bytecode, the OS file cache, promptfoo's database
            dataset_session(workdir, instant, sizes)
            if tool is not None:
                promptfoo_session(workdir, tool, instant, sizes)
        for _ in range(runs):
            walls["dataset"].append(dataset_session(workdir, loaded, sizes))
            if tool is not None:
                walls["promptfoo"].append(promptfoo_session(workdir, tool, loaded, sizes))
            walls["startup"].append(dataset_session(workdir, instant, sizes))
        peak = loaded.max_in_flight
    figures = {f"{name}_s": median(values) for name, values in walls.items() if values}
    return {**figures, "ideal_s": sizes.ideal_s, "server_peak": peak}


def rows(settings: Settings) -> list[Row]:
    sizes = Sizes(cases=settings.size(64, 8), latency=0.02 if settings.smoke else 0.25,
                  slots=settings.size(8, 4))  # fmt: skip
    runs = settings.runs if settings.smoke else max(3, min(settings.runs, 5))
    figure = (
        f"dataset test, {sizes.cases} cases x {sizes.latency * 1000:.0f} ms, "
        f"{sizes.slots} slots, schema"
    )
    tool: promptfoo.Promptfoo | None = None
    why = ""
    try:
        # smoke mode uses promptfoo when it is already installed, and never installs it
        tool = promptfoo.install(allowed=settings.install and not settings.smoke)
    except promptfoo.Unavailable as exc:
        why = str(exc)
        settings.log(f"promptfoo skipped: {why}")
    f = measure(settings.workdir, sizes, runs, tool, warmup=not settings.smoke)
    ideal_plus = VS_IDEAL * sizes.ideal_s + f["startup_s"]
    how = (f"alternating, median of {runs} sessions each, wall clock; server peak "
           f"{f['server_peak']} in flight")  # fmt: skip
    result = []
    if tool is None:
        result.append(skipped("dataset-vs-promptfoo", f"{figure}, vs promptfoo",
                              f"≤ {VS_PROMPTFOO} x promptfoo", why))  # fmt: skip
    else:
        result.append(
            Row(
                "dataset-vs-promptfoo",
                f"{figure}, vs promptfoo",
                "s",
                f["dataset_s"],
                f["promptfoo_s"],
                f"≤ {VS_PROMPTFOO} x promptfoo",
                verdict(settings, f["dataset_s"] <= VS_PROMPTFOO * f["promptfoo_s"]),
                how=f"reference: promptfoo {tool.version} `eval -j {sizes.slots}` (Ollama "
                f"provider, `is-json` with the schema, no cache) on the same cases; {how}",
                extra=f,
            )
        )
    result.append(
        Row(
            "dataset-vs-ideal",
            f"{figure}, vs ideal",
            "s",
            f["dataset_s"],
            sizes.ideal_s + f["startup_s"],
            f"≤ {VS_IDEAL} x ideal + start-up",
            verdict(settings, f["dataset_s"] <= ideal_plus),
            how=f"reference: the ideal {sizes.ideal_s:.2f} s + the same session against an "
            f"instant server (start-up {f['startup_s']:.2f} s); the limit is "
            f"{ideal_plus:.2f} s; {how}",
            extra=f,
        )
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cases", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.25)
    parser.add_argument("--slots", type=int, default=8)
    args = parser.parse_args()
    sizes = Sizes(args.cases, args.latency, args.slots)
    try:
        tool: promptfoo.Promptfoo | None = promptfoo.install()
    except promptfoo.Unavailable as exc:
        print(f"promptfoo skipped: {exc}")
        tool = None
    with tempfile.TemporaryDirectory() as tmp:
        f = measure(Path(tmp), sizes, args.runs, tool)
    for name, value in f.items():
        print(f"{name:12}: {value:.3f}")


if __name__ == "__main__":
    main()
