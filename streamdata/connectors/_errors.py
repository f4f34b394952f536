"""Translating the errors of dependencies into streamdata's, at the connector boundary.

Each connector holds one :class:`ErrorMap`: a table of dependency exception types
(``OSError``, ``asyncssh.Error``, ...) and the :class:`~streamdata.StreamDataError`
subclass each becomes, searched in order, first match wins, like httpcore's
``map_exceptions``. The same map decides, in one place, whether a cause is *transient*
(the operation may succeed if started again: a lost connection, a timeout) or
*permanent* (retrying cannot help: a refused login, an untrusted host key). Every
translated error is chained to its cause (``raise ... from exc``)::

    with LOCAL_ERRORS.mapping(f"cannot read {path!r} on {location}", host=location.name):
        handle = open(path, "rb")
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .._errors import ConnectorError, StreamDataError

__all__ = ["ErrorMap"]

#: A row of the table: exceptions of this type (and its subclasses) become that error.
Row = tuple[type[BaseException], type[StreamDataError]]


def _text(exc: BaseException) -> str:
    return str(exc)


@dataclass(frozen=True, slots=True)
class ErrorMap:
    """How one connector turns dependency exceptions into streamdata errors.

    Attributes:
        table: ``(exception type, StreamDataError subclass)`` rows, first match wins.
        transient: Causes after which the same operation, started again, may succeed.
        permanent: Causes retrying cannot fix; never transient, even if also listed
            under ``transient`` by a base class.
        reason: How a cause is described after the message (default ``str``).
    """

    table: tuple[Row, ...]
    transient: tuple[type[BaseException], ...] = ()
    permanent: tuple[type[BaseException], ...] = ()
    reason: Callable[[BaseException], str] = _text

    @property
    def handled(self) -> tuple[type[BaseException], ...]:
        """Every exception type the table translates."""
        return tuple(source for source, _ in self.table)

    def is_transient(self, exc: BaseException | None) -> bool:
        """Whether ``exc`` is a cause worth starting the operation again for."""
        return isinstance(exc, self.transient) and not self.is_permanent(exc)

    def is_permanent(self, exc: BaseException | None) -> bool:
        """Whether ``exc`` is a cause no retry can fix."""
        return isinstance(exc, self.permanent)

    def translate(
        self, exc: BaseException, message: str, *, host: str | None = None
    ) -> StreamDataError:
        """The streamdata error for ``exc``: ``message``, then the cause's reason.

        Args:
            exc: The dependency's exception.
            message: What failed, e.g. ``"cannot read '/a' on ssh host h"``.
            host: The host or location the error is about.

        Returns:
            The error, with ``exc`` as its ``__cause__``; a :class:`ConnectorError`
            carries ``host`` and whether the cause is transient.

        Raises:
            TypeError: If no row of the table matches ``exc``.
        """
        target = next((error for source, error in self.table if isinstance(exc, source)), None)
        if target is None:
            raise TypeError(f"no streamdata error for {type(exc).__name__}") from exc
        reason = self.reason(exc)
        text = f"{message}: {reason}" if reason else message
        error: StreamDataError
        if issubclass(target, ConnectorError):
            error = target(text, host=host, transient=self.is_transient(exc))
        else:
            error = target(text)
        error.__cause__ = exc
        return error

    @contextlib.contextmanager
    def mapping(self, message: str, *, host: str | None = None) -> Iterator[None]:
        """Translate, with :meth:`translate`, what the table handles and is raised inside.

        A :class:`StreamDataError` raised inside passes through unchanged.

        Raises:
            StreamDataError: For an exception the table handles.
        """
        try:
            yield
        except StreamDataError:
            raise
        except self.handled as exc:
            raise self.translate(exc, message, host=host) from exc
