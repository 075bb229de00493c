"""Merging the JSON reports of a suite's shards into the report of one run.

A suite split over several CI jobs (pytest-split's ``--splits N --group I``, ``-k``, node
ids ...) writes one ``--llm-report`` per shard. :func:`merge_reports` turns them into one
report document, built by the report's own :func:`~pytest_llm.report.build_report` from
the shards' test records: totals and per-model figures (p50 and p95 latencies included)
are computed again over every test and every attempt of the union, so they equal those
of one run of the whole suite. Nothing is averaged over shards.

What must agree
    Every shard has this pytest-llm's ``schema``, the same pytest-llm version and the same base
    settings (``run.model``, ``backend``, ``seed``, ``dist``); a test (node id) is in one
    shard only; a model has one digest per host; shards of pytest-split (``run.split``)
    are every group of one ``--splits``. Anything else is a :class:`ConfigError` naming
    the field, the values and the files. There is no union of overlapping shards: an
    overlap means the shards did not come from one split, and which record is right
    cannot be told.

What is combined
    ``run.hosts`` (union, in order), ``run.digests`` (union), ``run.versions`` (the first
    shard's; each shard's own are in ``run.shards``). ``run.filtered`` is true when a
    shard selected part of the suite otherwise than as a group of pytest-split (``-k``,
    ``-m``, node ids, ``--lf``): tests of the baseline the shards did not run are then
    "not run" at the gate, not "removed"; ``run.split`` is null. ``run.wall_s`` is the
    longest shard's: shards run side by side, and ``totals.parallelism`` is the servers'
    busy time over it. Workers of xdist shards are named ``shard<N>/gw<M>`` (``N`` the
    shard's place in the arguments) in ``run.workers`` and in each test's ``worker``:
    each shard has its own ``gw0``. ``run.shards`` lists the shards: report (the path
    given), created, wall_s, tests, workers and versions. Tests keep the order of the
    files given, each in its own order. The ``ladder`` part is built again from the
    shards' rungs (:meth:`~pytest_llm.ladder.LadderSession.from_documents`). Any other
    ``run`` field must be the same in every shard.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..ladder import LadderSession
from . import SCHEMA, build_report, hosts_down, load_report, worker_rows

__all__ = ["SETTINGS", "Shard", "load_shards", "merge_reports", "run_failures"]

#: The base settings every shard must share (``run`` fields): they change what is asked.
SETTINGS = ("model", "backend", "seed", "dist")
#: ``run`` fields the merge combines itself; any other must be equal in every shard.
_COMBINED = frozenset(
    {
        *SETTINGS,
        "wall_s",
        "hosts",
        "hosts_down",
        "workers",
        "digests",
        "filtered",
        "split",
        "versions",
        "shards",
    }
)
_FIX = "merge the reports of one split run (the same command and settings in every shard)"
_SHOWN = 5  # node ids named in an overlap message


@dataclass(frozen=True)
class Shard:
    """One shard's report: where it came from (as given) and its document."""

    source: str
    doc: Mapping[str, Any]


def load_shards(paths: Sequence[Path]) -> list[Shard]:
    """Read each shard's report (:func:`~pytest_llm.report.load_report`: a missing,
    unreadable, damaged or foreign file is a ``ConfigError`` naming it)."""
    if not paths:
        raise ConfigError("no shard reports given: pass the --llm-report file of every shard")
    seen: dict[Path, str] = {}
    shards = []
    for path in paths:
        key = path.resolve()
        if key in seen:
            raise ConfigError(f"shard {str(path)!r} is given twice (also as {seen[key]!r})")
        seen[key] = str(path)
        shards.append(Shard(str(path), load_report(path, source="shard")))
    return shards


def merge_reports(shards: Sequence[Shard]) -> dict[str, Any]:
    """One report document for the run the shards make up; see the module docstring."""
    if not shards:
        raise ConfigError("no shard reports given: pass the --llm-report file of every shard")
    try:
        return _merge(shards)
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ConfigError(_damaged(shards, exc)) from None


def _merge(shards: Sequence[Shard], *, whole: bool = True) -> dict[str, Any]:
    """:func:`merge_reports`; ``whole=False`` leaves out the checks between shards (to find
    which shard's records are damaged)."""
    schema = _same("schema", [(s, s.doc.get("schema")) for s in shards])
    if schema != SCHEMA:  # an older report the gate still reads: its records may lack fields
        raise ConfigError(
            f"the shard reports are {schema!r} and this pytest-llm writes {SCHEMA!r}: merge "
            "them with the pytest-llm that wrote them"
        )
    _same(
        "run.versions.pytest-llm",
        [(s, _run(s).get("versions", {}).get("pytest-llm")) for s in shards],
    )
    for name in SETTINGS:
        _same(f"run.{name}", [(s, _run(s).get(name)) for s in shards])
    if whole:
        _no_overlap(shards)
        _every_group(shards)
    tests: list[dict[str, Any]] = []
    hosts: dict[str, str] = {}  # worker -> its host (run.workers)
    for number, shard in enumerate(shards, 1):
        for row in _run(shard).get("workers") or []:
            hosts[_worker(number, row["id"])] = row["host"]
        for test in shard.doc["tests"]:
            worker = test.get("worker")
            tests.append({**test, "worker": None if worker is None else _worker(number, worker)})
    first = _run(shards[0])
    run: dict[str, Any] = {
        "wall_s": max(float(_run(s).get("wall_s") or 0.0) for s in shards),
        **{name: first.get(name) for name in SETTINGS},
        "hosts": list(dict.fromkeys(h for s in shards for h in _run(s).get("hosts") or [])),
        "hosts_down": {},
        "workers": [],
        "digests": _digests(shards),
        "filtered": any(bool(_run(s).get("filtered")) for s in shards)
        or any(_run(s).get("split") is None for s in shards),
        "split": None,
        "versions": dict(first.get("versions") or {}),
    }
    for key in sorted({k for s in shards for k in _run(s)} - _COMBINED):
        run[key] = _same(f"run.{key}", [(s, _run(s).get(key)) for s in shards])
    run["shards"] = [
        {
            "report": shard.source,
            "created": shard.doc.get("created"),
            "wall_s": _run(shard).get("wall_s"),
            "tests": len(shard.doc["tests"]),
            "workers": [_worker(n, row["id"]) for row in _run(shard).get("workers") or []],
            "versions": _run(shard).get("versions"),
        }
        for n, shard in enumerate(shards, 1)
    ]
    run["hosts_down"] = hosts_down(tests)
    run["workers"] = worker_rows(tests, hosts)
    ladders = [s.doc["ladder"] for s in shards if s.doc.get("ladder")]
    ladder = LadderSession.from_documents(ladders).document() if ladders else None
    return build_report(tests, run=run, ladder=ladder)


def run_failures(doc: Mapping[str, Any]) -> list[str]:
    """Why one run of the suite would have failed, from its report: tests that failed or
    errored (a failing rung of a test another model passes is forgiven, as in a run), and
    tests that pass on no model of their ladder. Empty when it would have passed.

    A shard judges only the rungs it ran, so a ladder test split over shards is judged
    here; the baseline gate is :func:`pytest_llm.baseline.compare`'s."""
    failed = [
        t["nodeid"]
        for t in doc["tests"]
        if t["outcome"] in ("failed", "error") and not t.get("rung_failed")
    ]
    ladder = doc.get("ladder")
    unpassed = LadderSession.from_documents([ladder]).unpassed() if ladder else []
    reasons = []
    if failed:
        reasons.append(f"{len(failed)} test(s) failed or errored: {_listed(failed)}")
    if unpassed:
        reasons.append(
            f"{len(unpassed)} test(s) pass on no model of their ladder: {_listed(unpassed)}"
        )
    return reasons


def _listed(ids: Sequence[str]) -> str:
    more = f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else ""
    return ", ".join(ids[:_SHOWN]) + more


def _run(shard: Shard) -> Mapping[str, Any]:
    run = shard.doc.get("run")
    if not isinstance(run, dict):
        raise ConfigError(f"shard {shard.source!r} is damaged: 'run' must be an object")
    return run


def _worker(number: int, worker: str) -> str:
    return f"shard{number}/{worker}"


def _same(field: str, values: Sequence[tuple[Shard, Any]]) -> Any:
    """The value every shard has for ``field``; else a ``ConfigError`` naming them."""
    distinct: dict[str, list[str]] = {}
    for shard, value in values:
        distinct.setdefault(repr(value), []).append(shard.source)
    if len(distinct) > 1:
        found = "; ".join(f"{value} in {', '.join(files)}" for value, files in distinct.items())
        raise ConfigError(f"shard reports differ in {field}: {found}; {_FIX}")
    return values[0][1]


def _no_overlap(shards: Sequence[Shard]) -> None:
    owner: dict[str, str] = {}
    twice: list[str] = []
    for shard in shards:
        for test in shard.doc["tests"]:
            nodeid = test["nodeid"]
            if nodeid in owner:
                twice.append(f"{nodeid} ({owner[nodeid]} and {shard.source})")
            else:
                owner[nodeid] = shard.source
    if twice:
        more = f" and {len(twice) - _SHOWN} more" if len(twice) > _SHOWN else ""
        raise ConfigError(
            f"{len(twice)} test(s) ran in more than one shard: {', '.join(twice[:_SHOWN])}{more}; "
            "every test must run in exactly one shard (the same --splits in every job, each "
            "--group once, no test selected twice)"
        )


def _every_group(shards: Sequence[Shard]) -> None:
    """Shards of pytest-split (``run.split``) must be every group of one ``--splits``."""
    split = [(s, _run(s).get("split")) for s in shards]
    if all(found is None for _, found in split):
        return
    _same("run.split.splits", [(s, None if f is None else f.get("splits")) for s, f in split])
    splits = int(split[0][1]["splits"])  # type: ignore[index]
    given = {int(f["group"]): s.source for s, f in split}  # type: ignore[index]
    missing = [str(g) for g in range(1, splits + 1) if g not in given]
    if missing:
        groups = ", ".join(f"{g} in {source}" for g, source in sorted(given.items()))
        raise ConfigError(
            f"group {', '.join(missing)} of the --splits={splits} shards "
            f"{'is' if len(missing) == 1 else 'are'} missing (given: {groups}): merge the "
            "report of every group"
        )


def _digests(shards: Sequence[Shard]) -> dict[str, dict[str, str]]:
    """The union of the shards' model digests; two for one model on one host are an error
    (that host served another model under the same name to another shard)."""
    found: dict[str, dict[str, str]] = {}
    source: dict[tuple[str, str], str] = {}
    for shard in shards:
        for model, by_host in (_run(shard).get("digests") or {}).items():
            for host, digest in by_host.items():
                old = found.setdefault(model, {}).setdefault(host, digest)
                if old != digest:
                    raise ConfigError(
                        f"shard reports differ in the digest of {model} at {host}: {old} in "
                        f"{source[model, host]}, {digest} in {shard.source}; the shards did "
                        "not test the same model: pull the same one on every CI machine"
                    )
                source.setdefault((model, host), shard.source)
    return found


def _damaged(shards: Sequence[Shard], exc: BaseException) -> str:
    """Which shard's records the figures could not be computed from, and what was wrong."""
    for shard in shards:
        try:
            _merge([shard], whole=False)
        except ConfigError:
            continue
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as own:
            return (
                f"shard {shard.source!r} is damaged: {_what(own)}; write it again with --llm-report"
            )
    return f"the shard reports could not be merged: {_what(exc)}"


def _what(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"a record lacks the field {exc.args[0]!r}"
    return f"{type(exc).__name__}: {exc}"
