"""Snapshots of model answers on syrupy: one readable file per assertion, tolerant comparison.

``assert result == llm_snapshot`` stores (with ``--snapshot-update``) or compares the
answer in ``__snapshots__/<test module>/<test name>.llm.txt``::

    model: llama3.2
    identity: sha256:a80c4f17acd5...
    kind: text
    ---
    The capital of France is Paris.

A text answer is stored as text; a structured one (an ``LLMResult`` with ``parsed``,
or a dict, list, pydantic model ...) as indented JSON with sorted keys. The header
names the model that produced the answer and, when known, its identity
(``result.metadata["model_identity"]``, e.g. an Ollama digest). Under
``--snapshot-update`` an answer from another model (or identity) rewrites its
snapshot even when it matches, so that the header stays true; a failed comparison
after a model change names both models. Comparison modes:

``exact``      the same text (or the same JSON)
``lexical``    word similarity of the two texts >= threshold: ``2·LCS / (words a + words b)``,
               what ``difflib``'s ratio approximates (as the ``lexical_similarity`` scorer)
``embedding``  cosine similarity of the two texts' embeddings >= threshold
               (``llm_snapshot_embedding_model``, default ``nomic-embed-text``)
``structure``  the same JSON keys and value types; values may change

The mode and threshold come from ini (``llm_snapshot_mode``, ``llm_snapshot_threshold``)
or per assertion: ``assert result == llm_snapshot(mode="lexical", threshold=0.9)``.

A file is named as syrupy names it (the test's name, without the characters a file name
cannot hold) when that name takes at most 233 bytes, as every name written before did.
A longer one (a long parametrized id, a test named in CJK) is cut to a readable start
and a hash of the whole name, ``test_x[aaaa…aaa]-5f0c9a1e2b3d4c6f.llm.txt``, and the
file's first line, ``snapshot: <name>``, holds the name syrupy knows it by.

Unused snapshots are syrupy's, with one rule more (:func:`keep_snapshots`): a test
that did not pass keeps every snapshot it has, since it did not show that they are
unused. ``--snapshot-update`` deletes none of them, and a run without it does not
call them unused.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from syrupy.assertion import DiffMode, SnapshotAssertion
from syrupy.data import Snapshot, SnapshotCollection
from syrupy.extensions.base import AbstractSyrupyExtension
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode
from syrupy.location import PyTestLocation
from syrupy.types import (
    PropertyFilter,
    PropertyMatcher,
    SerializableData,
    SerializedData,
    SnapshotIndex,
)

from ._files import hashed_name, write_text_atomic
from .errors import ConfigError, LLMError
from .result import LLMResult
from .scorers import DEFAULT_EMBEDDING_MODEL, cosine_similarity, lexical_ratio
from .validation import Rejected, format_path, parse_json

__all__ = [
    "MODES",
    "Answer",
    "Comparison",
    "LLMSnapshotAssertion",
    "LLMSnapshotExtension",
    "Outcome",
    "compare",
    "file_stem",
    "keep_snapshots",
    "model_change",
    "settings_from_ini",
    "structure_differences",
]

MODES = ("exact", "lexical", "embedding", "structure")
_THRESHOLD_MODES = ("lexical", "embedding")
_HEADER_LINE = re.compile(r"(\w+): (.*)")
_SHOWN_DIFFERENCES = 10
_SUFFIX = ".llm.txt"
#: The longest file stem kept as syrupy names it: every name this extension could write
#: before names were bounded (its temporary file's name took 22 bytes more, 255 at most).
_KEPT_STEM_BYTES = 233
_HASHED_STEM_BYTES = 137  # 120 bytes of the name, "-", 16 hex digits
_HASHED_STEM = re.compile(r".*-[0-9a-f]{16}", re.DOTALL)
_NAME_HEADER = "snapshot: "

#: ``embed(model, texts)``: one vector per text (the test's backend, through its cassette).
Embed = Callable[[str, Sequence[str]], list[list[float]]]


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """How a new answer is compared with its snapshot."""

    mode: str = "exact"
    threshold: float = 0.9
    embedding_model: str = DEFAULT_EMBEDDING_MODEL

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(
                f"llm_snapshot mode {self.mode!r} is invalid: expected one of {', '.join(MODES)}"
            )
        value = self.threshold
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ConfigError(
                f"llm_snapshot threshold {value!r} is invalid: expected a number in [0, 1]"
            )

    def override(self, mode: str | None, threshold: float | None) -> Comparison:
        """This comparison with a per-assertion ``mode`` and/or ``threshold``."""
        new = dataclasses.replace(self, mode=self.mode if mode is None else mode)
        if threshold is not None:
            if new.mode not in _THRESHOLD_MODES:
                raise ConfigError(
                    f"threshold= applies to mode='lexical' or mode='embedding', not "
                    f"mode={new.mode!r}; write llm_snapshot(mode='lexical', threshold={threshold})"
                )
            new = dataclasses.replace(new, threshold=threshold)
        return new


def settings_from_ini(config: pytest.Config) -> Comparison:
    """The session's default comparison (ini ``llm_snapshot_*``); errors name the setting."""
    mode = str(config.getini("llm_snapshot_mode") or "exact").strip()
    raw = str(config.getini("llm_snapshot_threshold") or "0.9").strip()
    try:
        threshold = float(raw)
    except ValueError:
        raise ConfigError(
            f"ini llm_snapshot_threshold={raw!r} is invalid: expected a number in [0, 1]"
        ) from None
    model = str(config.getini("llm_snapshot_embedding_model") or "").strip()
    try:
        return Comparison(
            mode=mode, threshold=threshold, embedding_model=model or DEFAULT_EMBEDDING_MODEL
        )
    except ConfigError as exc:
        raise ConfigError(f"ini {exc}") from None


@dataclass(frozen=True)
class Answer:
    """What a snapshot file holds: the answer's kind (``text``/``json``), body, the model
    that produced it and that model's identity (``None`` when unknown).

    The model and identity are header lines: line breaks in them become spaces.
    """

    kind: str
    body: str
    model: str | None = None
    identity: str | None = None

    def __post_init__(self) -> None:
        for name in ("model", "identity"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, " ".join(str(value).split()) or None)

    @classmethod
    def of(cls, data: Any) -> Answer:
        """An ``LLMResult`` (its ``parsed`` value when it has one), a string, or JSON data."""
        if isinstance(data, LLMResult):
            identity = data.metadata.get("model_identity")
            identity = None if identity is None else str(identity)
            if data.parsed is None:
                return cls("text", data.content, data.model, identity)
            return cls("json", _json_text(data.parsed), data.model, identity)
        if isinstance(data, str):
            return cls("text", data)
        return cls("json", _json_text(data))

    def dumps(self) -> str:
        header = [f"{name}: {value}" for name, value in self._provenance() if value]
        return "\n".join([*header, f"kind: {self.kind}", "---", self.body]) + "\n"

    def _provenance(self) -> tuple[tuple[str, str | None], ...]:
        return (("model", self.model), ("identity", self.identity))

    def stale_for(self, answer: Answer) -> bool:
        """Whether this snapshot's header would lie about ``answer``: another model made
        it, or its known identity differs (an unknown one changes nothing). A snapshot
        that names no model (written by hand) is the user's, never stale."""
        if self.model is None or answer.model is None:
            return False
        return answer.model != self.model or answer.identity not in (None, self.identity)

    @classmethod
    def loads(cls, text: str) -> Answer:
        """Parse a snapshot file; a file without our header is a text answer (hand-written)."""
        fields: dict[str, str] = {}
        lines = text.split("\n")
        for n, line in enumerate(lines):
            if line == "---":
                body = "\n".join(lines[n + 1 :])
                body = body[:-1] if body.endswith("\n") else body
                kind = fields.get("kind", "text")
                kind = kind if kind in ("text", "json") else "text"
                return cls(kind, body, fields.get("model"), fields.get("identity"))
            match = _HEADER_LINE.fullmatch(line)
            if match is None:
                break
            fields[match.group(1)] = match.group(2)
        return cls("text", text[:-1] if text.endswith("\n") else text)

    def value(self) -> Any:
        """The body as JSON (a text answer may hold JSON too, even in a code fence)."""
        return json.loads(self.body) if self.kind == "json" else parse_json(self.body)


def _json_text(value: Any) -> str:
    if hasattr(value, "model_dump"):  # a pydantic model instance
        value = value.model_dump(mode="json")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    try:
        return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"llm_snapshot stores an LLMResult, a string, or JSON data; "
            f"{type(value).__name__} is none of them ({exc})"
        ) from None


@dataclass(frozen=True)
class Outcome:
    """The verdict of one comparison, and the line that explains it."""

    matched: bool
    reason: str


def compare(
    snapshot: Answer, answer: Answer, comparison: Comparison, embed: Embed | None = None
) -> Outcome:
    """Compare a new ``answer`` with its ``snapshot`` as ``comparison`` says."""
    mode, threshold = comparison.mode, comparison.threshold
    if snapshot.kind != answer.kind:
        return Outcome(
            False, f"the snapshot holds a {snapshot.kind} answer, this one is {answer.kind}"
        )
    if mode == "exact" or snapshot.body == answer.body:
        same = snapshot.body == answer.body
        return Outcome(
            same, "the answer is the snapshot" if same else "the answer differs (mode 'exact')"
        )
    if mode == "structure":
        try:
            differences = structure_differences(snapshot.value(), answer.value())
        except (Rejected, ValueError) as exc:
            return Outcome(False, f"structure mode compares JSON answers, but {exc}")
        if not differences:
            return Outcome(True, "same structure")
        shown = "; ".join(differences[:_SHOWN_DIFFERENCES])
        more = len(differences) - _SHOWN_DIFFERENCES
        return Outcome(
            False, f"the structure differs: {shown}" + (f" (+{more} more)" if more > 0 else "")
        )
    if mode == "lexical":
        similarity, source = lexical_ratio(snapshot.body, answer.body), ""
    else:
        if embed is None:
            raise ConfigError("embedding comparison needs the llm_snapshot fixture (a backend)")
        vectors = embed(comparison.embedding_model, [snapshot.body, answer.body])
        similarity = cosine_similarity(vectors[0], vectors[1])
        source = f" (embeddings of {comparison.embedding_model})"
    passed = similarity >= threshold
    verdict = ">=" if passed else "<"
    return Outcome(
        passed, f"{mode} similarity {similarity:.3f} {verdict} threshold {threshold:g}{source}"
    )


def model_change(snapshot: Answer, answer: Answer) -> str | None:
    """The line that says another model (or identity) made ``answer``; ``None`` when the
    model is the same and no two known identities differ."""
    if snapshot.model is None or answer.model is None:
        return None
    if snapshot.model == answer.model and (
        None in (snapshot.identity, answer.identity) or snapshot.identity == answer.identity
    ):
        return None

    def made_by(a: Answer) -> str:
        return f"{a.model} (identity {a.identity or 'unknown'})"

    if snapshot.identity is None and answer.identity is None:
        return f"the snapshot was made by model {snapshot.model}, this answer by {answer.model}"
    return f"the snapshot was made by model {made_by(snapshot)}, this answer by {made_by(answer)}"


def keep_snapshots(item: pytest.Item) -> None:
    """Keep every snapshot of ``item``, a test that did not pass.

    syrupy calls a snapshot unused when its test ran without asserting it, and
    ``--snapshot-update`` deletes it; a test that failed or errored (a cassette miss,
    a server down, a broken fixture) stopped early and shows nothing of the kind.
    syrupy keeps the snapshots of skipped tests: ``item`` counts as one of them (on an
    xdist worker too; the controller merges the workers' statuses).
    """
    session = getattr(item.config, "_syrupy", None)  # syrupy's SnapshotSession
    if session is not None:
        session.ran_item(item.nodeid, "skipped")


def _type_name(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else "string"


def structure_differences(
    expected: Any, actual: Any, path: tuple[str | int, ...] = ()
) -> list[str]:
    """Where ``actual`` does not have the keys and value types of ``expected``.

    Numbers are one type (JSON does not tell 1 from 1.0). Array items are compared
    by position, extra items with the snapshot's last item; an empty array in either
    one is no difference (the length of a list is content, not structure).
    """
    where = format_path(path)
    expected_type, actual_type = _type_name(expected), _type_name(actual)
    if expected_type != actual_type:
        return [f"{where} is {actual_type}, the snapshot has {expected_type}"]
    out: list[str] = []
    if isinstance(expected, dict):
        out += [f"missing key {format_path((*path, k))}" for k in expected if k not in actual]
        out += [f"unexpected key {format_path((*path, k))}" for k in actual if k not in expected]
        for key in expected:
            if key in actual:
                out += structure_differences(expected[key], actual[key], (*path, key))
    elif isinstance(expected, list) and expected:
        for i, item in enumerate(actual):
            out += structure_differences(expected[min(i, len(expected) - 1)], item, (*path, i))
    return out


def file_stem(name: str, whole: str) -> str:
    """The file name (without ``.llm.txt``) of the snapshot syrupy calls ``name``.

    ``whole`` is the name before syrupy left out the characters a file name cannot hold
    (``/ \\ : * ? " < > |``, control characters) and cut it to 247. A name syrupy kept
    whole and short is its file's name; any other is hashed from ``whole``, so distinct
    tests get distinct files (``test_x[a/b]`` and ``test_x[ab]`` would share one).
    """
    if name == whole and len(name.encode("utf-8")) <= _KEPT_STEM_BYTES:
        return name
    return hashed_name(whole, keep=name, limit=_HASHED_STEM_BYTES)


def _stem_of(location: str) -> str | None:
    name = Path(location).name
    return name[: -len(_SUFFIX)] if name.endswith(_SUFFIX) else None


def _is_hashed(stem: str | None) -> bool:
    return (
        stem is not None
        and len(stem.encode("utf-8")) <= _HASHED_STEM_BYTES
        and bool(_HASHED_STEM.fullmatch(stem))
    )


class LLMSnapshotExtension(SingleFileSnapshotExtension):
    """syrupy extension: readable ``.llm.txt`` files (see the module docstring).

    Constructible without arguments (syrupy's xdist controller re-creates it by name);
    ``LLMSnapshotAssertion`` sets ``comparison`` and ``embed`` before each comparison.
    """

    file_extension = "llm.txt"
    _write_mode = WriteMode.TEXT

    def __init__(self) -> None:
        self.comparison = Comparison()
        self.embed: Embed | None = None
        self.update = False  # --snapshot-update: a snapshot made by another model is rewritten
        self.outcome: Outcome | None = None
        self.model_change: str | None = None

    def serialize(
        self,
        data: SerializableData,
        *,
        exclude: PropertyFilter | None = None,
        include: PropertyFilter | None = None,
        matcher: PropertyMatcher | None = None,
    ) -> SerializedData:
        return Answer.of(data).dumps()

    def matches(
        self, *, serialized_data: SerializableData, snapshot_data: SerializableData
    ) -> bool:
        snapshot, answer = Answer.loads(str(snapshot_data)), Answer.loads(str(serialized_data))
        self.model_change = model_change(snapshot, answer)
        if self.update and snapshot.stale_for(answer):  # rewritten whatever the comparison
            self.outcome = Outcome(False, "the snapshot names another model")
            return False
        self.outcome = compare(snapshot, answer, self.comparison, self.embed)
        return self.outcome.matched

    @classmethod
    def get_file_basename(cls, *, test_location: PyTestLocation, index: SnapshotIndex) -> str:
        """syrupy's name when it fits, else a bounded, hashed one (:func:`file_stem`)."""
        return file_stem(
            cls.get_snapshot_name(test_location=test_location, index=index),
            AbstractSyrupyExtension.get_snapshot_name(test_location=test_location, index=index),
        )

    @classmethod
    def matches_test_location(
        cls, *, test_location: PyTestLocation, snapshot_location: str
    ) -> bool:
        """syrupy's rule, and a hashed file of the test: its name starts as the file's."""
        if super().matches_test_location(
            test_location=test_location, snapshot_location=snapshot_location
        ):
            return True
        stem = _stem_of(snapshot_location)
        if stem is None or not _is_hashed(stem):
            return False
        if Path(snapshot_location).parent.name != test_location.basename:
            return False
        if not test_location.matches_snapshot_site(snapshot_location):
            return False
        start = stem[:-17]
        name = cls._sanitize_filename(test_location.snapshot_name_parametrized)
        # the test's own name was cut, or a long index (name=...) follows it
        return name.startswith(start) or (start.startswith(name) and start[len(name)] in ".[")

    def read_snapshot_collection(self, *, snapshot_location: str) -> SnapshotCollection:
        """The snapshot in the file; a hashed file names it on its first line."""
        collection = super().read_snapshot_collection(snapshot_location=snapshot_location)
        if _is_hashed(_stem_of(snapshot_location)):
            name = _name_in(snapshot_location)
            if name is not None:
                collection = SnapshotCollection(location=snapshot_location)
                collection.add(Snapshot(name=name))
        return collection

    def read_snapshot_data_from_location(
        self, *, snapshot_location: str, snapshot_name: str, session_id: str
    ) -> SerializableData | None:
        try:  # newline="": an answer's "\r\n" must read back as written
            with open(snapshot_location, encoding="utf-8", newline="") as file:
                text = file.read()
        except FileNotFoundError:
            return None
        if _stem_of(snapshot_location) != snapshot_name and text.startswith(_NAME_HEADER):
            text = text.partition("\n")[2]  # the name line of a hashed file is not the answer
        return text

    @classmethod
    def write_snapshot_collection(
        cls, *, snapshot_collection: SnapshotCollection, name_order: dict[str, int] | None = None
    ) -> None:
        snapshot = next(iter(snapshot_collection))
        text = str(snapshot.data)
        if _stem_of(snapshot_collection.location) != snapshot.name:  # a hashed file name
            text = f"{_NAME_HEADER}{snapshot.name}\n{text}"
        write_text_atomic(Path(snapshot_collection.location), text)


def _name_in(location: str) -> str | None:
    """The snapshot name on the first line of a hashed file (``None``: no such line)."""
    try:
        with open(location, encoding="utf-8", newline="") as file:
            line = file.readline()
    except (OSError, UnicodeDecodeError):
        return None
    if not line.startswith(_NAME_HEADER) or not line.endswith("\n"):
        return None
    return line[len(_NAME_HEADER) : -1] or None


class LLMSnapshotAssertion(SnapshotAssertion):
    """syrupy's ``SnapshotAssertion`` with a comparison mode; the ``llm_snapshot`` fixture.

    ``llm_snapshot(mode=..., threshold=...)`` sets them for the next assertion, on top
    of syrupy's own keywords (``name=``, ``diff=`` ...).
    """

    _comparison: Comparison = Comparison()
    _next_comparison: Comparison | None = None
    _embed: Embed | None = None
    _last_outcome: Outcome | None = None
    _last_model_change: str | None = None

    @classmethod
    def of(
        cls, snapshot: SnapshotAssertion, *, comparison: Comparison, embed: Embed | None
    ) -> LLMSnapshotAssertion:
        """``snapshot`` (syrupy's fixture) using :class:`LLMSnapshotExtension`."""
        assertion = cls(
            session=snapshot.session,
            extension_class=LLMSnapshotExtension,
            test_location=snapshot.test_location,
            update_snapshots=snapshot.update_snapshots,
            update_new_snapshots_only=snapshot.update_new_snapshots_only,
        )
        assertion._comparison, assertion._embed = comparison, embed
        return assertion

    def with_defaults(self, **kwargs: Any) -> SnapshotAssertion:
        copy = super().with_defaults(**kwargs)
        if isinstance(copy, LLMSnapshotAssertion):
            copy._comparison, copy._embed = self._comparison, self._embed
        return copy

    def __call__(
        self, *, mode: str | None = None, threshold: float | None = None, **kwargs: Any
    ) -> LLMSnapshotAssertion:
        for name in ("include", "exclude", "matcher"):
            if kwargs.get(name) is not None:
                raise ConfigError(
                    f"llm_snapshot does not take {name}=: snapshot the value you want compared, "
                    "or use mode='structure' to ignore changed values"
                )
        if mode is not None or threshold is not None:
            self._next_comparison = self._comparison.override(mode, threshold)
        return cast(LLMSnapshotAssertion, super().__call__(**kwargs))

    def __eq__(self, other: Any) -> bool:
        extension = self.extension
        comparison = self._next_comparison or self._comparison
        self._next_comparison = None
        if isinstance(extension, LLMSnapshotExtension):
            extension.comparison, extension.embed, extension.outcome = comparison, self._embed, None
            extension.update, extension.model_change = self.update_snapshots, None
        matched = super().__eq__(other)
        self._last_outcome, self._last_model_change = (
            (extension.outcome, extension.model_change)
            if isinstance(extension, LLMSnapshotExtension)
            else (None, None)
        )
        error = self.executions[self.num_executions - 1].exception
        if isinstance(error, LLMError):  # a backend or config fault is a test error, not a diff
            raise error
        return matched

    __hash__ = SnapshotAssertion.__hash__

    def get_assert_diff(self, *, diff_mode: DiffMode = DiffMode.DETAILED) -> list[str]:
        lines: list[str] = super().get_assert_diff(diff_mode=diff_mode)
        outcome = self._last_outcome
        if outcome is not None and not outcome.matched:
            notes = [outcome.reason, self._last_model_change]
            lines[0:0] = [note for note in notes if note is not None]
        return lines
