"""Test helpers for code that embeds streamdata: a pytest plugin and a faulty connector.

Installed with streamdata, the plugin (:mod:`streamdata.testing._plugin`) is loaded by
pytest on its own (``pytest11`` entry point); its fixtures need ``pytest-asyncio``. Loading
it imports neither this module nor asyncssh: that happens when a test first uses a
fixture, so a project that does not use them is not affected. The fixtures are
function-scoped, with the test's event loop (:func:`open_ssh_server`,
:func:`open_ssh_location` and :func:`open_data_manager` give the same objects outside a
fixture):

``ssh_server``
    A real SSH server running inside the test process on ``127.0.0.1`` and a free port,
    with generated host and client keys (:class:`~streamdata.testing.AsyncSSHTestServer`).
    It runs commands with ``/bin/sh -c`` as the current user and serves SFTP, both on this
    machine's real filesystem.
``ssh_location``
    An :class:`SSHLocation`: an :class:`~streamdata.ExecutionLocation` on that server, the
    :class:`~streamdata.SSHConnector` deployment that reaches it (host key checked), and
    an empty working directory.
``data_manager``
    A :class:`~streamdata.DataManager` (in-memory catalog) with a local deployment
    (:data:`LOCAL_DEPLOYMENT`, location :data:`LOCAL_LOCATION`) and the SSH deployment
    of ``ssh_location``; closed after the test.

:class:`FaultyConnector` wraps any connector and injects faults deterministically, for
testing how an engine copes: fail or hang at the N-th call of a method (optionally after
N bytes of a stream), and limit the bandwidth of read and write streams::

    async def test_engine_reports_failed_staging(data_manager, ssh_location):
        faulty = FaultyConnector(ssh_location.connector).fail_at("write", 1)
        ...

:class:`DelayLine` puts a wide-area link in front of any TCP server on this machine: a
loopback proxy adding a delay each way, which counts the bytes it carries
(:class:`Direction`) and can cut every connection at a byte count or on demand, for
testing code that must cope with a far or failing site::

    async with DelayLine(server.host, server.port, delay=0.02) as line:  # 40 ms RTT
        host = server.ssh_host(port=line.port, known_hosts=...)  # the key under line.port
        line.cut_after(10 << 20, Direction.UP)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names as _lazy_names

if TYPE_CHECKING:
    from ._delayline import DelayLine, Direction
    from ._kit import (
        LOCAL_DEPLOYMENT,
        LOCAL_LOCATION,
        SSH_DEPLOYMENT,
        FaultyConnector,
        SSHLocation,
        open_data_manager,
        open_ssh_location,
    )
    from ._plugin import data_manager, ssh_location, ssh_server
    from ._servers import AsyncSSHTestServer, SSHTestServer, open_ssh_server

__all__ = [
    "LOCAL_DEPLOYMENT",
    "LOCAL_LOCATION",
    "SSH_DEPLOYMENT",
    "AsyncSSHTestServer",
    "DelayLine",
    "Direction",
    "FaultyConnector",
    "SSHLocation",
    "SSHTestServer",
    "data_manager",
    "open_data_manager",
    "open_ssh_location",
    "open_ssh_server",
    "ssh_location",
    "ssh_server",
]

#: The module that defines each public name. Imported on first use, so that the pytest
#: plugin (:mod:`._plugin`, loaded by every pytest run) stays light.
_HOMES = {
    "LOCAL_DEPLOYMENT": "._kit",
    "LOCAL_LOCATION": "._kit",
    "SSH_DEPLOYMENT": "._kit",
    "FaultyConnector": "._kit",
    "DelayLine": "._delayline",
    "Direction": "._delayline",
    "SSHLocation": "._kit",
    "open_data_manager": "._kit",
    "open_ssh_location": "._kit",
    "AsyncSSHTestServer": "._servers",
    "SSHTestServer": "._servers",
    "open_ssh_server": "._servers",
    "data_manager": "._plugin",
    "ssh_location": "._plugin",
    "ssh_server": "._plugin",
}


__getattr__, __dir__ = _lazy_names(__name__, _HOMES, __all__)
