"""Connecting to an SSH host: options, host-key policy, retries, and shared attempts.

Host keys are always checked against a ``known_hosts`` file (the user's by default; a
missing file trusts nothing), unless the host says ``check_host_key=False``, which logs a
warning on every connection. A refused host key is told apart afterwards, from the file:
a key that *changed* (the file holds another one for the host: possibly an attack) or an
*unknown* host (the file holds none, or does not exist); either message names the file.
Connection-level failures (refused, reset, timed out) are retried with exponential
backoff; authentication and host-key failures are final. A client key file that is
missing or cannot be loaded is a :class:`~streamdata.ConfigurationError`, found before
connecting.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from ..._errors import ConfigurationError, ConnectorError, StreamDataError
from ._asyncssh import asyncssh
from ._errors import SSH_ERRORS
from ._host import PoolSettings, SSHHost

__all__ = ["Backoff", "SingleFlight", "again", "connect"]

_T = TypeVar("_T")
_LOG = logging.getLogger("streamdata.ssh")
#: Preferred ciphers: AES-GCM is the fastest on CPUs with AES instructions (measured).
_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)


class Backoff:
    """Exponentially growing pauses, until a time budget is spent."""

    def __init__(self, budget: float, first: float = 0.002, longest: float = 0.05) -> None:
        self._deadline = time.monotonic() + budget
        self._delay = first
        self._longest = longest

    async def wait(self) -> bool:
        """Sleep before the next attempt; False (without sleeping) when out of time."""
        if time.monotonic() + self._delay > self._deadline:
            return False
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, self._longest)
        return True


class _Abandoned(Exception):
    """The caller making a shared attempt was cancelled; the waiters try again."""


class SingleFlight(Generic[_T]):
    """At most one attempt at a time; callers arriving meanwhile share its outcome."""

    def __init__(self) -> None:
        self._future: asyncio.Future[_T] | None = None

    @property
    def running(self) -> bool:
        """Whether an attempt is in progress."""
        return self._future is not None

    async def run(self, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``attempt``, or wait for the one in progress and share its outcome."""
        while self._future is not None:
            try:
                return await asyncio.shield(self._future)
            except _Abandoned:
                continue
            except (ConnectorError, ConfigurationError) as exc:
                raise again(exc) from exc
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_mark_retrieved)
        self._future = future
        try:
            result = await attempt()
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else _Abandoned())
            raise
        else:
            future.set_result(result)
            return result
        finally:
            self._future = None


def again(exc: ConnectorError | ConfigurationError) -> StreamDataError:
    """A fresh copy of a failure shared by several callers, to raise to one more.

    Raising the same exception object from several places would tangle its traceback;
    the caller chains the copy to it (``raise again(exc) from exc``).
    """
    if isinstance(exc, ConnectorError):
        return ConnectorError(str(exc), host=exc.host)
    return ConfigurationError(str(exc))


def _mark_retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def connect(
    host: SSHHost,
    settings: PoolSettings,
    error: Callable[[str, BaseException | None], StreamDataError],
) -> asyncssh.SSHClientConnection:
    """Connect and log in, retrying connection-level failures with exponential backoff.

    Args:
        host: Where and how to connect.
        settings: Timeouts, retries and channel sizes.
        error: Builds the error raised on failure, naming the host.

    Raises:
        ConnectorError: If the host cannot be reached, refuses the login or presents a
            host key that is not trusted (the message says whether the key changed or the
            host is unknown, and names the known_hosts file).
        ConfigurationError: If a client key file is missing or cannot be loaded.
    """
    label = f"{host.location_name} ({host.host}:{host.port})"
    _check_client_keys(host, label)
    options = _connect_options(host, settings)
    delay = settings.retry_delay
    for attempt in range(settings.connect_retries + 1):
        try:
            return await asyncssh.connect(host.host, host.port, **options)
        except asyncssh.HostKeyNotVerifiable as exc:
            raise _host_key_error(host, label, exc) from exc
        except SSH_ERRORS.handled as exc:
            if SSH_ERRORS.is_permanent(exc):
                raise error(_refusal(exc), exc) from exc
            if attempt == settings.connect_retries:
                raise error("cannot connect", exc) from exc
            _LOG.info("connecting to %s failed (%s); retrying in %.2fs", label, exc, delay)
        await asyncio.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover


def _refusal(exc: BaseException) -> str:
    """What a permanent failure to connect refused."""
    if isinstance(exc, asyncssh.KeyImportError):
        return "cannot load the client keys"
    return "cannot log in"


def _check_client_keys(host: SSHHost, label: str) -> None:
    """Refuse, before connecting, client key files that do not exist or cannot be read.

    Raises:
        ConfigurationError: Naming the first such file.
    """
    for key in host.client_keys:
        path = Path(os.fspath(key))
        if not path.is_file():
            problem = "is not a file" if path.exists() else "does not exist"
        elif not os.access(path, os.R_OK):
            problem = "cannot be read"
        else:
            continue
        raise ConfigurationError(f"the client key file {str(path)!r} of ssh host {label} {problem}")


def _known_hosts_path(host: SSHHost) -> Path:
    """The ``known_hosts`` file the host key is checked against."""
    return Path(host.known_hosts or "~/.ssh/known_hosts").expanduser()


def _host_key_error(host: SSHHost, label: str, exc: BaseException) -> ConnectorError:
    """Say whether the refused key changed (a possible attack) or the host is unknown."""
    path = _known_hosts_path(host)
    if not path.is_file():
        reason = (
            f"ssh host {label} is unknown: the known_hosts file {str(path)!r} does not exist; "
            "add the host's key to it once you have checked the key"
        )
    elif _knows(path, host):
        reason = (
            f"the host key of ssh host {label} has CHANGED: it is not the key "
            f"{str(path)!r} holds for it. Someone may be intercepting the connection "
            "(a man-in-the-middle attack), or the host was reinstalled: check the new key "
            "with the host's administrator before you replace the old one"
        )
    else:
        reason = (
            f"ssh host {label} is unknown: {str(path)!r} holds no key for it; add the "
            "host's key to that file once you have checked the key"
        )
    return ConnectorError(f"cannot log in: {reason}", host=host.location_name)


def _knows(path: Path, host: SSHHost) -> bool:
    """True when ``path`` trusts some key (or certificate authority) for ``host``."""
    try:
        trusted, authorities, _, certificates, _, subjects, _ = asyncssh.match_known_hosts(
            str(path), host.host, host.host, host.port
        )
    except (OSError, ValueError, asyncssh.Error):
        return False  # unreadable or malformed: it trusts nothing, as asyncssh found
    return bool(trusted or authorities or certificates or subjects)


def _connect_options(host: SSHHost, settings: PoolSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "known_hosts": _known_hosts(host),
        "client_keys": [os.fspath(key) for key in host.client_keys] or (),
        "connect_timeout": settings.connect_timeout,
        "login_timeout": settings.connect_timeout,
        "keepalive_interval": settings.keepalive_interval,
        "keepalive_count_max": settings.keepalive_count_max,
        "encryption_algs": list(_CIPHERS),
        "compression_algs": ["none"],
        "window": settings.window,
        "max_pktsize": settings.max_pktsize,
    }
    if host.username is not None:
        options["username"] = host.username
    return options


def _known_hosts(host: SSHHost) -> object:
    if not host.check_host_key:
        _LOG.warning(
            "host key of ssh host %s (%s:%s) is NOT verified (check_host_key=False): "
            "the connection is open to man-in-the-middle attacks",
            host.location_name,
            host.host,
            host.port,
        )
        return None
    path = _known_hosts_path(host)
    if not path.is_file():
        return asyncssh.import_known_hosts("")  # nothing is trusted
    return str(path)
