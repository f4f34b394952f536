"""The errors streamdata raises on purpose.

Every error is a :class:`StreamDataError`; the families are small and flat::

    StreamDataError             base of every error the library raises on purpose
    ├── DataNotFoundError       no valid replica of the requested data
    ├── TransferError           a transfer failed (.failures: mapping of destination -> cause)
    ├── ConnectorError          cannot reach or use a location (network, auth, host key)
    ├── ConsistencyError        a check refused to act (see max_missing)
    └── ConfigurationError      unknown deployment, bad options

Errors of dependencies (asyncssh, ``OSError``) are translated where they happen, at the
connector boundary, and chained with ``raise ... from exc`` so the cause stays visible.
Bad arguments raise the built-in ``ValueError`` or ``TypeError``. ``WriterGone``, a
``TransferError``, is internal: a transfer that meets it takes the copy over.

Each public error says it lives in ``streamdata`` (its ``__module__``), where users import
it from: that is what tracebacks and ``repr`` show and where pickles look it up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._models import ExecutionLocation

__all__ = [
    "ConfigurationError",
    "ConnectorError",
    "ConsistencyError",
    "DataNotFoundError",
    "StreamDataError",
    "TransferError",
]


class StreamDataError(Exception):
    """Base class of every error streamdata raises on purpose."""

    __module__ = "streamdata"


class DataNotFoundError(StreamDataError):
    """No valid replica of the requested data is known, or the data is gone."""

    __module__ = "streamdata"


class TransferError(StreamDataError):
    """A transfer failed for at least one destination.

    Attributes:
        failures: Each failed destination mapped to the exception that made it fail.
            Destinations absent from the mapping succeeded and stay registered.
    """

    __module__ = "streamdata"

    def __init__(
        self,
        message: str,
        failures: Mapping[ExecutionLocation, BaseException] | None = None,
    ) -> None:
        super().__init__(message)
        self.failures: Mapping[ExecutionLocation, BaseException] = (
            dict(failures.items()) if failures else {}
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), dict(self.failures)))


class WriterGone(TransferError):
    """The process writing a replica died before finishing it (internal).

    A transfer that was waiting for that replica takes the copy over instead of failing.
    """


class ConnectorError(StreamDataError):
    """A location cannot be reached or used (network, authentication, host key, I/O).

    Attributes:
        host: The host or location the error is about, when known.
        transient: True when the cause is a lost or refused connection, a timeout or a
            broken stream: the same operation may succeed if tried again from scratch.
        details: The whole standard error of the failed command (``cp``, ``tar``, a
            remote shell), or None; the message quotes only its most telling line.
    """

    __module__ = "streamdata"

    def __init__(
        self,
        message: str,
        *,
        host: str | None = None,
        transient: bool = False,
        details: str | None = None,
    ) -> None:
        super().__init__(message)
        self.host = host
        self.transient = transient
        self.details = details

    def __reduce__(self) -> tuple[object, ...]:
        # the class, its message and its attributes: a pickle names only public things
        return (type(self), (str(self),), dict(vars(self)))


class ConsistencyError(StreamDataError):
    """A consistency check refused to act, e.g. because too many replicas went missing."""

    __module__ = "streamdata"


class ConfigurationError(StreamDataError):
    """The manager is asked to use something it was not configured with."""

    __module__ = "streamdata"
