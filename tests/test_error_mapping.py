"""Every dependency error a connector can meet becomes a StreamDataError, chained to it.

Like httpx's test that every transport error is mapped: the test walks every exception
type asyncssh defines (each ``asyncssh.Error`` subclass, each SFTP status code, key
import errors) and the OS's (every ``OSError`` subclass, ``OSError(ENOSPC)``...) through
each connector's one error table, and, for the SSH connector, through a real request on
the in-process server (:meth:`HostPool.sftp`).
"""

from __future__ import annotations

import builtins
import errno
import inspect
from collections.abc import Iterator
from typing import Any

import pytest

from streamdata import ConfigurationError, ConnectorError, ExecutionLocation, StreamDataError
from streamdata.connectors._errors import ErrorMap
from streamdata.connectors.local import LOCAL_ERRORS
from streamdata.connectors.ssh._asyncssh import asyncssh
from streamdata.connectors.ssh._connector import SSHConnector
from streamdata.connectors.ssh._errors import SSH_ERRORS
from streamdata.testing import AsyncSSHTestServer


def _subclasses(base: type[BaseException]) -> Iterator[type[BaseException]]:
    yield base
    for sub in base.__subclasses__():
        yield from _subclasses(sub)


def _make(kind: type[BaseException]) -> BaseException:
    """An instance of ``kind``, whatever its constructor asks for."""
    parameters = [
        p
        for p in inspect.signature(kind.__init__).parameters.values()
        if p.name != "self" and p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD
    ]
    values: dict[str, Any] = {"code": 1, "reason": "injected", "exit_status": 1}
    return kind(*[values.get(p.name) for p in parameters])


ASYNCSSH_ERRORS = sorted(
    {kind for kind in _subclasses(asyncssh.Error) if kind.__module__.startswith("asyncssh")},
    key=lambda kind: kind.__name__,
)
SFTP_CODES = range(1, 32)
OS_ERRORS = sorted(
    {kind for kind in _subclasses(OSError) if getattr(builtins, kind.__name__, None) is kind},
    key=lambda kind: kind.__name__,
)
OS_INSTANCES = [
    *(kind(errno.EIO, "injected") for kind in OS_ERRORS),
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EDQUOT, "Disk quota exceeded"),
    OSError(errno.EROFS, "Read-only file system"),
    OSError("no errno at all"),
]
SSH_INSTANCES = [
    *(_make(kind) for kind in ASYNCSSH_ERRORS),
    *(asyncssh.SFTPError(code, "injected") for code in SFTP_CODES),
    asyncssh.KeyImportError("bad key"),
    *OS_INSTANCES,
    EOFError("stream ended"),
]


def _mapped(table: ErrorMap, cause: BaseException) -> StreamDataError:
    with pytest.raises(StreamDataError) as caught, table.mapping("cannot act", host="h"):
        raise cause
    assert caught.value.__cause__ is cause
    return caught.value


def test_every_asyncssh_error_type_is_found() -> None:
    """The walk covers asyncssh's error families (the test would pass vacuously otherwise)."""
    names = {kind.__name__ for kind in ASYNCSSH_ERRORS}
    assert {"DisconnectError", "ChannelOpenError", "PermissionDenied"} <= names
    assert {"HostKeyNotVerifiable", "SFTPNoSuchFile", "ProcessError", "ConnectionLost"} <= names
    assert {"FileNotFoundError", "PermissionError", "ConnectionResetError"} <= {
        kind.__name__ for kind in OS_ERRORS
    }


@pytest.mark.parametrize("cause", OS_INSTANCES, ids=repr)
def test_local_connector_maps_every_os_error(cause: OSError) -> None:
    """The local connector turns every OSError into a ConnectorError naming the reason."""
    error = _mapped(LOCAL_ERRORS, cause)
    assert isinstance(error, ConnectorError)
    assert error.host == "h"
    assert str(error).startswith("cannot act")
    assert error.transient == isinstance(cause, ConnectionError | TimeoutError)


@pytest.mark.parametrize("cause", SSH_INSTANCES, ids=repr)
def test_ssh_connector_maps_every_asyncssh_and_os_error(cause: BaseException) -> None:
    """The SSH connector's table turns each asyncssh and OS error into a StreamDataError."""
    error = _mapped(SSH_ERRORS, cause)
    expected = ConfigurationError if isinstance(cause, asyncssh.KeyImportError) else ConnectorError
    assert type(error) is expected


@pytest.mark.parametrize(
    ("cause", "transient"),
    [
        (asyncssh.ConnectionLost("gone"), True),
        (asyncssh.DisconnectError(asyncssh.DISC_CONNECTION_LOST, "gone"), True),
        (asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "busy"), True),
        (asyncssh.SFTPConnectionLost("gone"), True),
        (ConnectionResetError(errno.ECONNRESET, "reset"), True),
        (TimeoutError(), True),
        (asyncssh.PermissionDenied("no"), False),
        (asyncssh.HostKeyNotVerifiable("who?"), False),
        (asyncssh.SFTPNoSuchFile("absent"), False),
        (asyncssh.SFTPPermissionDenied("no"), False),
        (OSError(errno.ENOSPC, "No space left on device"), False),
    ],
    ids=repr,
)
def test_ssh_transience_is_decided_by_the_table(cause: BaseException, transient: bool) -> None:
    """Lost connections and timeouts are transient; refusals and answers are not."""
    error = _mapped(SSH_ERRORS, cause)
    assert isinstance(error, ConnectorError)
    assert error.transient is transient


async def test_ssh_requests_map_every_error_on_a_real_server(
    asyncssh_server: AsyncSSHTestServer,
) -> None:
    """An SFTP request failing with any asyncssh or OS error surfaces as a StreamDataError."""
    location = ExecutionLocation("remote", "ssh")
    async with SSHConnector([asyncssh_server.ssh_host(name="remote")]) as connector:
        pool = connector._pool(location)
        for cause in SSH_INSTANCES:

            async def fail(client: asyncssh.SFTPClient, cause: BaseException = cause) -> None:
                raise cause

            with pytest.raises(StreamDataError) as caught:
                await pool.sftp(fail, what="act")
            assert caught.value.__cause__ is cause
            assert "remote" in str(caught.value)
