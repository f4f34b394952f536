"""A process copying one file to or from an SSH host, started (and killed) by tests/test_resume.py.

python tests/resume_worker.py CATALOG up|down SRC DST HOST PORT USER KEY KNOWN_HOSTS
    opens the catalog, registers SRC (local for ``up``, on the host for ``down``), prints
    "copying", copies it to DST on the other side and prints "done"
"""

from __future__ import annotations

import asyncio
import sys

from streamdata import DataManager, ExecutionLocation, LocalConnector, SSHConnector, SSHHost

LOCAL = ExecutionLocation("localhost", "local", local=True)
REMOTE = ExecutionLocation("remote", "ssh")


async def copy(catalog: str, direction: str, src: str, dst: str, host: SSHHost) -> None:
    """Copy ``src`` to ``dst`` across the SSH deployment of ``host``."""
    origin, destination = (LOCAL, REMOTE) if direction == "up" else (REMOTE, LOCAL)
    deployments = {"local": LocalConnector(), "ssh": SSHConnector([host])}
    async with DataManager(deployments, catalog=catalog) as manager:
        manager.register_path(origin, src)
        print("copying", flush=True)
        await manager.transfer_data(origin, src, [destination], dst, writable=True)
    print("done", flush=True)


def main(argv: list[str]) -> None:
    """Run the copy (see the module docstring)."""
    catalog, direction, src, dst, address, port, user, key, known_hosts = argv
    host = SSHHost(
        address,
        port=int(port),
        username=user,
        client_keys=[key],
        known_hosts=known_hosts,
        name="remote",
    )
    asyncio.run(copy(catalog, direction, src, dst, host))


if __name__ == "__main__":
    main(sys.argv[1:])
