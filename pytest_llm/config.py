"""``HarnessConfig`` and how it is resolved for one test.

Precedence, closest wins: ``@pytest.mark.llm`` (function > class > module)
> command-line option > ini setting > environment > default.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from .backends.registry import kind as backend_kind
from .errors import ConfigError

if TYPE_CHECKING:
    import pytest

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MODEL",
    "HarnessConfig",
    "PoolHost",
    "config_field_names",
    "normalize_host",
    "parse_pool",
    "public_host",
]

DEFAULT_MODEL = "llama3.2"
DEFAULT_HOST = "http://127.0.0.1:11434"
#: What a quality shortfall does (``HarnessConfig.on_low_quality``).
ON_LOW_QUALITY = ("fail", "flag", "flag-all")
#: The longest pause between two attempts of the backoff (a server's Retry-After may ask more).
MAX_BACKOFF_SECONDS = 30.0
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, kw_only=True)
class HarnessConfig:
    """Everything that shapes one model call. Frozen: derive variants with :meth:`replace`."""

    model: str = DEFAULT_MODEL
    temperature: float = 0.0
    max_tokens: int | None = None
    json_mode: bool = False
    timeout_seconds: float = 60.0
    max_retries: int = 2
    retry_delay_seconds: float = 0.5
    total_timeout_seconds: float | None = None
    """The most one ``llm.chat`` may take in all: every attempt (transport retries, re-asks,
    escalations) and every pause between them. ``None``: the worst case of the attempts it
    allows, ``timeout_seconds x attempts + backoff`` (:attr:`worst_case_seconds`)."""
    host: str = DEFAULT_HOST
    backend: str = "ollama"
    seed: int | None = 42
    keep_alive: str | float | None = None
    min_score: float | None = None
    escalate_to: tuple[str, ...] = ()
    judge_model: str | None = None
    model_version: str | None = None
    """A version you declare for the tested models (a release tag, the weights' hash), part
    of their identity: recorded with every answer and compared before a replay. For servers
    that cannot tell which weights they serve (OpenAI-compatible ones)."""
    samples: int = 1
    min_pass_rate: float = 1.0
    min_accuracy: float = 1.0
    """The share of a dataset's cases that must pass (``llm.evaluate``); 1.0: every case."""
    concurrency: int = 4
    check_feedback: bool = False
    on_low_quality: str = "fail"
    """A quality shortfall (``ScoreTooLow``, ``PassRateTooLow``; with ``"flag-all"`` also
    ``OutputInvalid``) fails the test (``"fail"``) or flags it (``"flag"``, ``"flag-all"``):
    the run does not fail, the test is counted and reported as flagged."""
    """Re-ask with the ``check``'s message or the score and the scorer's reason (which can
    hold the expected answer). Off: the model is only told its answer was not accepted.
    JSON and schema errors are always told."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key (None: the backend's usual one)."""
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """Backend options passed through untouched (e.g. ``top_p``); not settable by marker."""

    def __post_init__(self) -> None:
        if isinstance(self.escalate_to, str):
            object.__setattr__(self, "escalate_to", (self.escalate_to,))
        elif isinstance(self.escalate_to, list):
            object.__setattr__(self, "escalate_to", tuple(self.escalate_to))
        elif not isinstance(self.escalate_to, tuple):
            raise _fail("escalate_to", self.escalate_to, "a model name or a list of names")
        _validate(self)
        port = backend_kind(self.backend).default_port
        object.__setattr__(self, "host", normalize_host(self.host, port))

    def replace(self, **changes: Any) -> HarnessConfig:
        """A copy with ``changes`` applied (and validated)."""
        check_field_names(changes)
        return dataclasses.replace(self, **changes)

    @property
    def backoff_seconds(self) -> float:
        """The pauses before ``max_retries`` transport retries in a row, at most:
        ``retry_delay_seconds``, doubling, each capped at 30 s (jitter only shortens them)."""
        delay = self.retry_delay_seconds
        return sum(min(delay * 2.0**k, MAX_BACKOFF_SECONDS) for k in range(self.max_retries))

    @property
    def worst_case_seconds(self) -> float:
        """The longest one ``llm.chat`` can take, whatever the server does:
        ``total_timeout_seconds`` if set, else ``timeout_seconds x attempts + backoff``, where
        ``attempts`` is ``1 + max_retries`` per model of the route."""
        if self.total_timeout_seconds is not None:
            return self.total_timeout_seconds
        attempts = (1 + self.max_retries) * len(self.models)
        return self.timeout_seconds * attempts + self.backoff_seconds

    @property
    def models(self) -> tuple[str, ...]:
        """The escalation route: ``model`` first, then ``escalate_to`` in order."""
        return (self.model, *self.escalate_to)


def config_field_names() -> list[str]:
    """The keywords ``@pytest.mark.llm`` accepts, sorted."""
    return list(_field_names())


@functools.cache
def _field_names() -> tuple[str, ...]:
    return tuple(sorted(f.name for f in fields(HarnessConfig) if f.name != "extra"))


def check_field_names(keys: Iterable[str]) -> None:
    valid = _field_names()
    unknown = sorted(set(keys).difference(valid))
    if unknown:
        raise ConfigError(
            f"unknown llm setting(s) {', '.join(map(repr, unknown))}; "
            f"valid fields are: {', '.join(valid)}"
        )


def _fail(name: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"llm setting {name}={value!r} is invalid: expected {expected}")


def _number(name: str, value: Any, *, low: float, high: float = math.inf) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not (low <= value <= high) or math.isnan(value):
        bound = f"a number >= {low}" if high == math.inf else f"a number in [{low}, {high}]"
        raise _fail(name, value, bound)


def _integer(name: str, value: Any, *, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise _fail(name, value, f"an integer >= {low}")


def _text(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise _fail(name, value, "a non-empty string")


def _validate(c: HarnessConfig) -> None:
    _text("model", c.model)
    _number("temperature", c.temperature, low=0.0, high=2.0)
    if c.max_tokens is not None:
        _integer("max_tokens", c.max_tokens, low=1)
    if not isinstance(c.json_mode, bool):
        raise _fail("json_mode", c.json_mode, "True or False")
    _number("timeout_seconds", c.timeout_seconds, low=0.001)
    _integer("max_retries", c.max_retries, low=0)
    _number("retry_delay_seconds", c.retry_delay_seconds, low=0.0)
    if c.total_timeout_seconds is not None:
        _number("total_timeout_seconds", c.total_timeout_seconds, low=0.001)
    _text("host", c.host)
    if "," in c.host:
        raise _fail("host", c.host, "one URL (a comma-separated pool is for --llm-host/llm_host)")
    _text("backend", c.backend)
    backend_kind(c.backend)  # a ConfigError naming the known kinds
    if c.seed is not None:
        _integer("seed", c.seed, low=0)
    if c.keep_alive is not None and not isinstance(c.keep_alive, str | int | float):
        raise _fail("keep_alive", c.keep_alive, "a duration such as '5m' or seconds")
    if c.min_score is not None:
        _number("min_score", c.min_score, low=0.0, high=1.0)
    for name in c.escalate_to:
        _text("escalate_to", name)
    if c.judge_model is not None:
        _text("judge_model", c.judge_model)
    if c.model_version is not None:
        _text("model_version", c.model_version)
    _integer("samples", c.samples, low=1)
    _number("min_pass_rate", c.min_pass_rate, low=0.0, high=1.0)
    _number("min_accuracy", c.min_accuracy, low=0.0, high=1.0)
    _integer("concurrency", c.concurrency, low=1)
    if c.on_low_quality not in ON_LOW_QUALITY:
        raise _fail("on_low_quality", c.on_low_quality, f"one of {', '.join(ON_LOW_QUALITY)}")
    if not isinstance(c.check_feedback, bool):
        raise _fail("check_feedback", c.check_feedback, "True or False")
    env_name = c.api_key_env
    if env_name is not None and not (isinstance(env_name, str) and _ENV_NAME.fullmatch(env_name)):
        # the value is not echoed: it may be the key itself, pasted by mistake
        raise ConfigError(
            "llm setting api_key_env must be the NAME of an environment variable "
            "(letters, digits and _, e.g. OPENAI_API_KEY), not the key itself"
        )


# --- resolution -------------------------------------------------------------------------------

#: HarnessConfig field -> (suffix of ``--llm-<suffix>`` and ini ``llm_<suffix>``, converter)
OPTION_FIELDS: dict[str, tuple[str, type]] = {
    "model": ("model", str),
    "host": ("host", str),
    "backend": ("backend", str),
    "timeout_seconds": ("timeout", float),
    "total_timeout_seconds": ("total_timeout", float),
    "max_retries": ("retries", int),
    "min_score": ("min_score", float),
    "min_accuracy": ("min_accuracy", float),
    "seed": ("seed", int),
    "judge_model": ("judge_model", str),
    "on_low_quality": ("on_low_quality", str),
    "model_version": ("model_version", str),
    "api_key_env": ("api_key_env", str),
}


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Settings taken from the environment: ``OLLAMA_HOST``."""
    env = os.environ if environ is None else environ
    host = env.get("OLLAMA_HOST", "").strip()
    return {"host": normalize_host(host)} if host else {}


#: A host name or an IPv4 address (letters, digits, ``.``, ``-``, ``_``), or an IPv6 address.
_HOSTNAME = re.compile(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+(%[A-Za-z0-9._-]+)?")


def normalize_host(host: str, default_port: int | None = 11434) -> str:
    """``localhost:11434`` or ``0.0.0.0`` → a URL the clients accept (as Ollama itself does).

    A bare host name gets ``default_port`` (the backend kind's: 11434 for Ollama, 8000
    for OpenAI-compatible servers); ``None`` leaves it without one, for a later pass that
    knows the backend.

    A value that is no ``http(s)://HOST[:PORT][/PATH]`` URL is a ``ConfigError`` that shows
    it as given (without credentials) and an example.
    """
    given = host
    host = host.strip().rstrip("/")
    bare = "://" not in host
    scheme, _, rest = ("http://" + host if bare else host).partition("://")
    hostport, slash, path = rest.partition("/")
    if hostport.startswith("0.0.0.0"):
        hostport = "127.0.0.1" + hostport[len("0.0.0.0") :]
    if bare and default_port is not None and ":" not in hostport.rsplit("]", 1)[-1]:
        hostport += f":{default_port}"
    url = f"{scheme}://{hostport}{slash}{path}"

    def invalid(why: str) -> ConfigError:
        return ConfigError(
            f"llm host {public_host(given.strip())!r} is not a valid URL: {why}; expected "
            "http(s)://HOST[:PORT], e.g. http://127.0.0.1:11434"
        )

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (parsing the port is the check)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    if parts.scheme not in ("http", "https"):
        raise invalid(f"the scheme {parts.scheme!r} is not http or https")
    if not parts.hostname:
        raise invalid("it names no host")
    if not _HOSTNAME.fullmatch(parts.hostname):
        raise invalid(f"{parts.hostname!r} is not a host name")
    if any(c.isspace() for c in parts.path):
        raise invalid(f"its path {parts.path!r} has white space")
    if "#" in url:
        raise invalid("it has a '#' part (slots, URL#N, are declared in --llm-host/llm_host only)")
    return url


class PoolHost(NamedTuple):
    """One server of a host pool (``--llm-host``): its URL and the slots declared for it."""

    url: str
    slots: int | None
    """``URL#N``'s ``N``: the requests it serves at once; ``None`` when not declared."""


def parse_pool(
    text: str, source: str = "host", default_port: int | None = 11434
) -> tuple[PoolHost, ...]:
    """``"gpu1:11434#4, gpu2:11434"`` → the normalized servers of a host pool, each with the
    slots declared for it (``#N``; ``None`` without). One entry is a pool of one."""
    example = "e.g. http://gpu1:11434#4,http://gpu2:11434#2"
    hosts: list[PoolHost] = []
    for entry in text.split(","):
        url, mark, slots = entry.strip().partition("#")
        if not url.strip():
            raise ConfigError(
                f"{source}={text!r} has an empty entry: give one URL or several separated by "
                f"commas, each with its slots as URL#N if it has more than one, {example}"
            )
        if mark and not (slots.strip().isdigit() and int(slots) >= 1):
            raise ConfigError(
                f"{source}={text!r}: {public_host(entry.strip())!r} declares "
                f"{repr(slots) if slots else 'no number of'} slots: "
                f"write URL#N with N, the requests the server serves at once, a whole "
                f"number >= 1 (Ollama's OLLAMA_NUM_PARALLEL), {example}"
            )
        host = PoolHost(normalize_host(url, default_port), int(slots) if mark else None)
        if any(h.url == host.url for h in hosts):
            raise ConfigError(
                f"{source}={text!r} names {public_host(host.url)} twice: list each server once, "
                f"with all its slots (URL#N), {example}"
            )
        hosts.append(host)
    return tuple(hosts)


def split_hosts(
    text: str, source: str = "host", default_port: int | None = 11434
) -> tuple[str, ...]:
    """``"a:11434, b:11434#2"`` → the normalized URLs of a host pool (see :func:`parse_pool`)."""
    return tuple(h.url for h in parse_pool(text, source, default_port))


def host_cooldown(config: pytest.Config) -> float | None:
    """``--llm-host-cooldown`` or ini ``llm_host_cooldown``: the seconds a host of the pool
    that is down is left alone (``None``: the default, 30)."""
    for raw, source in (
        (config.getoption("llm_host_cooldown", None), "--llm-host-cooldown"),
        (config.getini("llm_host_cooldown"), "ini llm_host_cooldown"),
    ):
        if raw in (None, ""):
            continue
        try:
            seconds = float(raw)
        except (TypeError, ValueError):
            seconds = math.nan
        if not (0 < seconds < math.inf):
            raise ConfigError(
                f"{source}={raw!r} is invalid: expected the seconds a host that is down is "
                "left alone, a number > 0 (e.g. 30)"
            )
        return seconds
    return None


def public_host(url: str) -> str:
    """``http://user:secret@gpu1:11434`` → ``http://gpu1:11434``: reports never hold secrets."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    return f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}"


def ini_path(config: pytest.Config, name: str, what: str = "file path") -> Path | None:
    """The one path of ini setting ``name``, relative to the ini file (or, without one, to
    the invocation directory); ``None`` when it is not set.

    Declared as a string, so that pytest 9's native TOML takes ``llm_report = "run.json"``
    as the classic ini form does. The value is one shell word, as pytest's ``paths``:
    quote a path with spaces (``llm_report = "my reports/run.json"`` in an ini file).
    """
    raw = config.getini(name)
    words = [str(w) for w in raw] if isinstance(raw, list) else shlex.split(str(raw or ""))
    if len(words) > 1:
        raise ConfigError(
            f"ini {name} takes one {what}, got {len(words)}: quote a path with spaces"
        )
    if not words or not words[0].strip():
        return None
    base = config.inipath.parent if config.inipath is not None else config.invocation_params.dir
    return base / Path(words[0]).expanduser()


def coerce(name: str, raw: Any, source: str) -> Any:
    """Convert a textual option/ini value for field ``name``; errors name the source."""
    if raw is None or not isinstance(raw, str):
        return raw
    convert = OPTION_FIELDS[name][1] if name in OPTION_FIELDS else str
    try:
        value = convert(raw.strip())
    except ValueError:
        raise ConfigError(f"{source}={raw!r} is invalid for llm setting {name}") from None
    if name == "host":
        split_hosts(value, source)  # checked here, naming the option; normalized (with the
        value = ",".join(h.strip() for h in value.split(","))  # backend's port) once it is known
    return value


def built_once(
    memo: dict[tuple[Any, ...], HarnessConfig],
    settings: Mapping[str, Any],
    build: Callable[[], HarnessConfig],
    *,
    limit: int,
) -> HarnessConfig:
    """The config ``build`` makes from ``settings``, built (and validated) once per distinct
    ``settings`` and kept in ``memo``, at most ``limit`` of them: a config is frozen. Equal
    means of the same types too (``True`` is no ``1``); an unhashable value (a list of
    models) is built every time."""
    key = tuple(sorted((name, type(value), value) for name, value in settings.items()))
    try:
        config = memo.get(key)
    except TypeError:
        return build()
    if config is None:
        config = build()
        if len(memo) < limit:
            memo[key] = config
    return config


def merge_markers(marker_kwargs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge marker keywords given closest first (as ``iter_markers`` yields them)."""
    merged: dict[str, Any] = {}
    for kwargs in reversed(list(marker_kwargs)):
        merged.update(kwargs)
    check_field_names(merged)
    return merged


def resolve(
    *,
    base: Mapping[str, Any],
    markers: Iterable[Mapping[str, Any]] = (),
) -> HarnessConfig:
    """Build the config for one test: ``base`` (options, ini, env) overridden by markers."""
    settings = {**base, **merge_markers(markers)}
    try:
        return HarnessConfig(**settings)
    except TypeError as exc:  # a wrong type that __post_init__ could not even look at
        raise ConfigError(f"invalid llm settings: {exc}") from None
