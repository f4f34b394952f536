"""A test server reached through a delay line: the known_hosts file and the host entry.

The server's host key is recorded for its own port; a client going through a
:class:`~streamdata.testing.DelayLine` connects to the line's port, so it needs a
known_hosts file naming the same key at that port.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from streamdata import SSHHost
from streamdata.testing import DelayLine, SSHTestServer


def known_hosts_for(server: SSHTestServer, port: int, where: Path) -> Path:
    """Write to ``where`` a known_hosts file naming ``server``'s host key at ``port``."""
    key = server.known_hosts.read_text().split(None, 1)[1]
    where.write_text(f"[{server.host}]:{port} {key}")
    return where


@contextlib.asynccontextmanager
async def far_host(
    server: SSHTestServer, directory: Path, *, delay: float
) -> AsyncIterator[tuple[DelayLine, SSHHost]]:
    """``server`` behind a delay line, and the host ``remote`` that reaches it through it."""
    async with DelayLine(server.host, server.port, delay=delay) as line:
        known = known_hosts_for(server, line.port, directory / f"known_hosts_{line.port}")
        yield line, server.ssh_host(port=line.port, known_hosts=known, name="remote")
