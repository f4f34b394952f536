"""Where a transfer relies on the catalog: paths as the filesystem sees them.

A destination path may run through a symbolic link the manager made (``/x/run1`` ->
``/x/src`` makes ``/x/run1/sub`` really ``/x/src/sub``). :func:`followed` follows the
links the catalog knows (SYMBOLIC_LINK replicas with a recorded target), without I/O, so a
transfer can tell that a link or a copy would land inside its own data. Links made by
others are not known and not followed.
"""

from __future__ import annotations

from ._catalog import RemotePathMapper, parent_of
from ._models import DataType, ExecutionLocation

__all__ = ["followed", "inside"]

#: As many links as a path is followed through, like the kernel's SYMLOOP_MAX.
_MAX_HOPS = 40


def inside(path: str, directory: str) -> bool:
    """True when the normal absolute ``path`` is ``directory`` or lies below it."""
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def followed(
    catalog: RemotePathMapper, location: ExecutionLocation, path: str, *, itself: bool = True
) -> str:
    """``path`` with the links the catalog knows on ``location`` followed.

    A link at an ancestor of ``path`` (or at ``path`` itself, unless ``itself`` is False:
    a path about to be written) is replaced by its target, deepest first, for at most
    ``_MAX_HOPS`` links.
    """
    for _ in range(_MAX_HOPS):
        hop = _known_link(catalog, location, path, itself=itself)
        if hop is None:
            break
        link, target = hop
        path = (target.rstrip("/") + path[len(link) :]) or "/"
    return path


def _known_link(
    catalog: RemotePathMapper, location: ExecutionLocation, path: str, *, itself: bool
) -> tuple[str, str] | None:
    """The deepest known link on the way to ``path``, as (link path, target path)."""
    current = path if itself else parent_of(path)
    while True:
        replica = catalog.lookup(location, current)
        if replica is not None and replica.data_type is DataType.SYMBOLIC_LINK:
            target = catalog.link_target(replica)
            if target is not None and target.location == location:
                return current, target.path
        if current == "/":
            return None
        current = parent_of(current)
