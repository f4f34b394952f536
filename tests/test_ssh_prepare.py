"""Where a copy lands on an SSH host: the same answers cold or warm, near or far.

A cold far host (no SFTP session yet, a round trip of 5 ms or more) is asked by a
command while its SFTP session starts; a warm or near one over SFTP. Both against the
in-process asyncssh server (which records its SFTP requests) and a real OpenSSH sshd,
the far one behind :class:`~streamdata.testing.DelayLine`.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streamdata import ConnectorError, ExecutionLocation, SSHConnector
from streamdata.testing import AsyncSSHTestServer, DelayLine, SSHTestServer

LOCATION = ExecutionLocation("remote", "ssh")
#: One way: a 20 ms round trip, far enough for the command.
DELAY = 0.01
HOSTILE = "a b/$(touch pwned)/'q\"/-x\nline"


@contextlib.asynccontextmanager
async def connector_to(
    server: SSHTestServer, directory: Path, *, far: bool
) -> AsyncIterator[SSHConnector]:
    """A connector whose location ``remote`` is ``server``, through a delay line if far."""
    async with contextlib.AsyncExitStack() as stack:
        host = server.ssh_host(name="remote")
        if far:
            line = await stack.enter_async_context(DelayLine(server.host, server.port, delay=DELAY))
            key = server.known_hosts.read_text().split(None, 1)[1]
            known_hosts = directory / f"known_hosts_{line.port}"
            known_hosts.write_text(f"[{server.host}]:{line.port} {key}")
            host = server.ssh_host(port=line.port, known_hosts=known_hosts, name="remote")
        yield await stack.enter_async_context(SSHConnector([host]))


@pytest.fixture(params=["asyncssh_server", "openssh_server"])
def server(request: pytest.FixtureRequest) -> SSHTestServer:
    """The in-process asyncssh server, then OpenSSH's sshd."""
    chosen: SSHTestServer = request.getfixturevalue(request.param)
    return chosen


@pytest.mark.parametrize("far", [True, False], ids=["far", "near"])
async def test_cold_and_warm_give_the_same_answers(
    server: SSHTestServer, tmp_path: Path, far: bool
) -> None:
    """Into a directory: inside it; to a new path: its missing parents made (hostile names
    included, nothing run); the same on a cold host and once it is warm."""
    (tmp_path / "dir").mkdir()
    cases = [
        (str(tmp_path / "dir"), str(tmp_path / "dir" / "base")),
        (str(tmp_path / "new" / "deep" / "file"), str(tmp_path / "new" / "deep" / "file")),
        (str(tmp_path / HOSTILE / "file"), str(tmp_path / HOSTILE / "file")),
    ]
    for warm in (False, True):
        async with connector_to(server, tmp_path, far=far) as connector:
            if warm:
                await connector.stat(LOCATION, str(tmp_path))
            for dst_path, expected in cases:
                final = await connector.prepare_destination(LOCATION, dst_path, "base")
                assert final == expected
                assert Path(posixpath.dirname(final)).is_dir()
    assert not (tmp_path / "pwned").exists()
    assert not list(tmp_path.rglob("pwned"))


@pytest.mark.parametrize("far", [True, False], ids=["far", "near"])
async def test_a_file_in_the_way_of_the_parents_fails_cold(
    server: SSHTestServer, tmp_path: Path, far: bool
) -> None:
    """A file where a parent should be: ConnectorError naming the path, nothing made."""
    (tmp_path / "plain").write_text("data")
    dst_path = str(tmp_path / "plain" / "sub" / "file")
    async with connector_to(server, tmp_path, far=far) as connector:
        with pytest.raises(ConnectorError) as caught:
            await connector.prepare_destination(LOCATION, dst_path, "base")
    assert "plain" in str(caught.value)
    assert (tmp_path / "plain").read_text() == "data"


@pytest.mark.parametrize("far", [True, False], ids=["far", "near"])
async def test_a_cold_far_host_is_asked_by_a_command(
    asyncssh_server: AsyncSSHTestServer, tmp_path: Path, far: bool
) -> None:
    """Far and cold: no SFTP stat (the SFTP session starts meanwhile, for what follows);
    near: the stats go over SFTP and no command channel is opened for them."""
    asyncssh_server.sftp_requests.clear()
    async with connector_to(asyncssh_server, tmp_path, far=far) as connector:
        asyncssh_server.reset_channel_count()
        final = await connector.prepare_destination(LOCATION, str(tmp_path), "base")
        assert final == str(tmp_path / "base")
        stats = asyncssh_server.sftp_requests.count("stat")
        # SFTP, the standby, and (far) the command
        channels = asyncssh_server.max_open_channels
        await connector.stat(LOCATION, str(tmp_path))  # the session is there by now
    if far:
        assert (stats, channels) == (0, 3)
    else:
        assert stats == 2
        assert channels <= 2
