"""The SSH connector's one error table: asyncssh's and the OS's exceptions, translated.

Everything that can go wrong reaching or using a host becomes a
:class:`~streamdata.ConnectorError`, except a client key that cannot be loaded, which is
the user's configuration (:class:`~streamdata.ConfigurationError`). The table also says,
for the whole package, which causes are *transient* (a lost or refused connection, a
timeout, a channel the server would not open: the same operation may work if started
again) and which are *permanent* (login and host-key refusals: connecting again cannot
help, so connecting is not retried). A refused host key gets a message of its own, which
says whether the key changed or the host is unknown (:mod:`._connect`).
"""

from __future__ import annotations

from ..._errors import ConfigurationError, ConnectorError
from .._errors import ErrorMap
from ._asyncssh import asyncssh

__all__ = ["SSH_ERRORS"]

SSH_ERRORS = ErrorMap(
    table=(
        (asyncssh.KeyImportError, ConfigurationError),
        (asyncssh.Error, ConnectorError),
        (OSError, ConnectorError),  # TimeoutError and ConnectionError included
        (EOFError, ConnectorError),  # a stream that ended early
    ),
    transient=(
        asyncssh.DisconnectError,
        asyncssh.SFTPConnectionLost,
        asyncssh.SFTPNoConnection,
        asyncssh.ChannelOpenError,
        ConnectionError,
        TimeoutError,
    ),
    permanent=(
        asyncssh.PermissionDenied,
        asyncssh.HostKeyNotVerifiable,
        asyncssh.KeyExchangeFailed,
        asyncssh.ProtocolNotSupported,
        asyncssh.IllegalUserName,
        asyncssh.KeyImportError,
    ),
)
