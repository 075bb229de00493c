"""Cassettes: record real model answers once, replay them exactly (no server, no GPU).

One readable JSON file per test holds its recorded calls. A call is looked up by
everything that changes its answer — backend, model, messages, format/schema,
temperature, seed, max_tokens, options and the sample index (chat); backend, model
and input texts (embed) — so a changed prompt or model is a *miss*, never a wrong
replay. Hosts, headers, keys and anything else from the environment are never written.

The model's identity is stored beside each recording: the Ollama digest, or what an
OpenAI-compatible server tells of the model (``/models``), plus the ``model_version``
the user declares. Whenever the server answers, every mode compares it with the live
identity before replaying: a model changed since the recording is never replayed
silently (see the ``identity`` column).

Modes (as in vcrpy / pytest-recording):

================  ===================================================  ==================
mode              what it does                                         identity changed
================  ===================================================  ==================
``off``           always live; nothing read or written (the default)   -
``none``          replay only; a call with no recording is an error    error
``verify``        replay only, and the server must tell the identity   error
``once``          replay when the test has a cassette file; without    error
                  one, call live and record
``new_episodes``  replay what is recorded, call live and record what   re-recorded
                  is not
``all``           call live and overwrite the cassette                 re-recorded
================  ===================================================  ==================

A test that ends in an infrastructure error (server down, cassette miss) never writes
its cassette: a good recording is not replaced by a partial one.

A test's cassette is read at its first call and written (atomically) at its end,
then dropped: memory stays flat however many tests run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shlex
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from . import properties
from ._files import read_bytes, write_text_atomic
from .backends import Backend, ChatRequest, model_identity
from .config import ini_path
from .errors import CassetteError, ConfigError
from .result import Completion

__all__ = [
    "MODES",
    "PROPERTY",
    "Cassette",
    "CassetteBackend",
    "CassetteSettings",
    "CassetteSummary",
]

MODES = ("off", "none", "verify", "once", "new_episodes", "all")
#: The ``user_properties`` name under which a test's cassette events travel (re-recordings).
PROPERTY = properties.CASSETTE
#: The modes that replay only (they never call the model).
_REPLAY_ONLY = ("none", "verify")
#: The value of the ``pytest_llm_cassette`` field: the version of the file format.
FORMAT_VERSION = 1

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-\[\]=,+]")
_MAX_NAME = 120
_SHOWN = 60

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class CassetteSettings:
    """The session's record mode and where cassettes live (``--llm-record-mode`` & co)."""

    mode: str = "off"
    directory: Path | None = None
    """``None``: ``cassettes/<module>/`` next to each test module."""
    rootpath: Path = Path()
    invocation_dir: Path = Path()
    """Where pytest was started: paths in messages and commands are relative to it."""
    command_options: tuple[str, ...] = ()
    """Options repeated in the record command a miss suggests (a ``--llm-cassette-dir``)."""
    prune: bool = False
    """``--llm-prune``: delete recordings and cassettes that no test of the run used."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(
                f"llm record mode {self.mode!r} is invalid: expected one of {', '.join(MODES)}"
            )

    @classmethod
    def from_config(cls, config: pytest.Config) -> CassetteSettings:
        """Option > ini > ``off``; an ini directory is relative to the ini file."""
        mode = config.getoption("llm_record_mode") or config.getini("llm_record_mode") or "off"
        option_dir: str | None = config.getoption("llm_cassette_dir")
        directory = ini_path(config, "llm_cassette_dir", "directory")
        command: tuple[str, ...] = ()
        if option_dir:
            directory = Path(config.invocation_params.dir, option_dir)
            command = (f"--llm-cassette-dir={option_dir}",)
        return cls(
            mode=mode.strip(),
            directory=directory,
            rootpath=config.rootpath,
            invocation_dir=config.invocation_params.dir,
            command_options=command,
            prune=bool(config.getoption("llm_prune")),
        )

    def cassette_for(self, item: pytest.Item) -> Cassette:
        names = [n.name for n in item.listchain() if isinstance(n, pytest.Class)] + [item.name]
        test = "::".join([self.shown(item.path), *names])
        return Cassette(self.path_for(item.path, names), self, test=test)

    def folder_for(self, module: Path) -> Path:
        """The directory holding the cassettes of the tests in ``module``."""
        return _folder(self.directory, self.rootpath, module)

    def holds_cassettes(self, path: Path) -> bool:
        """Whether ``path`` is the cassette folder of a test module (:meth:`folder_for`)."""
        if self.directory is None:  # <module's folder>/cassettes/<module's stem>
            if path.parent.name != "cassettes":
                return False
            module = path.parent.parent / f"{path.name}.py"
        else:  # <directory>/<module's path from the rootdir, without .py>
            if not str(path).startswith(os.path.join(self.directory, "")):
                return False
            relative = path.relative_to(self.directory)
            module = self.rootpath / relative.parent / f"{relative.name}.py"
        return module.is_file() and path.is_dir()

    def path_for(self, module: Path, names: Sequence[str]) -> Path:
        """The cassette of the test named ``names`` (classes, then the function) in ``module``."""
        return self.folder_for(module) / _file_name(".".join(names))

    def unused_files(self, nodeids: Sequence[str]) -> list[Path]:
        """Cassette files in the folders of these tests' modules that belong to none of them.

        ``nodeids`` must be every test of those modules (no ``-k``, ``-m`` or ``::``
        selection), or the cassettes of the tests left out would look unused.
        """
        expected: dict[Path, set[Path]] = defaultdict(set)
        for nodeid in nodeids:
            module, *names = nodeid.split("::")
            path = self.path_for(self.rootpath / module, names)
            expected[path.parent].add(path)
        return sorted(
            file
            for folder, used in expected.items()
            if folder.is_dir()
            for file in folder.glob("*.json")
            if file not in used
        )

    def shown(self, path: Path) -> str:
        """``path`` as the user typing commands where pytest was started would write it."""
        return _relative(path, self.invocation_dir)


# a module's folder and shown path, asked by each of its tests: worked out once per module
@functools.lru_cache(maxsize=1024)
def _folder(directory: Path | None, rootpath: Path, module: Path) -> Path:
    if directory is None:
        return module.parent / "cassettes" / module.stem
    try:
        relative = module.relative_to(rootpath)
    except ValueError:
        relative = Path(module.name)
    return directory / relative.with_suffix("")


@functools.lru_cache(maxsize=1024)
def _relative(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(path, start)
    except ValueError:  # another drive (Windows)
        return str(path)


class CassetteSummary:
    """The run's ``llm cassettes`` section: re-recordings, unused recordings and files.

    A pytest plugin object (registered by :mod:`pytest_llm.plugin`) on the process that
    prints the summary. Per-test events arrive in the test reports (``PROPERTY``), so
    they reach the xdist controller as they are; which tests exist it learns from the
    collection (``collected``, fed by the xdist hooks on the controller).
    """

    def __init__(self, settings: CassetteSettings, *, filtered: bool, worker: bool) -> None:
        self.settings = settings
        self.filtered = filtered  # -k, -m, ::, --lf ...: cassette files are not judged
        self.worker = worker
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.nodeids: list[str] | None = None
        self.unused_files: list[Path] = []

    def collected(self, nodeids: Sequence[str]) -> None:
        if self.nodeids is None:
            self.nodeids = list(nodeids)

    @pytest.hookimpl
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if session.items:
            self.collected([item.nodeid for item in session.items])

    @pytest.hookimpl
    def pytest_ignore_collect(self, collection_path: Path) -> bool | None:
        """Cassette folders are not walked for tests: they hold cassettes only, and pytest
        would look at each of a suite's thousands of files and ask every plugin of it."""
        return True if self.settings.holds_cassettes(collection_path) else None

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown":
            for name, value in report.user_properties:
                if name == PROPERTY:
                    self.events.append((report.nodeid, json.loads(str(value))))

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.worker or self.filtered or not self.nodeids or self.settings.mode == "off":
            return
        if session.testsfailed and self.settings.prune:
            return  # a failed run prunes nothing: a test that failed early used less
        self.unused_files = self.settings.unused_files(self.nodeids)
        if self.settings.prune:
            for path in self.unused_files:
                path.unlink(missing_ok=True)

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.worker:
            return
        lines = []
        for nodeid, event in self.events:
            for change in event.get("rerecorded", ()):
                lines.append(
                    f"{nodeid}: re-recorded, the model changed: {change['model']!r} was "
                    f"{change['old']}, now {change['new']}"
                )
            if event.get("pruned"):
                lines.append(f"{nodeid}: {event['pruned']} unused recording(s) pruned")
            elif event.get("unused"):
                lines.append(f"{nodeid}: {event['unused']} unused recording(s) in its cassette")
        done = "deleted" if self.settings.prune else "unused"
        lines += [
            f"{self.settings.shown(path)}: cassette of no test ({done})"
            for path in self.unused_files
        ]
        if not lines:
            return
        terminalreporter.write_sep("=", "llm cassettes")
        for line in lines:
            terminalreporter.write_line(line)
        if not self.settings.prune and (
            self.unused_files or any("unused" in e for _, e in self.events)
        ):
            terminalreporter.write_line(
                "re-record what changed and delete what no test uses with: "
                "pytest --llm-record-mode=new_episodes --llm-prune"
            )


def _file_name(name: str) -> str:
    """A portable file name for a test; a hash keeps sanitised or shortened names apart."""
    safe = _UNSAFE.sub("_", name)
    if safe != name or len(safe) > _MAX_NAME:
        safe = f"{safe[:_MAX_NAME]}-{hashlib.blake2b(name.encode(), digest_size=4).hexdigest()}"
    return f"{safe}.json"


class Cassette:
    """The recordings of one test. Thread-safe (``Harness.map`` plays calls concurrently)."""

    def __init__(self, path: Path, settings: CassetteSettings, *, test: str) -> None:
        self.path = path
        self.mode = settings.mode
        self.test = test
        self._settings = settings
        self._lock = threading.Lock()
        self._loaded = False
        self._existed = False
        self._broken: CassetteError | None = None
        self._interactions: list[dict[str, Any]] = []
        self._asked: defaultdict[str, int] = defaultdict(int)
        self._dirty = False
        #: Recordings made again in ``new_episodes`` because the model changed.
        self.rerecorded: list[dict[str, str]] = []
        #: Recordings no call of the test asked for (a changed prompt, a removed call), and
        #: how many of them ``--llm-prune`` removed; known after :meth:`save`.
        self.unused = self.pruned = 0

    def wrap(self, backend: Backend) -> CassetteBackend:
        """``backend`` seen through this cassette."""
        return CassetteBackend(lambda: backend, self, name=backend.name, host=backend.host)

    def play(
        self,
        request: dict[str, Any],
        *,
        live: Callable[[], T],
        encode: Callable[[T], dict[str, Any]],
        decode: Callable[[Mapping[str, Any]], T],
        identity: Callable[[], str | None],
        server: str,
    ) -> T:
        """Replay the answer to ``request`` or get it ``live`` (and record it), per the mode.

        The n-th identical request of a test gets the n-th recorded answer (in
        ``none``/``once`` the last one repeats; in ``new_episodes`` a new one is recorded).
        ``decode`` gets the whole recorded interaction; ``identity`` tells the live model's
        identity (``None`` when the server is down or cannot tell); ``server`` names it.
        """
        key = _key(request)
        current = identity()  # None: the server is down or cannot tell
        with self._lock:
            self._load()
            n = self._asked[key]
            self._asked[key] += 1
            recorded = [i for i in self._interactions if i["key"] == key]
            if n == 0 and recorded:
                recorded = self._check_identity(request, recorded, current, server)
            if recorded and self._replays:
                if self.mode != "new_episodes":
                    return decode(recorded[min(n, len(recorded) - 1)])
                if n < len(recorded):
                    return decode(recorded[n])
            if not self._records:
                raise self._miss(request)
        answer = live()
        entry = {
            "key": key,
            "request": request,
            "model_identity": current,
            "response": encode(answer),
        }
        with self._lock:
            self._interactions.append(entry)
            self._dirty = True
        return answer

    def save(self, *, keep: bool = False, complete: bool = True) -> None:
        """Write the cassette if this test recorded anything; then forget its contents.

        ``keep``: the test ended in an infrastructure error, so what it recorded is partial
        and the file on disk, if any, stays as it is. ``complete``: the test passed, so a
        recording none of its calls asked for is unused (counted, and removed with
        ``--llm-prune``); after a failure later calls may just not have happened.
        """
        with self._lock:
            interactions, dirty = self._interactions, self._dirty and self._broken is None
            asked = set(self._asked)
            self._interactions, self._asked, self._dirty = [], defaultdict(int), False
        if keep or not asked:  # a partial run, or no call: nothing is known to be unused
            return
        used = [i for i in interactions if i["key"] in asked]
        self.unused = len(interactions) - len(used) if complete else 0
        if self.unused and self._settings.prune and self._broken is None:
            interactions, dirty, self.pruned = used, True, self.unused
        if not dirty:
            return
        ordered = sorted(interactions, key=lambda i: str(i["key"]))  # stable: stable diffs
        document = {
            "pytest_llm_cassette": FORMAT_VERSION,
            "interactions": [{k: v for k, v in i.items() if k != "key"} for i in ordered],
        }
        try:
            write_text_atomic(self.path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        except OSError as exc:
            raise CassetteError(
                f"cannot write cassette {self._shown_path}: {exc.strerror or exc}"
            ) from None

    # --- internals -----------------------------------------------------------------------

    @property
    def _replays(self) -> bool:
        return self.mode in (*_REPLAY_ONLY, "new_episodes") or (
            self.mode == "once" and self._existed
        )

    def _check_identity(
        self,
        request: Mapping[str, Any],
        recorded: list[dict[str, Any]],
        current: str | None,
        server: str,
    ) -> list[dict[str, Any]]:
        """The recordings of one request, if they may be replayed; called under the lock.

        In ``new_episodes`` recordings of another identity are dropped (recorded again);
        in the other modes that replay, a changed model is a ``CassetteError`` naming the
        old and the new identity. ``verify`` also fails when the server tells none.
        """
        old = next((i["model_identity"] for i in recorded if i.get("model_identity")), None)
        what = f"model {request['model']!r}"
        if self.mode == "verify" and (current is None or old is None):
            why = (
                f"{server} tells no identity for {what} (is it running?)"
                if current is None
                else f"the recording of {what} holds no model identity"
            )
            raise CassetteError(
                f"record mode 'verify' checks the live model against the recording of test "
                f"{self.test}, but {why}; replay without the check in record mode 'none', or "
                f"re-record with: {self._command('all')}"
            )
        if old is None or current is None or old == current:
            return recorded
        if self.mode == "new_episodes":
            self.rerecorded.append({"model": request["model"], "old": old, "new": current})
            self._interactions = [i for i in self._interactions if i["key"] != recorded[0]["key"]]
            return []
        raise CassetteError(
            f"the model changed since test {self.test} was recorded: {what} was {old}, "
            f"{server} now serves {current}; replaying would test the old model. "
            f"Re-record with: {self._command('all')}"
        )

    @property
    def _records(self) -> bool:
        return self.mode in ("new_episodes", "all") or (self.mode == "once" and not self._existed)

    @property
    def _shown_path(self) -> str:
        return self._settings.shown(self.path)

    def _load(self) -> None:
        """Read the file once (never in ``all``, which overwrites it); called under the lock."""
        if self._broken is not None:
            raise self._broken
        if self._loaded:
            return
        self._loaded = True
        if self.mode == "all":
            return
        try:  # one read, no look for the file first
            self._interactions = _parse(read_bytes(self.path))  # JSON is UTF-8
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            self._existed = True
            self._broken = CassetteError(
                f"cassette {self._shown_path} {_describe(exc)}; it was left untouched: "
                f"fix or delete it, or re-record the test with `{self._command('all')}`"
            )
            raise self._broken from None
        self._existed = True

    def _command(self, mode: str) -> str:
        options = " ".join(shlex.quote(o) for o in self._settings.command_options)
        return f"pytest {shlex.quote(self.test)} --llm-record-mode={mode}" + (
            f" {options}" if options else ""
        )

    def _miss(self, request: Mapping[str, Any]) -> CassetteError:
        where = f"cassette {self._shown_path}"
        if not self._existed:
            why, mode = f"{where} does not exist", "once"
        else:
            others = [i["request"] for i in self._interactions]
            why, mode = f"{where} {_closest(request, others)}", "new_episodes --llm-prune"
        messages = request.get("messages") or request.get("input") or [""]
        last = messages[-1]
        text = str(last.get("content", "") if isinstance(last, Mapping) else last)
        shown = text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
        return CassetteError(
            f"no recorded answer for test {self.test} ({request['endpoint']} with model "
            f"{request['model']!r}, prompt {shown!r}) in record mode {self.mode!r}: {why}. "
            f"Record it with: {self._command(mode)}"
        )


class CassetteBackend:
    """A ``Backend`` that answers from a cassette, or from its inner backend when it may
    record. The inner one is made by ``inner`` on first need: a test that only replays,
    with its server down, makes no client (``refused`` tells, without one, that the server
    refuses connections and so has no model identity to compare the recordings with)."""

    def __init__(
        self,
        inner: Callable[[], Backend],
        cassette: Cassette,
        *,
        name: str,
        host: str,
        refused: Callable[[], bool] | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self._make_inner = inner
        self._made: Backend | None = None
        self._refused = refused
        self._cassette = cassette

    @property
    def _inner(self) -> Backend:
        if self._made is None:
            self._made = self._make_inner()
        return self._made

    def chat(self, request: ChatRequest) -> Completion:
        return self._cassette.play(
            _chat_request(self.name, request),
            live=lambda: self._inner.chat(request),
            encode=_encode_completion,
            decode=_decode_completion,
            identity=lambda: self._identity(request.model, request.model_version),
            server=f"{self.name} at {self.host}",
        )

    def embed(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        record = {"endpoint": "embed", "backend": self.name, "model": model, "input": list(texts)}
        return self._cassette.play(
            record,
            live=lambda: self._inner.embed(model, texts),
            encode=lambda vectors: {"embeddings": [" ".join(map(repr, v)) for v in vectors]},
            decode=lambda i: [[float(x) for x in v.split()] for v in i["response"]["embeddings"]],
            identity=lambda: self._identity(model),
            server=f"{self.name} at {self.host}",
        )

    def digest(self, model: str) -> str | None:
        """The inner backend's identity of ``model``; ``None`` when the server cannot tell."""
        return self._identity(model)

    def close(self) -> None:
        """Nothing to do: the inner backend belongs to the session's pool."""

    def _identity(self, model: str, declared: str | None = None) -> str | None:
        if self._made is None and self._refused is not None and self._refused():
            return model_identity(None, model, declared)  # down: only what the user declared
        return model_identity(self._inner, model, declared)


# --- records -----------------------------------------------------------------------------


def _chat_request(backend: str, request: ChatRequest) -> dict[str, Any]:
    return {
        "endpoint": "chat",
        "backend": backend,
        "model": request.model,
        "messages": [dict(m) for m in request.messages],
        "format": request.format,
        "temperature": float(request.temperature),
        "seed": request.seed,
        "max_tokens": request.max_tokens,
        "options": dict(request.options),
        "sample": request.sample,
    }


def _encode_completion(c: Completion) -> dict[str, Any]:
    return {
        "content": c.content,
        "model": c.model,
        "done_reason": c.done_reason,
        "tokens_in": c.tokens_in,
        "tokens_out": c.tokens_out,
        "duration_ms": round(c.duration_ms, 3),
        "ttft_ms": None if c.ttft_ms is None else round(c.ttft_ms, 3),
        "load_ms": round(c.load_ms, 3),
        "metadata": c.metadata,
    }


def _decode_completion(interaction: Mapping[str, Any]) -> Completion:
    r = interaction["response"]
    metadata = {**(r.get("metadata") or {}), "model_identity": interaction.get("model_identity")}
    return Completion(
        content=r["content"],
        model=r.get("model", ""),
        tokens_in=r.get("tokens_in", 0),
        tokens_out=r.get("tokens_out", 0),
        duration_ms=r.get("duration_ms", 0.0),
        ttft_ms=r.get("ttft_ms"),
        load_ms=r.get("load_ms", 0.0),
        done_reason=r.get("done_reason"),
        cached=True,
        metadata=metadata,
    )


#: Made once: ``json.dumps`` with options makes an encoder per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _key(request: Mapping[str, Any]) -> str:
    """Canonical JSON of a request: equal keys, equal answers."""
    try:
        return _CANONICAL.encode(request)
    except (TypeError, ValueError) as exc:
        raise CassetteError(
            f"cannot record a request with a value JSON cannot hold: {exc}"
        ) from None


def _closest(request: Mapping[str, Any], others: list[Mapping[str, Any]]) -> str:
    """How the nearest recording differs from ``request`` (so a miss explains itself)."""
    if not others:
        return "has no recordings"
    diffs = [
        sorted(k for k in {*request, *other} if request.get(k) != other.get(k)) for other in others
    ]
    nearest = min(diffs, key=len)
    return f"has {len(others)} other recording(s); the closest differs in {', '.join(nearest)}"


def _parse(text: str | bytes) -> list[dict[str, Any]]:
    """The interactions of a cassette file; ``ValueError`` says what is wrong."""
    document = json.loads(text)
    if not isinstance(document, dict) or "pytest_llm_cassette" not in document:
        raise ValueError("is not a pytest-llm cassette (no 'pytest_llm_cassette' field)")
    version = document["pytest_llm_cassette"]
    if version != FORMAT_VERSION:
        raise ValueError(
            f"has format version {version!r}; this pytest-llm reads version {FORMAT_VERSION}"
        )
    interactions = document.get("interactions")
    if not isinstance(interactions, list):
        raise ValueError("has no 'interactions' list")
    parsed = []
    for n, entry in enumerate(interactions):
        request = entry.get("request") if isinstance(entry, dict) else None
        response = entry.get("response") if isinstance(entry, dict) else None
        endpoint = request.get("endpoint") if isinstance(request, dict) else None
        needed = {"chat": "content", "embed": "embeddings"}.get(str(endpoint))
        if not isinstance(response, dict) or needed is None or needed not in response:
            raise ValueError(
                f"has a malformed interaction #{n}: it needs a 'request' with an 'endpoint' "
                "(chat or embed) and a 'response' with its 'content' or 'embeddings'"
            )
        identity = entry.get("model_identity", entry.get("model_digest"))  # the old name
        parsed.append(
            {
                **{k: v for k, v in entry.items() if k != "model_digest"},
                "model_identity": identity,
                "key": _key(cast(dict[str, Any], request)),
            }
        )
    return parsed


def _describe(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"cannot be parsed: {exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, OSError):
        return f"cannot be read: {exc.strerror or exc}"
    if isinstance(exc, UnicodeDecodeError):
        return "cannot be parsed: it is not UTF-8 text"
    return str(exc)
