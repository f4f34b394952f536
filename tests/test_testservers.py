"""The test servers: real SSH on loopback with generated keys, reachable only as described."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from streamdata import SSHHost
from streamdata.testing import AsyncSSHTestServer, SSHTestServer, _openssh


def connect(server: SSHTestServer, **options: object) -> Any:
    """Connect to ``server`` with the client key and known_hosts it provides."""
    settings: dict[str, object] = {
        "username": server.username,
        "client_keys": [str(server.client_key)],
        "known_hosts": str(server.known_hosts),
    }
    settings.update(options)
    return asyncssh.connect(server.host, server.port, **settings)


@pytest.fixture(params=["asyncssh", "openssh"])
def any_server(
    request: pytest.FixtureRequest,
    asyncssh_server: AsyncSSHTestServer,
    openssh_server: SSHTestServer,
) -> SSHTestServer:
    """Each kind of test server in turn."""
    return asyncssh_server if request.param == "asyncssh" else openssh_server


def test_servers_listen_on_loopback_only(any_server: SSHTestServer) -> None:
    """The server is on 127.0.0.1 and its known_hosts file names it as [127.0.0.1]:PORT."""
    assert any_server.host == "127.0.0.1"
    assert any_server.port > 0
    line = any_server.known_hosts.read_text()
    assert line.startswith(f"[127.0.0.1]:{any_server.port} ssh-ed25519 ")


async def test_commands_run_for_real(any_server: SSHTestServer) -> None:
    """Commands run in a real shell: stdout, stderr and the exit status come back."""
    async with connect(any_server) as conn:
        result = await conn.run("echo out; echo err >&2; exit 3")
    assert (result.stdout, result.stderr, result.exit_status) == ("out\n", "err\n", 3)


async def test_standard_input_reaches_the_command(any_server: SSHTestServer) -> None:
    """Standard input is wired to the command and its end is seen by it."""
    payload = os.urandom(3 << 20)
    async with connect(any_server) as conn:
        result = await conn.run("cat", input=payload, encoding=None)
    assert result.stdout == payload
    assert result.exit_status == 0


async def test_sftp_serves_the_real_filesystem(any_server: SSHTestServer, tmp_path: Path) -> None:
    """SFTP reads and writes this machine's files."""
    (tmp_path / "in").write_bytes(b"from disk")
    async with connect(any_server) as conn, conn.start_sftp_client() as sftp:
        async with sftp.open(str(tmp_path / "in"), "rb") as handle:
            assert await handle.read() == b"from disk"
        async with sftp.open(str(tmp_path / "out"), "wb") as handle:
            await handle.write(b"to disk")
    assert (tmp_path / "out").read_bytes() == b"to disk"


async def test_unknown_client_keys_are_refused(any_server: SSHTestServer) -> None:
    """Only the generated client key logs in."""
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    with pytest.raises(asyncssh.PermissionDenied):
        async with connect(any_server, client_keys=[stranger], agent_path=None):
            pass


async def test_kill_connections_drops_live_connections(any_server: SSHTestServer) -> None:
    """kill_connections ends every client connection abruptly."""
    async with connect(any_server) as conn:
        await conn.run("true")
        any_server.kill_connections()
        async with asyncio.timeout(10):
            await conn.wait_closed()


def test_ssh_host_uses_the_server_settings(any_server: SSHTestServer) -> None:
    """ssh_host builds an SSHHost reaching the server, options overriding the defaults."""
    host = any_server.ssh_host(name="site")
    assert host == SSHHost(
        "127.0.0.1",
        port=any_server.port,
        username=any_server.username,
        client_keys=[any_server.client_key],
        known_hosts=any_server.known_hosts,
        name="site",
    )
    assert any_server.ssh_host(check_host_key=False).check_host_key is False


async def test_asyncssh_server_counts_open_channels(asyncssh_server: AsyncSSHTestServer) -> None:
    """The in-process server counts channels open at once, for limit tests."""
    async with connect(asyncssh_server) as conn:
        await asyncio.gather(*(conn.run("sleep 0.2") for _ in range(3)))
        await asyncssh_server.wait_open_channels(0)
    assert asyncssh_server.max_open_channels == 3
    asyncssh_server.reset_channel_count()
    assert asyncssh_server.max_open_channels == 0


async def test_closing_the_channel_kills_the_command(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path
) -> None:
    """A command whose channel the client closes is killed, not left running."""
    marker = tmp_path / "finished"
    async with connect(asyncssh_server) as conn:
        process = await conn.create_process(f"sleep 1 && touch {marker}")
        await asyncio.sleep(0.1)
        process.close()
        await asyncssh_server.wait_open_channels(0)
    await asyncio.sleep(1.2)
    assert not marker.exists()


async def test_openssh_server_stops_on_exit() -> None:
    """Leaving the context terminates sshd: its port refuses connections."""
    async with _openssh.openssh_server() as server:
        port = server.port
        async with connect(server) as conn:
            assert (await conn.run("echo up")).stdout == "up\n"
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
