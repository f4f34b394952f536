"""The replicas other processes are writing, watched until they finish or their writer dies.

A replica read back pending from a shared store is being written by the process whose
owner token its row carries (:mod:`.owners`). :class:`RemoteWriters` keeps those of live
processes and tells the catalog which ones to give up: a pending replica whose writer is
gone never becomes available, so the catalog invalidates it and wakes its waiters.
"""

from __future__ import annotations

from .._errors import WriterGone
from .._models import DataLocation, DataType, ExecutionLocation
from .store import CatalogStore

__all__ = ["RemoteWriters", "not_free"]


def not_free(location: ExecutionLocation, path: str) -> DataLocation:
    """A stand-in for a destination the store does not give yet and the catalog does not
    show (a gone writer's temporary is still journalled there): finished with
    :class:`WriterGone`, so that the transfer plans it again, removing that temporary."""
    stand_in = DataLocation(location, path, path, DataType.INVALID, available=False)
    stand_in._finish(WriterGone(f"{path!r} on {location} is not free yet"))
    return stand_in


class RemoteWriters:
    """Pending replicas of other live processes, with their owner tokens.

    Args:
        store: The shared store, which knows the owners.
    """

    def __init__(self, store: CatalogStore) -> None:
        self._store = store
        self._watched: dict[DataLocation, str | None] = {}

    def track(self, replica: DataLocation, owner: str | None) -> bool:
        """Watch a replica seen pending; False when its writer is gone (give it up)."""
        if owner == self._store.token:
            return True
        if self._store.alive(owner):
            self._watched[replica] = owner
            return True
        return False

    def gone(self) -> list[tuple[DataLocation, str | None]]:
        """The watched replicas whose writer died, no longer watched; the rest stay.

        A replica that finished or turned INVALID is no longer watched either; one whose
        row another live process took over is watched under its new owner.

        Raises:
            ConfigurationError: If the store cannot be read.
        """
        given_up = []
        for replica, owner in list(self._watched.items()):
            if replica.is_available or replica.data_type is DataType.INVALID:
                del self._watched[replica]
            elif not self._store.alive(owner):
                owner = self._store.owner_of((replica.location, replica.path))
                if owner is not None and self._store.alive(owner):
                    self._watched[replica] = owner
                else:
                    del self._watched[replica]
                    given_up.append((replica, owner))
        return given_up
