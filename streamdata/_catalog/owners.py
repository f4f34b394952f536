"""Which processes using a catalog file are alive: owner tokens held by file locks.

Every store opened on a catalog file takes a token (host, pid and a random part) and
holds an exclusive ``flock`` on a file of that name in ``<catalog>.owners/`` for as long
as it is open. The catalog stamps the rows of transfers in flight (pending replicas and
their temporary files) with the token of the process writing them. Another process asks
:meth:`Owners.alive` before it treats such a row as a crash leftover: a lock that can be
taken means its holder is gone (the kernel drops ``flock`` locks when a process dies,
``kill -9`` included), so nobody removes a live process's temporaries and nobody waits
for a dead one. Tokens are never reused, so a recycled pid cannot pass for a dead owner.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket

__all__ = ["Owners"]


class Owners:
    """This store's owner token and the liveness of the others.

    Args:
        catalog: The catalog file; the lock files live in ``<catalog>.owners/``.

    Raises:
        OSError: If the directory or this store's lock file cannot be made.
    """

    def __init__(self, catalog: str) -> None:
        self._directory = catalog + ".owners"
        os.makedirs(self._directory, exist_ok=True)
        self.token = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(6)}"
        path = os.path.join(self._directory, self.token)
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def alive(self, token: str | None) -> bool:
        """True while the store that took ``token`` is open in a live process."""
        if token is None or "/" in token or token in (".", ".."):
            return False
        if token == self.token:
            return self._fd is not None
        try:
            fd = os.open(os.path.join(self._directory, token), os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def blocks_claim(
        self, pending: object, owner: str | None, tmp: object, adopt: object = None
    ) -> bool:
        """True if a claim of a row must wait: another live store writes it, or the
        temporary of one that is gone is still journalled there (it must be removed first:
        the claim's own would replace the only record of it), unless it is ``adopt``: the
        one the claiming copy resumes from."""
        if owner == self.token:
            return False
        return (bool(pending) and self.alive(owner)) or (tmp is not None and tmp != adopt)

    def forget(self, token: str) -> None:
        """Remove the lock file of an owner found dead (nothing if it is alive again)."""
        if token != self.token and not self.alive(token):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self._directory, token))

    def close(self) -> None:
        """Release this store's token (idempotent): its rows are leftovers from now on."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self._directory, self.token))
        os.close(self._fd)
        self._fd = None
