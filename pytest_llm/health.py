"""A server that is down is an error at setup: every reporter then calls it an error.

pytest-html and pytest-sugar tell an error from a failure by the phase alone: a failed
setup or teardown is an error, a failed call a failure. The terminal, JUnit XML
(:mod:`pytest_llm.junit`) and the JSON report call an infrastructure error during the call
an error too, but those two cannot be told. So when a test sets up ``llm`` (or
``llm_proxy``), :func:`check_reachable` knocks on its server first, and a server that
refuses the connection is a setup error for every reporter, with the one-line message
the call would have given.

The check is cheap and leaves no trace on the server:

* a TCP connection only, opened and closed (no HTTP request: a server that counts its
  requests counts none), at most 2 s (a connection that times out is left to the call
  and its deadline);
* once per host per process (xdist worker): its answer is kept for the session;
* only where every call goes to the server: record mode ``off`` or ``all``. Replaying
  modes (``none``, ``verify``, ``once``, ``new_episodes``) may need no server at all;
* not for a test that asks for ``fake_ollama``: its calls go to that server
  (``llm.chat(..., host=fake_ollama.url)``);
* for a host pool: an error only when no host of the pool takes the connection;
* ``llm_check_host = false`` (ini) turns it off, for tests that call only other servers.

The same knock, kept the same way, serves replays (:func:`refuses_connections`): before a
cassette asks the server for the model's identity, a server that refuses connections is
known to have none, and no client is made to find that out. It is never an error there.

A server that goes down between setup and call (or answers the connection but not the
request) is still the call's error: the terminal, JUnit and the JSON report say error;
pytest-html and pytest-sugar, which look at the phase only, say failed (its message is
the same one-line error).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from urllib.parse import urlsplit

import pytest

from .backends import BackendPool, create_backend
from .config import HarnessConfig, public_host
from .errors import BackendError, BackendUnreachable

__all__ = ["CONNECT_SECONDS", "INI", "add_ini", "check_reachable", "refuses_connections"]

#: The ini setting that turns the check off.
INI = "llm_check_host"
#: The longest a check waits for a connection (seconds; less when timeout_seconds is).
CONNECT_SECONDS = 2.0
#: Modes in which every call goes to the server (see pytest_llm.cassettes.MODES).
_LIVE_MODES = ("off", "all")
#: A test that asks for this fixture calls its server, whatever the configured host.
_OWN_SERVER_FIXTURES = ("fake_ollama",)

_CHECKS_KEY = pytest.StashKey["_Checks"]()


def add_ini(parser: pytest.Parser) -> None:
    """Declare ``llm_check_host`` (from the plugin's ``pytest_addoption``)."""
    parser.addini(
        INI,
        "check that the model server takes connections when a test sets up llm, so that a "
        "server down is a setup error for every reporter (default: true)",
        type="bool",
        default=True,
    )


def check_reachable(
    request: pytest.FixtureRequest, config: HarnessConfig, pool: BackendPool, mode: str
) -> None:
    """Raise :class:`~pytest_llm.errors.BackendUnreachable` when the server of ``config``
    (every host of its pool) refuses connections; see the module docstring for when."""
    if mode not in _LIVE_MODES or not request.config.getini(INI):
        return
    if any(name in request.fixturenames for name in _OWN_SERVER_FIXTURES):
        return
    checks, urls = _checks(request.config), _urls(config, pool)
    problems = [checks.problem(url, config) for url in urls]
    if all(problem is not None for problem in problems):
        raise _unreachable(urls, problems, config.host)


def refuses_connections(session: pytest.Config, config: HarnessConfig, pool: BackendPool) -> bool:
    """Whether the server of ``config`` (every host of its pool) refuses TCP connections,
    knocked on once per host per process like :func:`check_reachable`'s check. A replayed
    test asks it before asking the server for the model's identity: a server that is down
    has none to compare with, and no client is made (or imported) to find that out."""
    checks = _checks(session)
    return all(checks.refused(url, config) is not None for url in _urls(config, pool))


def _checks(session: pytest.Config) -> _Checks:
    checks = session.stash.get(_CHECKS_KEY, None)
    if checks is None:
        checks = session.stash.setdefault(_CHECKS_KEY, _Checks())
    return checks


def _urls(config: HarnessConfig, pool: BackendPool) -> list[str]:
    """The hosts that serve ``config``: its pool's, when its host names the pool."""
    hosts = pool.hosts
    return hosts.urls if hosts is not None and config.host == hosts.name else [config.host]


def _unreachable(
    urls: Sequence[str], problems: Sequence[str | None], host: str
) -> BackendUnreachable:
    message = problems[0] or ""
    if len(urls) > 1:
        each = "; ".join(f"{public_host(u)}: {p}" for u, p in zip(urls, problems, strict=True))
        message = f"no host of the pool takes connections ({len(urls)} hosts): {each}"
    error = BackendUnreachable(message)
    error.host = host  # as configured: the pool's name (the run's summary)
    return error


class _Checks:
    """What each host said, once per process: whether it refuses TCP connections (and
    why), and, when it does, the message of the error its backend gives then."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refused: dict[str, str | None] = {}
        self._problems: dict[tuple[str, str], str | None] = {}

    def refused(self, url: str, config: HarnessConfig) -> str | None:
        """Why ``url`` refuses TCP connections (``None``: it takes them, or cannot tell)."""
        with self._lock:
            if url not in self._refused:
                self._refused[url] = _knock(url, config)
            return self._refused[url]

    def problem(self, url: str, config: HarnessConfig) -> str | None:
        """``None`` when ``url`` takes a TCP connection (or the check cannot tell), else
        the backend's own message for a server that is not reachable."""
        reason = self.refused(url, config)
        if reason is None:
            return None
        key = (config.backend, url)
        with self._lock:
            if key not in self._problems:
                self._problems[key] = _problem(url, config, reason)
            return self._problems[key]


def _knock(url: str, config: HarnessConfig) -> str | None:
    """Why nothing takes a TCP connection at ``url`` (``None``: something does, or the
    check cannot tell: a bad URL, or a connection that times out, left to the call)."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # the config check names a bad URL before this runs
        return None
    seconds = min(CONNECT_SECONDS, config.timeout_seconds)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=seconds):
            return None
    except TimeoutError:
        return None  # slow, not refused: the call decides, under its own deadline
    except OSError as exc:  # refused, no route, a name that does not resolve
        return exc.strerror or type(exc).__name__


def _problem(url: str, config: HarnessConfig, reason: str) -> str | None:
    """The backend's message for ``url``, which refused a connection for ``reason``;
    ``None`` if it answers after all."""
    answered, message = _backend_says(url, config)
    if answered:
        return None  # it came up in between
    return message or (
        f"nothing answers at {public_host(url)} ({reason}): start the server, or point "
        f"--llm-host at a running one (ini {INI} = false skips this check)"
    )


def _backend_says(url: str, config: HarnessConfig) -> tuple[bool, str | None]:
    """Whether ``url`` answered its backend after all, and else the message the backend
    itself gives for it (``None``: it cannot tell one). The backend is one of its own:
    the session's keep their state (a digest read once, a host's cooldown)."""
    try:
        backend = create_backend(
            config.backend, url, timeout_seconds=config.timeout_seconds,
            api_key_env=config.api_key_env,
        )  # fmt: skip
    except Exception:  # the harness reports a backend that cannot be made, at the call
        return False, None
    digest = getattr(backend, "digest", None)
    try:
        if digest is None:
            return False, None
        digest(config.model)
    except BackendUnreachable as exc:
        return False, str(exc)
    except BackendError:
        return True, None  # something answered: not for this check to judge
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    return True, None
