"""The local connector's one error table, and the context that applies it to an action.

Shared by :mod:`.local` and :mod:`._localresume` (resumed copies on this host).
"""

from __future__ import annotations

import contextlib

from .._errors import ConnectorError
from .._models import ExecutionLocation
from ._errors import ErrorMap

__all__ = ["LOCAL_ERRORS", "mapped"]


def _os_reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


#: The local connector's one error table: every ``OSError`` is a ConnectorError, transient
#: only for a broken connection or a timeout (a network filesystem).
LOCAL_ERRORS = ErrorMap(
    table=((OSError, ConnectorError),),
    transient=(ConnectionError, TimeoutError),
    reason=_os_reason,
)


def mapped(
    action: str, path: str, location: ExecutionLocation
) -> contextlib.AbstractContextManager[None]:
    """Translate an ``OSError`` raised inside (:data:`LOCAL_ERRORS`), naming the action."""
    return LOCAL_ERRORS.mapping(f"cannot {action} {path!r} on {location}", host=location.name)
