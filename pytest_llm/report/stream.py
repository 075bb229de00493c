"""The report's tests kept on disk as the run goes, and the report file written from them.

A long run must not hold every test's record (its calls, answers included) until the
end: :class:`SpooledTests` keeps each finished test as one line of compact JSON in an
anonymous temporary file (``tempfile.TemporaryFile``: no name on POSIX, so a killed
session leaves nothing behind), beside the report when its folder exists. It is a
read-only ``Sequence`` of the test records, read back one at a time, which is what the
terminal summary, the HTML and Markdown reports and the baseline gate iterate over.

:func:`write_report` writes the document as ``json.dumps(doc, indent=1)`` would, to a
temporary file beside the target that then replaces it (``os.replace``), streaming the
tests one at a time: the report on disk is the previous one or the new one, never a
torn one, and a session that fails or is killed before the end leaves the previous one.
"""

from __future__ import annotations

import json
import tempfile
import weakref
from array import array
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, overload

from .._files import open_atomic
from .document import ReportedTest

__all__ = ["SpooledTests", "write_report"]

#: Made once: ``json.dumps`` with options makes an encoder per call.
_LINE = json.JSONEncoder(separators=(",", ":"), default=str)


class SpooledTests(Sequence[ReportedTest]):
    """The run's finished tests, in the order they ended, one JSON line each on disk.

    Memory: 8 bytes a test (its offset). Reading a test parses its line again, so each
    pass over the tests reads the file; the file is opened at the first test.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory if directory is not None and directory.is_dir() else None
        self._file: IO[bytes] | None = None
        self._offsets = array("q")
        self._end = 0

    def append(self, test: Mapping[str, Any]) -> None:
        """Add a finished test (a ``tests[]`` record)."""
        line = _LINE.encode(test).encode("ascii") + b"\n"
        if self._file is None:
            # open until close(), not a block: the tests are read back after the run
            self._file = tempfile.TemporaryFile(  # noqa: SIM115
                dir=self._directory, prefix=".pytest-llm-tests."
            )
            self._closing = weakref.finalize(self, self._file.close)  # if never closed
        self._file.seek(self._end)
        self._file.write(line)
        self._offsets.append(self._end)
        self._end += len(line)

    def close(self) -> None:
        """Remove the file; the tests are gone."""
        if self._file is not None:
            self._closing()
            self._file = None
        self._offsets = array("q")
        self._end = 0

    def __len__(self) -> int:
        return len(self._offsets)

    @overload
    def __getitem__(self, index: int) -> ReportedTest: ...
    @overload
    def __getitem__(self, index: slice) -> list[ReportedTest]: ...
    def __getitem__(self, index: int | slice) -> ReportedTest | list[ReportedTest]:
        if isinstance(index, slice):
            return [self._read(offset) for offset in self._offsets[index]]
        return self._read(self._offsets[index])

    def __iter__(self) -> Iterator[ReportedTest]:
        for i in range(len(self._offsets)):  # positions, not one file position: passes nest
            yield self._read(self._offsets[i])

    def _read(self, offset: int) -> ReportedTest:
        assert self._file is not None  # an offset was appended, so the file is open
        self._file.seek(offset)
        test: ReportedTest = json.loads(self._file.readline())
        return test

    def __repr__(self) -> str:
        return f"<SpooledTests: {len(self)} tests>"


def write_report(path: Path, doc: Mapping[str, Any]) -> None:
    """Write ``json.dumps(doc, indent=1) + "\\n"`` to ``path`` atomically, one test at a
    time (``doc["tests"]`` may be :class:`SpooledTests`). Raises ``OSError``."""
    with open_atomic(path) as out:
        out.write("{")
        for i, (key, value) in enumerate(doc.items()):
            out.write(f"{',' if i else ''}\n {json.dumps(key)}: ")
            if key == "tests":
                _write_list(out, value)
            else:
                out.write(_nested(json.dumps(value, indent=1), 1))
        out.write("\n}\n")


def _write_list(out: IO[str], items: Sequence[Any]) -> None:
    """A list at the document's first level, as ``json.dumps(..., indent=1)`` nests it."""
    if not items:
        out.write("[]")
        return
    out.write("[")
    for i, item in enumerate(items):
        out.write(f"{',' if i else ''}\n  {_nested(json.dumps(item, indent=1), 2)}")
    out.write("\n ]")


def _nested(text: str, level: int) -> str:
    """JSON text (indent 1) moved ``level`` levels in: JSON strings hold no raw newline."""
    return text.replace("\n", "\n" + " " * level)
