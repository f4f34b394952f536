"""Resuming file copies to and from an SSH host: block digests, spans read and written.

The optional resume methods of :class:`~streamdata.connectors.Connector` (the engine's
side is :mod:`streamdata._engine.resume`), with GNU coreutils on the host:

* the digests of a file's first bytes by blocks are computed on the host (``head -c``
  into ``split --filter=sha256sum``): only the digests cross the link;
* spans of a file are read and written by the commands of a split transfer
  (:mod:`._ranges`: ``dd`` at offsets, one block per request), over one channel, or over
  several far away as for any big file (resumed within the call after a lost
  connection, like any split transfer); a written file is then cut to its size and gets
  its mode and mtime on the same command line.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Sequence

from .._base import Entry, Span
from . import _commands as commands
from ._parallel import SERVER_WINDOW, stream_count
from ._pool import HostPool
from ._rangeread import read_ranges
from ._ranges import READ_BLOCK, READ_WINDOW, WRITE_BLOCK
from ._rangewrite import write_ranges

__all__ = ["block_digests", "read_spans", "write_spans"]


async def block_digests(pool: HostPool, path: str, size: int, block: int) -> list[str]:
    """SHA-256 digests of the first ``size`` bytes of ``path`` by blocks, computed there.

    Raises:
        ConnectorError: If the command fails or prints something else than digests.
    """
    command = commands.block_digests(path, size, block)
    output = await pool.run(command, what=f"hash {path!r}", bulk=True)
    digests = [line.split(maxsplit=1)[0] for line in output.splitlines() if line.strip()]
    if any(len(digest) != 64 for digest in digests):
        raise pool.error(f"unexpected digests of {path!r}: {output[:80]!r}")
    return [digest.decode("ascii") for digest in digests]


@contextlib.asynccontextmanager
async def read_spans(
    pool: HostPool, entry: Entry, spans: Sequence[Span]
) -> AsyncIterator[AsyncIterator[bytes]]:
    """Stream the bytes of ``spans`` of the file ``entry`` (far away: several channels).

    Raises:
        ConnectorError: If the file cannot be read or ends before a span does.
    """
    left = sum(length for _, length in spans)
    streams = stream_count(left, READ_BLOCK, READ_WINDOW, pool.round_trips.best)
    async with read_ranges(pool, entry, streams, spans) as chunks:
        yield chunks


async def write_spans(
    pool: HostPool, path: str, entry: Entry, chunks: AsyncIterable[bytes], spans: Sequence[Span]
) -> None:
    """Write ``chunks`` into ``spans`` of the file ``path``, cut it to the entry's size.

    Raises:
        ConnectorError: If writing fails or ``chunks`` do not hold the spans' bytes.
    """
    left = sum(length for _, length in spans)
    streams = stream_count(left, WRITE_BLOCK, SERVER_WINDOW, pool.round_trips.best)
    await write_ranges(pool, path, entry, chunks, streams, spans)
