"""Every JSON report the test suite writes validates against the published schema.

A plugin of the test suite (``tests/conftest.py``'s ``pytest_plugins``): after each test
that used ``pytester`` or ``tmp_path``, every ``*.json`` file there whose ``schema`` is a
pytest-llm report's is validated against ``pytest-llm-report-2.schema.json``; a report
that does not validate fails the test that wrote it, naming the file and the first
errors. Reports of other versions (a test writing a ``/1`` baseline by hand), files a
test damages on purpose (named ``damaged*.json``) and files that are not reports are left
alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

#: Larger files are not reports a test wrote (and would slow every test down).
_MAX_BYTES = 20 * 1024 * 1024


@cache
def validator() -> Any:
    import jsonschema

    from pytest_llm.report.document import json_schema

    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def problems(doc: Any) -> list[str]:
    """Why ``doc`` is not a valid report (empty when it is): each error with its place."""
    errors = sorted(validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"at /{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def written_reports(root: Path) -> Iterator[tuple[Path, Any]]:
    """The pytest-llm reports of this version under ``root``."""
    from pytest_llm.report import SCHEMA

    for path in root.rglob("*.json"):
        if path.name.startswith("damaged"):
            continue  # broken on purpose (a test of the baseline loader's errors)
        try:
            if not path.is_file() or path.stat().st_size > _MAX_BYTES:
                continue
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("schema") == SCHEMA:
            yield path, doc


@pytest.fixture(autouse=True)
def _reports_validate(request: pytest.FixtureRequest) -> Iterator[None]:
    roots = []  # known before the test runs: its folders stay on disk after their teardown
    if "pytester" in request.fixturenames:
        roots.append(request.getfixturevalue("pytester").path)
    if "tmp_path" in request.fixturenames:
        roots.append(request.getfixturevalue("tmp_path"))
    yield
    failures = []
    for root in dict.fromkeys(roots):
        for path, doc in written_reports(Path(root)):
            found = problems(doc)
            if found:
                shown = "\n  ".join(found[:5])
                failures.append(f"{path}: {len(found)} schema error(s):\n  {shown}")
    if failures:
        pytest.fail(
            "a written JSON report does not match pytest-llm-report-2.schema.json:\n"
            + "\n".join(failures),
            pytrace=False,
        )
