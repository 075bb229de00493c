"""FakeOllama's script engine: what to answer, how fast, and how many at once (no HTTP here).

The public data types (:class:`Reply`, :class:`RecordedRequest`), the compiler that turns the
``replies`` argument into a script, the plan of one answer (its chunks, why it ends, the fault
that cuts it short, its delays), the pacing of the chunks, the token counts, the deterministic
embeddings and the parallel slots. The HTTP plumbing is in :mod:`._http`, the routes in
:mod:`._ollama_routes` and :mod:`._openai_routes`; :mod:`._fake_ollama` puts them together.
Standard library only.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeAlias

__all__ = [
    "DEFAULT_STATUS_ERRORS",
    "DEFAULT_STREAM_ERROR",
    "EMBEDDING_DIM",
    "OLLAMA_VERSION",
    "POLL",
    "Plan",
    "RecordedRequest",
    "Replies",
    "Reply",
    "Script",
    "Slots",
    "compile_script",
    "created",
    "fake_embedding",
    "family",
    "is_zero_duration",
    "name_digest",
    "normalize_model",
    "now",
    "paced",
    "plan",
    "renormalize",
    "token_counts",
    "words",
]

#: The version reported by ``GET /api/version``.
OLLAMA_VERSION = "0.12.0"
#: The length of the vectors returned by ``/api/embed``.
EMBEDDING_DIM = 64

DEFAULT_STATUS_ERRORS: dict[int, str] = {
    400: "invalid request",
    404: "not found",
    429: "too many requests",
    500: "an error was encountered while running the model",
    503: "server busy, please try again.  maximum pending requests exceeded",
}
DEFAULT_STREAM_ERROR = "an error was encountered while running the model: unexpected EOF"
_TOKEN_RE = re.compile(r"\s*\S+|\s+")
POLL = 0.05  # seconds: how often waits look at the stop flag and the client's socket


# --------------------------------------------------------------------------------------------
# public data types


@dataclass(frozen=True, kw_only=True)
class Reply:
    """One scripted answer to a chat or generate request.

    ``content`` (and ``thinking``, sent before it) is split into word-sized tokens (each with its
    leading whitespace) and each token is one streamed chunk. Faults take precedence in this
    order: ``hang``, ``status``, then whichever of ``error_after`` / ``drop_after`` /
    ``endless_after`` comes first (counted in chunks, thinking chunks included). ``drip``
    (seconds between the bytes of a stream) and ``retry_after`` (the ``Retry-After`` of a
    ``status``) are described in the module docstring of :mod:`pytest_llm.testing._fake_ollama`.
    """

    content: str = ""
    thinking: str | None = None
    done_reason: str = "stop"
    tokens_in: int | None = None
    tokens_out: int | None = None
    load_ms: float = 0.0
    status: int | None = None
    error: str | None = None
    error_after: int | None = None
    drop_after: int | None = None
    raw_line: str | None = None
    raw_after: int = 0
    hang: bool = False
    first_token_delay: float | None = None
    token_delay: float | None = None
    drip: float | None = None
    endless_after: int | None = None
    retry_after: float | str | None = None
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    """Tools the model calls, each ``{"name": ..., "arguments": {...}}``, sent after the
    content (Ollama: a chunk whose message has ``tool_calls``; ``/v1``: a delta with
    ``tool_calls`` and ``finish_reason`` ``"tool_calls"``)."""

    def __post_init__(self) -> None:
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError(f"Reply.status must be an HTTP error status, got {self.status}")
        for name in (
            "tokens_in", "tokens_out", "error_after", "drop_after", "raw_after", "endless_after"
        ):  # fmt: skip
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"Reply.{name} must be >= 0, got {value}")
        for name in ("load_ms", "first_token_delay", "token_delay", "drip"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"Reply.{name} must be >= 0, got {value}")


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the fake server received it.

    ``path`` has no query string; ``body`` is the parsed JSON object (``{}`` when the body is
    empty or not a JSON object); ``headers`` has lower-cased names.
    """

    method: str
    path: str
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def model(self) -> str | None:
        """The ``model`` field of the body (or the legacy ``name``), if any."""
        model = self.body.get("model", self.body.get("name"))
        return model if isinstance(model, str) else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat ``messages`` of the body (``[]`` for other requests)."""
        messages = self.body.get("messages")
        if not isinstance(messages, list):
            return []
        return [m for m in messages if isinstance(m, dict)]

    @property
    def prompt(self) -> str | None:
        """The ``prompt`` of a generate request, if any."""
        prompt = self.body.get("prompt")
        return prompt if isinstance(prompt, str) else None

    @property
    def stream(self) -> bool:
        """Whether the client asked for a stream (Ollama's default is true; under ``/v1``,
        as in OpenAI's API, it is false)."""
        if self.path.startswith("/v1/"):
            return self.body.get("stream") is True
        return self.body.get("stream") is not False


Replies: TypeAlias = (
    "str | Reply | Sequence[str | Reply] | Mapping[str, Replies]"
    " | Callable[[RecordedRequest], str | Reply]"
)


def fake_embedding(text: str, dim: int = EMBEDDING_DIM) -> list[float]:
    """The deterministic embedding the fake server returns for ``text``.

    The text is lower-cased and its whitespace collapsed; each character trigram (of the text
    padded with a space on both sides) is hashed (blake2b) to one of ``dim`` coordinates and a
    sign, the signed counts are summed and the vector is L2-normalised. Texts that share most
    trigrams ("The cat sat." / "the cat sat!") thus get a cosine similarity close to 1, while
    unrelated texts get one close to 0 (noise from hash collisions: typically
    ``|cos| < 0.4`` with the default 64 dimensions).
    """
    normal = " ".join(text.lower().split())
    padded = f" {normal} " if normal else "   "
    vector = [0.0] * dim
    for i in range(len(padded) - 2):
        digest = hashlib.blake2b(padded[i : i + 3].encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % dim
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0.0:  # every trigram cancelled out: still return a unit vector
        vector[0], norm = 1.0, 1.0
    return [v / norm for v in vector]


def renormalize(vector: list[float]) -> list[float]:
    """``vector`` scaled to length 1 (as Ollama does after truncating to ``dimensions``)."""
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


# --------------------------------------------------------------------------------------------
# helpers


def normalize_model(name: str) -> str:
    """``"llama3.2"`` -> ``"llama3.2:latest"``, as Ollama resolves model names."""
    name = name.strip()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _as_reply(value: object) -> Reply:
    if isinstance(value, Reply):
        return value
    if isinstance(value, str):
        return Reply(content=value)
    raise TypeError(f"a reply must be a str or a Reply, got {type(value).__name__}")


def _tokens(text: str | None) -> list[str]:
    return _TOKEN_RE.findall(text) if text else []


def now() -> str:
    """The current time as Ollama writes it (``created_at``, ``modified_at``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def words(value: object) -> int:
    """The number of words of a ``str`` (0 for anything else): the fake's token count."""
    return len(value.split()) if isinstance(value, str) else 0


def is_zero_duration(value: object) -> bool:
    """Whether a ``keep_alive`` value means "unload now"."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value == 0
    return isinstance(value, str) and value.strip() in {"0", "0s", "0m", "0h", "0ms"}


def family(model: str) -> str:
    """The model family served for ``model`` (its leading letters, else ``"llama"``)."""
    base = model.rsplit("/", 1)[-1]
    match = re.match(r"[a-z]+", base.lower())
    return match.group(0) if match else "llama"


def name_digest(model: str) -> str:
    """The default digest of ``model``: a hash of its normalised name."""
    return hashlib.sha256(normalize_model(model).encode()).hexdigest()


def created(digest: str) -> int:
    """A stable pull time (Unix seconds, in 2023-2024) that changes with the digest."""
    return 1_700_000_000 + int(hashlib.sha256(digest.encode()).hexdigest()[:6], 16) % 31_000_000


# --------------------------------------------------------------------------------------------
# the script compiler


class Script:
    """The compiled ``replies``: :meth:`next` gives the reply to one chat request."""

    def next(self, request: RecordedRequest) -> Reply:
        raise NotImplementedError


class _Fixed(Script):
    def __init__(self, reply: Reply) -> None:
        self.reply = reply

    def next(self, request: RecordedRequest) -> Reply:
        return self.reply


class _Sequence(Script):
    def __init__(self, replies: list[Reply]) -> None:
        self.replies = replies
        self.cursor = 0
        self.lock = threading.Lock()

    def next(self, request: RecordedRequest) -> Reply:
        with self.lock:
            reply = self.replies[min(self.cursor, len(self.replies) - 1)]
            self.cursor += 1
            return reply


class _ByModel(Script):
    def __init__(self, scripts: dict[str, Script]) -> None:
        self.scripts = scripts

    def next(self, request: RecordedRequest) -> Reply:
        model = normalize_model(request.model or "")
        script = self.scripts.get(model, self.scripts.get("*:latest"))
        if script is None:
            scripted = ", ".join(sorted(self.scripts))
            raise LookupError(f"no reply scripted for model {model!r} (scripted: {scripted})")
        return script.next(request)


class _Function(Script):
    def __init__(self, function: Callable[[RecordedRequest], str | Reply]) -> None:
        self.function = function

    def next(self, request: RecordedRequest) -> Reply:
        return _as_reply(self.function(request))


def compile_script(replies: Replies) -> Script:
    """The script for ``replies`` (any of the forms the module docstring lists)."""
    if isinstance(replies, str | Reply):
        return _Fixed(_as_reply(replies))
    if isinstance(replies, Mapping):
        return _ByModel({normalize_model(k): compile_script(v) for k, v in replies.items()})
    if callable(replies):
        return _Function(replies)
    if isinstance(replies, Sequence):
        items = [_as_reply(r) for r in replies]
        if not items:
            raise ValueError("the sequence of replies is empty")
        return _Sequence(items)
    raise TypeError(f"unsupported replies: {replies!r}")


# --------------------------------------------------------------------------------------------
# the plan of one answer, and its pacing


@dataclass(frozen=True)
class Plan:
    """How a reply is sent: its chunks, why it ends, and the fault that cuts it short."""

    tokens: list[tuple[str, str]]  # (kind, text); kind is "thinking" or "content"
    done_reason: str
    fault: str | None  # "error", "drop", "endless" or None
    cut: int  # how many chunks go out before the fault
    first_delay: float
    token_delay: float


def plan(
    reply: Reply, *, think: bool, limit: object, first_token_delay: float, token_delay: float
) -> Plan:
    """What to send for ``reply``: at most ``limit`` chunks, cut short by its fault; the
    server's ``first_token_delay`` and ``token_delay`` unless the reply sets its own."""
    tokens = [("thinking", t) for t in (_tokens(reply.thinking) if think else [])]
    tokens += [("content", t) for t in _tokens(reply.content)]
    done_reason = reply.done_reason
    if isinstance(limit, int) and 0 < limit < len(tokens):
        tokens, done_reason = tokens[:limit], "length"
    fault: str | None = None
    cut = len(tokens)
    if reply.error_after is not None:
        fault, cut = "error", min(reply.error_after, len(tokens))
    if reply.drop_after is not None and (fault is None or reply.drop_after < cut):
        fault, cut = "drop", min(reply.drop_after, len(tokens))
    if reply.endless_after is not None and (fault is None or reply.endless_after < cut):
        fault, cut = "endless", min(reply.endless_after, len(tokens))
    return Plan(
        tokens=tokens,
        done_reason=done_reason,
        fault=fault,
        cut=cut,
        first_delay=first_token_delay
        if reply.first_token_delay is None
        else reply.first_token_delay,
        token_delay=token_delay if reply.token_delay is None else reply.token_delay,
    )


def paced(plan: Plan, sleep: Callable[[float], None]) -> Iterator[tuple[str, str]]:
    """The chunks before the fault, each ``(kind, text)`` after its delay (``sleep`` waits,
    and raises when the wait must end the answer)."""
    for i, chunk in enumerate(plan.tokens[: plan.cut]):
        sleep(plan.first_delay if i == 0 else plan.token_delay)
        yield chunk
    if plan.cut == 0:
        sleep(plan.first_delay)


def token_counts(
    request: RecordedRequest, reply: Reply, plan: Plan, *, chat: bool
) -> tuple[int, int]:
    """Prompt and answer token counts: scripted, else words of the prompt and chunks sent."""
    if reply.tokens_in is not None:
        tokens_in = reply.tokens_in
    elif chat:
        tokens_in = max(1, sum(words(m.get("content")) for m in request.messages))
    else:
        tokens_in = max(1, words(request.body.get("prompt")) + words(request.body.get("system")))
    tokens_out = len(plan.tokens) if reply.tokens_out is None else reply.tokens_out
    return tokens_in, tokens_out


# --------------------------------------------------------------------------------------------
# parallel slots


class Slots:
    """At most ``parallel`` requests processed at once (None: no limit), as
    ``OLLAMA_NUM_PARALLEL``; the others wait for a slot until the server stops (``stopped``)
    or their client goes away. ``max_in_flight`` is the most ever held at once."""

    def __init__(self, parallel: int | None, stopped: threading.Event) -> None:
        self.parallel = parallel
        self.in_flight = 0
        self.max_in_flight = 0
        self._stopped = stopped
        self._cond = threading.Condition()

    def hold(self, client_gone: Callable[[], bool], abort: type[BaseException]) -> _Held:
        """A context that holds a slot (raising ``abort`` if none came before the end)."""
        return _Held(self, client_gone, abort)

    def acquire(self, client_gone: Callable[[], bool]) -> bool:
        with self._cond:
            while self.parallel is not None and self.in_flight >= self.parallel:
                if self._stopped.is_set() or client_gone():
                    return False
                self._cond.wait(POLL)
            if self._stopped.is_set():
                return False
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return True

    def release(self) -> None:
        with self._cond:
            self.in_flight -= 1
            self._cond.notify()

    def wake(self) -> None:
        """Wake every waiter (the server is stopping)."""
        with self._cond:
            self._cond.notify_all()


class _Held:
    def __init__(
        self, slots: Slots, client_gone: Callable[[], bool], abort: type[BaseException]
    ) -> None:
        self.slots = slots
        self.client_gone = client_gone
        self.abort = abort

        self.held = False

    def __enter__(self) -> _Held:
        if not self.slots.acquire(self.client_gone):
            raise self.abort
        self.held = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> None:
        """Give the slot back now (once): the answer's last bytes are about to go out, and
        a client that has them may send its next request at once."""
        if self.held:
            self.held = False
            self.slots.release()
