"""The plugin's state for one pytest process: one object under one stash key.

As syrupy keeps a ``SnapshotSession``, pytest-llm keeps an :class:`LLMSession` in
``config.stash[SESSION_KEY]``: the settings every test starts from (option > ini >
environment), the hosts, the backend pool, the cassette settings, the embedding cache,
the run recorder, the model ladder, the timeout guard and the ``--llm-live`` printer.
``pytest_configure`` builds it with :meth:`LLMSession.start`; hooks and fixtures read it
with :func:`session_of`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from .backends import BackendPool
from .backends.registry import kind as backend_kind
from .cassettes import CassetteSettings
from .config import (
    DEFAULT_HOST,
    OPTION_FIELDS,
    HarnessConfig,
    built_once,
    coerce,
    from_environment,
    host_cooldown,
    merge_markers,
    parse_pool,
    resolve,
)
from .errors import ConfigError
from .ladder import LadderOptions, LadderSession
from .report import Recorder, ReportOptions
from .timeout_guard import TimeoutGuard
from .transcript import LiveLog
from .xdist import slot_share, worker_id

if TYPE_CHECKING:
    from .scorers import EmbeddingCache

__all__ = ["SESSION_KEY", "LLMSession", "session_of"]

_KEPT_CONFIGS = 256  # distinct sets of marker settings whose config a session keeps


@dataclass(eq=False, kw_only=True)
class LLMSession:
    """Everything pytest-llm holds for a pytest process (a worker, the controller, or both)."""

    settings: Mapping[str, Any]
    """Settings before markers: option > ini > environment (defaults are ``HarnessConfig``'s)."""
    hosts: tuple[str, ...]
    """Every server of ``--llm-host`` (a pool is spread over xdist workers)."""
    cassettes: CassetteSettings
    pool: BackendPool
    timeout_guard: TimeoutGuard
    recorder: Recorder
    ladder: LadderSession
    live: LiveLog | None = None
    """``--llm-live``'s printer, when asked for."""
    _configs: dict[tuple[Any, ...], HarnessConfig] = field(default_factory=dict, repr=False)
    _embeddings: EmbeddingCache | None = field(default=None, repr=False)

    @property
    def embeddings(self) -> EmbeddingCache:
        """The session's embedding vectors (the scorers load with the first test using one)."""
        if self._embeddings is None:
            from .scorers import EmbeddingCache

            self._embeddings = EmbeddingCache()
        return self._embeddings

    @classmethod
    def start(cls, config: pytest.Config) -> LLMSession:
        """Read the options and build the session; a bad setting is a ``ConfigError``."""
        settings = base_settings(config)
        port = backend_kind(settings.get("backend", "ollama")).default_port
        pooled = parse_pool(settings.get("host", DEFAULT_HOST), default_port=port)
        hosts = tuple(h.url for h in pooled)
        settings["host"] = hosts[0]  # the pool's name: its tests use every host of it
        defaults = resolve(base=settings)  # a bad option or ini value fails here, not in a test
        slot_dir, share = slot_share(config)  # an xdist worker's part of the pool's slots
        pool = BackendPool(
            pooled, cooldown_seconds=host_cooldown(config), slot_dir=slot_dir, worker=share
        )
        worker = worker_id(config)
        dist = config.getoption("dist", None) if config.pluginmanager.hasplugin("xdist") else None
        recorder = Recorder(
            options=ReportOptions.from_config(config),
            settings=defaults,
            hosts=hosts,
            pool=pool,
            worker_id=worker,
            dist=None if dist in (None, "no") else str(dist),
        )

        def size(model: str) -> tuple[str, str] | None:
            """What the session's server says of ``model``'s size (Ollama's ``/api/show``)."""
            sizer = getattr(pool.for_config(defaults), "size", None)
            return sizer(model) if sizer is not None else None

        ladder = LadderSession(
            LadderOptions.from_config(config), worker=worker is not None, sizer=size
        )
        recorder.ladder = ladder  # the JSON report's ladder part
        return cls(
            settings=settings,
            hosts=hosts,
            cassettes=CassetteSettings.from_config(config),
            pool=pool,
            timeout_guard=TimeoutGuard(config),
            recorder=recorder,
            ladder=ladder,
        )

    def config_for(self, markers: Iterable[Mapping[str, Any]] = ()) -> HarnessConfig:
        """The settings with ``markers`` over them (closest marker wins); built and checked
        once per distinct set of marker settings (tests share their markers)."""
        merged = merge_markers(markers)
        return built_once(
            self._configs,
            merged,
            lambda: resolve(base=self.settings, markers=[merged]),
            limit=_KEPT_CONFIGS,
        )

    def close(self) -> None:
        self.pool.close()


SESSION_KEY = pytest.StashKey[LLMSession]()


def session_of(config: pytest.Config) -> LLMSession:
    """The process's :class:`LLMSession` (built by ``pytest_configure``)."""
    return config.stash[SESSION_KEY]


def base_settings(config: pytest.Config) -> dict[str, Any]:
    """Settings before markers: option > ini > environment (defaults live in HarnessConfig)."""
    settings: dict[str, Any] = from_environment()
    for name, (suffix, _) in OPTION_FIELDS.items():
        try:
            ini = config.getini(f"llm_{suffix}")
        except (pytest.UsageError, TypeError, ValueError) as exc:  # pytest's own type check
            raise ConfigError(f"ini llm_{suffix} is invalid: {exc}") from None
        if ini not in (None, ""):
            settings[name] = coerce(name, ini, f"ini llm_{suffix}")
        option = config.getoption(f"llm_{suffix}")
        if option is not None:
            settings[name] = coerce(name, option, f"--llm-{suffix.replace('_', '-')}")
    return settings
