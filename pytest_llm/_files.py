"""Writing files that other processes may read at any moment (cassettes, snapshots), and
reading them back.

A file is written to a temporary file beside it, which then replaces it: a reader sees
the old file or the new one, never a torn one. A writer killed in between leaves its
temporary file behind, so the temporary files are named to be recognised
(``.{start of the name}.{pid}.{random}.pytest-llm.tmp``, 255 bytes at most whatever the
name) and the next write into the folder removes those whose writer is gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "MAX_NAME_BYTES",
    "ORPHAN_AGE_SECONDS",
    "STALE_AGE_SECONDS",
    "hashed_name",
    "is_temporary",
    "open_atomic",
    "read_bytes",
    "remove_orphans",
    "truncate_bytes",
    "write_text_atomic",
]

#: The longest file name (one path component) most file systems take, in bytes.
MAX_NAME_BYTES = 255
#: A temporary file whose writer is no longer running is an orphan after this long.
ORPHAN_AGE_SECONDS = 10.0
#: Any temporary file not modified for this long is an orphan (a writer on another
#: machine sharing the folder, or a reused pid, cannot keep it longer).
STALE_AGE_SECONDS = 3600.0

_SUFFIX = ".pytest-llm.tmp"
_NAME_IN_TEMPORARY = 40  # bytes of the target's name kept in its temporary file's name
_TEMPORARY = re.compile(r"\..*\.(?P<pid>[0-9]+)\.[a-z0-9_]{8}" + re.escape(_SUFFIX))
#: What versions up to 0.x left behind: ``.{name}.{random}.tmp`` beside a cassette or snapshot.
_OLD_TEMPORARY = re.compile(r"\..+\.(json|llm\.txt)\.[a-z0-9_]{8}\.tmp")


def read_bytes(path: Path) -> bytes:
    """The whole file, in the fewest system calls (open, fstat, read, close): a replayed
    suite reads a cassette per test, and ``Path.read_bytes`` costs three times as much.
    Raises ``OSError`` as ``open`` does."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size + 1)  # one byte more: a file of that size ends there
        if len(data) == size:  # files are replaced whole (open_atomic), never grown
            return data
        chunks = [data]  # a short read, or a file of another kind: read to its end
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def truncate_bytes(text: str, limit: int) -> str:
    """The longest start of ``text`` whose UTF-8 encoding takes at most ``limit`` bytes."""
    return text.encode("utf-8")[: max(limit, 0)].decode("utf-8", errors="ignore")


def hashed_name(name: str, *, keep: str, limit: int) -> str:
    """``{start of keep}-{hash of name}``: at most ``limit`` bytes, distinct for distinct
    ``name`` (a 64-bit BLAKE2b digest). ``keep`` is the readable form of ``name``."""
    digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    return f"{truncate_bytes(keep, limit - len(digest) - 1)}-{digest}"


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary file of :func:`write_text_atomic` (or an older one)."""
    return bool(_TEMPORARY.fullmatch(name) or _OLD_TEMPORARY.fullmatch(name))


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8, newlines untouched) to ``path`` all at once.

    The text goes to a temporary file in the same directory, which then replaces
    ``path`` (``os.replace`` is atomic): a reader, or another xdist worker, sees the
    old file or the new one, never a torn one. Orphans of killed writers in that
    directory are removed first (:func:`remove_orphans`). Raises ``OSError``.
    """
    with open_atomic(path) as file:
        file.write(text)


@contextlib.contextmanager
def open_atomic(path: Path) -> Iterator[IO[str]]:
    """A text file (UTF-8, newlines untouched) that replaces ``path`` when the block ends
    without an exception, else is removed with ``path`` untouched: what
    :func:`write_text_atomic` does, for a file written in pieces. Raises ``OSError``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(path.parent)
    start = truncate_bytes(path.name, _NAME_IN_TEMPORARY)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{start}.{os.getpid()}.", suffix=_SUFFIX)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as file:
            yield file
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a committed file should be readable
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_orphans(folder: Path, *, now: float | None = None) -> list[Path]:
    """Remove the temporary files in ``folder`` that no live writer will finish; return them.

    A temporary file is an orphan when its writer (the pid in its name) no longer runs
    here and it has not changed for ``ORPHAN_AGE_SECONDS``, or when it has not changed
    for ``STALE_AGE_SECONDS`` whoever wrote it. A file of a live process is kept: its
    write is still under way. Errors (a file removed meanwhile) are ignored.
    """
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and name.endswith(".tmp")) or not is_temporary(name):
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
            match = _TEMPORARY.fullmatch(name)
            writer_gone = match is not None and not _running(int(match.group("pid")))
            if age >= STALE_AGE_SECONDS or (writer_gone and age >= ORPHAN_AGE_SECONDS):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (``True`` when that cannot be told)."""
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # another user's process, or a pid this system cannot hold
    return True
