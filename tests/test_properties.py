"""Properties that hold for every input (hypothesis): JSON found in model output, the
cassette key, the names of cassette and snapshot files, and the run report merged from
xdist workers."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from syrupy.data import Snapshot, SnapshotCollection
from syrupy.extensions.base import AbstractSyrupyExtension
from syrupy.location import PyTestLocation

from pytest_llm._files import MAX_NAME_BYTES
from pytest_llm.cassettes import CassetteSettings, _file_name, _key
from pytest_llm.errors import CassetteError
from pytest_llm.snapshot import LLMSnapshotExtension
from pytest_llm.validation import Rejected, parse_json

#: Modest and without deadlines: these run in every suite, on loaded CI machines too; no
#: example database (a failure prints how to reproduce it). Derandomized: the same examples
#: every run, so CI's verdict never depends on the luck of a draw. To explore with fresh
#: examples, set derandomize=False here and run with --hypothesis-seed=N.
PROPERTY = settings(
    max_examples=100,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
#: what a model writes around a JSON answer (no code fence of its own)
prose = st.text(max_size=40).filter(lambda s: "```" not in s)


# --- JSON in model output ------------------------------------------------------------------


@PROPERTY
@given(json_values, st.sampled_from([None, 2]))
def test_json_output_parses_to_what_was_written(value: Any, indent: int | None) -> None:
    assert parse_json(json.dumps(value, indent=indent, ensure_ascii=False)) == value


@PROPERTY
@given(json_values, st.sampled_from(["", "json", "JSON", "javascript"]), prose, prose)
@example({"code": "```py\nprint(1)\n```"}, "json", "Here it is:", "Done.")
def test_json_in_a_code_fence_is_found_among_prose(
    value: Any, language: str, before: str, after: str
) -> None:
    body = json.dumps(value, indent=2, ensure_ascii=False)  # a string may hold a fence too
    assume(before.strip() or after.strip())  # else the whole text may be JSON itself
    text = f"{before}\n```{language}\n{body}\n```\n{after}"
    assert parse_json(text) == value


@PROPERTY
@given(st.text(max_size=300))
@example("```json\n```")
@example('{"a": 1} trailing')
def test_any_text_parses_or_is_rejected_with_a_short_message(text: str) -> None:
    try:
        parse_json(text)
    except Rejected as exc:
        message = str(exc)
        assert message.startswith("the output is not valid JSON (")
        assert len(message) < 200  # the output is shortened, whatever its length


# --- the cassette key ----------------------------------------------------------------------

requests = st.dictionaries(st.text(max_size=10), json_values, max_size=6)


@PROPERTY
@given(requests)
def test_the_cassette_key_is_canonical_json_of_the_request(request: dict[str, Any]) -> None:
    key = _key(request)
    assert json.loads(key) == request  # nothing lost: distinct requests, distinct keys
    shuffled = dict(reversed(list(request.items())))
    assert _key(shuffled) == key  # the order of keys does not matter
    assert "\n" not in key


@PROPERTY
@given(requests, requests)
def test_distinct_requests_have_distinct_keys(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert (_key(a) == _key(b)) == (json.loads(json.dumps(a)) == json.loads(json.dumps(b)))


@pytest.mark.parametrize("value", [{1, 2}, object(), b"bytes"], ids=["set", "object", "bytes"])
def test_a_request_json_cannot_hold_is_a_cassette_error(value: Any) -> None:
    with pytest.raises(CassetteError, match="cannot record a request with a value JSON"):
        _key({"options": value})


# --- file names ------------------------------------------------------------------------------

test_names = st.lists(
    st.text(min_size=1, max_size=300) | st.text(alphabet="ab[]-_.", min_size=1, max_size=300),
    min_size=1,
    max_size=3,
)


@PROPERTY
@given(test_names)
@example(["..", "..", "x"])
@example(["TestA", "test_b[" + "中" * 120 + "]"])
def test_a_cassette_lies_in_its_module_folder_under_a_bounded_name(names: list[str]) -> None:
    cassettes = CassetteSettings(mode="once", rootpath=Path("/repo"))
    module = Path("/repo/tests/test_chat.py")
    path = cassettes.path_for(module, names)
    assert path.parent == cassettes.folder_for(module) == Path("/repo/tests/cassettes/test_chat")
    assert path.name.endswith(".json") and "/" not in path.name and path.name != ".json"
    assert len(path.name.encode()) <= MAX_NAME_BYTES - 30  # room for the temporary file's


@PROPERTY
@given(st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=300))
@example("test_x[a/b]", "test_x[a_b]")
@example("a" * 200 + "x", "a" * 200 + "y")
def test_distinct_tests_have_distinct_cassettes(a: str, b: str) -> None:
    assume(a != b)
    assert _file_name(a) != _file_name(b)


def location(name: str) -> PyTestLocation:
    """What syrupy's naming reads of a test location (a real one needs a collected item)."""
    stub = SimpleNamespace(
        snapshot_name=name, filepath="/repo/tests/test_chat.py", basename="test_chat"
    )
    return cast(PyTestLocation, stub)


#: a test's name (what pytest collects starts with "test") and its parameters, any text
snapshot_names = st.builds(
    "test_{}".format,
    st.text(max_size=400) | st.text(alphabet="ab[]-_.中", max_size=400),
)
indexes = st.one_of(st.just(0), st.integers(1, 10**6), st.text(max_size=300))


def snapshot_location(name: str, index: int | str) -> Path:
    return Path(LLMSnapshotExtension.get_location(test_location=location(name), index=index))


@PROPERTY
@given(snapshot_names, indexes)
@example("test_" + "中" * 90, 0)
@example("test_x[" + "a" * 300 + "]", "second" * 40)
def test_a_snapshot_lies_in_its_module_folder_under_a_bounded_name(
    name: str, index: int | str
) -> None:
    path = snapshot_location(name, index)
    assert path.parent == Path("/repo/tests/__snapshots__/test_chat")
    assert path.name.endswith(".llm.txt") and path.name != ".llm.txt"
    assert len(path.name.encode()) <= MAX_NAME_BYTES - 14  # room for syrupy's .lock sidecar


@PROPERTY
@given(snapshot_names, indexes)
def test_a_snapshot_name_that_fits_is_syrupys_own(name: str, index: int | str) -> None:
    syrupys = LLMSnapshotExtension.get_snapshot_name(test_location=location(name), index=index)
    whole = AbstractSyrupyExtension.get_snapshot_name(test_location=location(name), index=index)
    assume(syrupys == whole and len(syrupys.encode()) <= 233)
    assert snapshot_location(name, index).name == f"{syrupys}.llm.txt"


@PROPERTY
@given(snapshot_names, snapshot_names)
@example("test_x[" + "a" * 300 + "]", "test_x[" + "a" * 300 + "b]")
@example("test_" + "中" * 90, "test_" + "中" * 91)
@example("test_x[a/b]", "test_x[ab]")  # syrupy drops what a file name cannot hold
def test_distinct_snapshot_names_have_distinct_files(a: str, b: str) -> None:
    assume(a != b)
    assert snapshot_location(a, 0) != snapshot_location(b, 0)


@settings(PROPERTY, max_examples=40)
@given(snapshot_names, indexes)
def test_a_snapshot_file_reads_back_under_its_syrupy_name(name: str, index: int | str) -> None:
    syrupys = LLMSnapshotExtension.get_snapshot_name(test_location=location(name), index=index)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / snapshot_location(name, index).name
        collection = SnapshotCollection(location=str(path))
        collection.add(Snapshot(name=syrupys, data="kind: text\n---\nanswer\n"))
        LLMSnapshotExtension.write_snapshot_collection(snapshot_collection=collection)
        extension = LLMSnapshotExtension()
        read = extension.read_snapshot_collection(snapshot_location=str(path))
        assert [snapshot.name for snapshot in read] == [syrupys]
        data = extension.read_snapshot_data_from_location(
            snapshot_location=str(path), snapshot_name=syrupys, session_id=""
        )
        assert data == "kind: text\n---\nanswer\n"


# --- report merging across xdist workers ---------------------------------------------------

HOSTS = ("http://gpu1:11434", "http://gpu2:11434")
DOWN = "http://down:11434"  # refuses every connection: its tests error, it answers nothing


class DigestBackend:
    def __init__(self, host: str) -> None:
        self.host = host

    def digest(self, model: str) -> str:
        return f"sha-{model}@{self.host}"


class DigestPool:
    """Stands in for the session's backend pool at the end of a run: a digest per model and
    host, the same in every process (``skip``: hosts that were down, never asked), whether
    the recorder asks it (``digests``) or its backends (``backends``)."""

    def backends(self) -> list[DigestBackend]:
        return [DigestBackend(host) for host in (*HOSTS, DOWN)]

    def digests(self, live: dict[str, list[str]], *, skip: Any = ()) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        for host, models in live.items():
            if host not in skip:
                for model in models:
                    found.setdefault(model, {})[host] = f"sha-{model}@{host}"
        return found


calls = st.lists(
    st.fixed_dictionaries(
        {
            "model": st.sampled_from(["small", "big"]),
            "success": st.booleans(),
            "tokens_in": st.integers(0, 50),
            "tokens_out": st.integers(0, 50),
            "duration_ms": st.floats(0, 500, allow_nan=False).map(lambda v: round(v, 1)),
            "ttft_ms": st.none() | st.floats(0, 100).map(lambda v: round(v, 1)),
            "retries": st.integers(0, 2),
            "attempts": st.integers(1, 3),
            "cached": st.booleans(),
        }
    ),
    max_size=3,
)
test_specs = st.lists(
    st.fixed_dictionaries(
        {
            "host": st.sampled_from([*HOSTS, DOWN]),
            "model": st.sampled_from(["small", "big"]),
            "outcome": st.sampled_from(["passed", "failed", "setup-error"]),
            "calls": calls,
            "duration": st.floats(0, 5, allow_nan=False).map(lambda v: round(v, 3)),
        }
    ),
    min_size=1,
    max_size=8,
)


def phase_reports(index: int, spec: dict[str, Any], worker: str | None) -> list[Any]:
    """The setup, call and teardown reports of one test, as the plugin makes them (a test
    on the down host errors at setup with BackendUnreachable and asked nothing)."""
    nodeid = f"test_m.py::test_{index}"
    down = spec["host"] == DOWN
    error = {"type": "BackendUnreachable", "host": DOWN, "message": "nothing answers at down"}
    setup_failed = down or spec["outcome"] == "setup-error"
    reports = []
    for when in ("setup", "call", "teardown"):
        if when == "call" and setup_failed:
            continue
        failed = (when == "setup" and setup_failed) or (
            when == "call" and spec["outcome"] == "failed"
        )
        calls = [] if down or setup_failed else spec["calls"]
        report = pytest.TestReport(
            nodeid=nodeid,
            location=("test_m.py", index, f"test_{index}"),
            keywords={},
            outcome="failed" if failed else "passed",
            longrepr="boom" if failed else None,
            when=when,
            duration=spec["duration"] if when == "call" else 0.0,
            user_properties=[("llm", json.dumps(calls))] if when == "teardown" else [],
        )
        report.llm_host = spec["host"]  # type: ignore[attr-defined]
        report.llm_model = spec["model"]  # type: ignore[attr-defined]
        if down and when == "setup":
            report.llm_error = error  # type: ignore[attr-defined]
        if worker is not None:
            report.worker_id = worker  # type: ignore[attr-defined]
        reports.append(report)
    return reports


def recorder(worker: str | None) -> Any:
    from pytest_llm.config import HarnessConfig
    from pytest_llm.report import Recorder, ReportOptions

    return Recorder(
        options=ReportOptions(report=Path("unused.json")),
        settings=HarnessConfig(host=HOSTS[0]),
        hosts=[HOSTS[0]],
        pool=cast(Any, DigestPool()),
        worker_id=worker,
        dist="load" if worker else None,
    )


def comparable(doc: Any) -> dict[str, Any]:
    """A report document without what tells one run from another (times, which worker ran
    what, the order tests ended in)."""
    tests = sorted(
        ({k: v for k, v in test.items() if k != "worker"} for test in doc["tests"]),
        key=lambda test: test["nodeid"],
    )
    run = {k: v for k, v in doc["run"].items() if k not in ("wall_s", "workers", "dist")}
    run["hosts_down"] = {
        host: {k: v for k, v in entry.items() if k != "workers"}
        for host, entry in run["hosts_down"].items()
    }
    return {"run": run, "totals": {**doc["totals"], "wall_s": 0}, "models": doc["models"],
            "tests": tests}  # fmt: skip


@PROPERTY
@given(test_specs, st.data())
def test_merging_workers_gives_the_report_of_one_process(
    specs: list[dict[str, Any]], data: st.DataObject
) -> None:
    one = recorder(None)
    for index, spec in enumerate(specs):
        for report in phase_reports(index, spec, None):
            one.pytest_runtest_logreport(report)
    alone = one.finish()

    # the same tests spread over workers, each test's reports in order, the workers' reports
    # interleaved in any order, and the workers' outputs merged in any order
    workers = data.draw(st.integers(1, 4), label="workers")
    where = data.draw(
        st.lists(st.integers(0, workers - 1), min_size=len(specs), max_size=len(specs)),
        label="worker of each test",
    )
    queues = [
        [report for index in range(len(specs)) if where[index] == w
         for report in phase_reports(index, specs[index], f"gw{w}")]
        for w in range(workers)
    ]  # fmt: skip
    controller = recorder(None)
    locals_ = [recorder(f"gw{w}") for w in range(workers)]
    while any(queues):
        w = data.draw(st.sampled_from([w for w in range(workers) if queues[w]]), label="next")
        report = queues[w].pop(0)
        locals_[w].pytest_runtest_logreport(report)  # the worker sees it ...
        controller.pytest_runtest_logreport(report)  # ... and the controller, from xdist
    outputs = [worker.worker_output() for worker in locals_]
    for output in data.draw(st.permutations(outputs), label="order of the workers' ends"):
        controller.add_worker(output)
    merged = controller.finish()

    assert comparable(merged) == comparable(alone)
    assert {w["id"] for w in merged["run"]["workers"]} == {f"gw{w}" for w in range(workers)}
    assert sum(w["tests"] for w in merged["run"]["workers"]) == alone["totals"]["tests"]
