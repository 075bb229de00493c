"""Writing files that other processes may read at any moment (cassettes, snapshots)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["write_text_atomic"]


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8, newlines untouched) to ``path`` all at once.

    The text goes to a temporary file in the same directory, which then replaces
    ``path`` (``os.replace`` is atomic): a reader, or another xdist worker, sees the
    old file or the new one, never a torn one; a crash leaves at most a stray
    ``.*.tmp`` file. Raises ``OSError``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a committed file should be readable
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
