"""Direct host-to-host copies over a configured route, on the loopback OpenSSH sshd.

Two host entries reach the same sshd under two addresses (``127.0.0.1`` and
``localhost``), so streamdata sees two hosts on two filesystems; the route from the
first runs the real ``ssh`` client there to reach the second. The servers run on this
machine, so the test reads the "remote" files directly to check what arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from streamdata import (
    DataManager,
    DataType,
    ExecutionLocation,
    SSHConnector,
    SSHHost,
    TransferError,
)
from streamdata.connectors import Entry
from streamdata.testing import SSHTestServer

FIRST = ExecutionLocation("first", "site")
SECOND = ExecutionLocation("second", "site")
HOSTILE = "it's a $(touch PWNED); -n\nname ñ"


class CountingSSHConnector(SSHConnector):
    """The real connector, counting the streams it opens through this process."""

    reads = 0

    def read(
        self, location: ExecutionLocation, entry: Entry
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        self.reads += 1
        return super().read(location, entry)


@dataclass
class Site:
    """A manager whose deployment "site" has hosts "first" and "second", and its connector."""

    manager: DataManager
    connector: CountingSSHConnector
    root: Path


def _route(server: SSHTestServer, known_hosts: Path, port: int) -> list[str]:
    """The ssh command line that, run on "first", reaches "second"."""
    return [
        "ssh",
        "-p",
        str(port),
        "-i",
        str(server.client_key),
        "-l",
        server.username,
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "localhost",
    ]


def _site_hosts(server: SSHTestServer, root: Path, route_port: int) -> Sequence[SSHHost]:
    known_hosts = root / "known_hosts"
    entry = server.known_hosts.read_text()
    known_hosts.write_text(entry + entry.replace("[127.0.0.1]", "[localhost]"))
    first = server.ssh_host(
        name="first", routes={"second": _route(server, known_hosts, route_port)}
    )
    second = SSHHost(
        "localhost",
        port=server.port,
        username=server.username,
        client_keys=[server.client_key],
        known_hosts=known_hosts,
        name="second",
    )
    return [first, second]


@contextlib.asynccontextmanager
async def _site(server: SSHTestServer, root: Path, route_port: int) -> AsyncIterator[Site]:
    connector = CountingSSHConnector(_site_hosts(server, root, route_port))
    async with DataManager({"site": connector}) as manager:
        manager.routes.force(FIRST, SECOND, "direct")  # by cost, loopback would relay
        yield Site(manager, connector, root)


@pytest.fixture
async def site(openssh_server: SSHTestServer, tmp_path: Path) -> AsyncIterator[Site]:
    """Two hosts of one deployment, "first" routing straight to "second"."""
    async with _site(openssh_server, tmp_path, openssh_server.port) as value:
        yield value


async def test_file_goes_host_to_host_without_passing_through_this_process(site: Site) -> None:
    """A file with a hostile name, its mode and mtime arrive; no stream is read here."""
    source = site.root / HOSTILE
    source.write_bytes(os.urandom(300_000))
    source.chmod(0o751)
    os.utime(source, (1_500_000_000, 1_500_000_000))
    site.manager.register_path(FIRST, str(source))
    target = site.root / "out" / HOSTILE
    await asyncio.wait_for(
        site.manager.transfer_data(FIRST, str(source), [SECOND], str(target)), 60
    )
    assert target.read_bytes() == source.read_bytes()
    info = target.stat()
    assert stat.S_IMODE(info.st_mode) == 0o751
    assert int(info.st_mtime) == 1_500_000_000
    assert site.connector.reads == 0
    assert not (site.root / "PWNED").exists()
    assert not Path("PWNED").exists()
    assert [p.name for p in target.parent.iterdir()] == [HOSTILE]
    replica = site.manager.get_data_locations(str(target), location="second")
    assert [(r.path, r.data_type) for r in replica] == [(str(target), DataType.PRIMARY)]
    related = site.manager.get_data_locations(str(source))
    assert {r.name for r in related} == {"first", "second"}


async def test_tree_goes_host_to_host_with_its_links_and_modes(site: Site) -> None:
    """A tree with an empty dir, an exec bit and an inner symlink arrives whole, directly."""
    tree = site.root / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "empty").mkdir()
    (tree / "sub" / "data.bin").write_bytes(os.urandom(50_000))
    script = tree / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    (tree / "link").symlink_to("sub/data.bin")
    site.manager.register_path(FIRST, str(tree))
    target = site.root / "copy"
    await asyncio.wait_for(site.manager.transfer_data(FIRST, str(tree), [SECOND], str(target)), 60)
    assert site.connector.reads == 0
    assert (target / "sub" / "data.bin").read_bytes() == (tree / "sub" / "data.bin").read_bytes()
    assert (target / "empty").is_dir()
    assert os.access(target / "run.sh", os.X_OK)
    assert os.readlink(target / "link") == "sub/data.bin"


async def test_in_tree_absolute_links_point_into_the_copy_over_a_route(site: Site) -> None:
    """Over a route too, an absolute link into the tree becomes relative; others verbatim."""
    tree = site.root / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "data.txt").write_text("source data")
    (tree / "abs").symlink_to(tree / "sub" / "data.txt")
    (tree / "sub" / "up").symlink_to(tree)
    (tree / "outside").symlink_to(site.root / "known_hosts")
    site.manager.register_path(FIRST, str(tree))
    target = site.root / "copy"
    await asyncio.wait_for(site.manager.transfer_data(FIRST, str(tree), [SECOND], str(target)), 60)
    assert os.readlink(target / "abs") == "sub/data.txt"
    assert os.readlink(target / "sub" / "up") == ".."
    assert os.readlink(target / "outside") == str(site.root / "known_hosts")
    (target / "abs").write_text("changed in the copy")
    assert (tree / "sub" / "data.txt").read_text() == "source data"
    assert site.connector.reads == 1  # relayed through this process, filtered


async def test_tree_with_links_out_of_it_goes_direct(site: Site) -> None:
    """A tree whose absolute links all point out of it still goes straight over the route."""
    tree = site.root / "tree"
    tree.mkdir()
    (tree / "outside").symlink_to(site.root / "known_hosts")
    site.manager.register_path(FIRST, str(tree))
    target = site.root / "copy"
    await asyncio.wait_for(site.manager.transfer_data(FIRST, str(tree), [SECOND], str(target)), 60)
    assert site.connector.reads == 0
    assert os.readlink(target / "outside") == str(site.root / "known_hosts")


async def test_broken_route_is_relayed_and_the_copy_succeeds(
    openssh_server: SSHTestServer, tmp_path: Path, unused_tcp_port: int
) -> None:
    """A route to a port where nothing listens: the copy is relayed here, the route named."""
    async with _site(openssh_server, tmp_path, unused_tcp_port) as site:
        source = site.root / "data.txt"
        source.write_text("payload")
        site.manager.register_path(FIRST, str(source))
        out = site.root / "out"
        out.mkdir()
        await asyncio.wait_for(
            site.manager.transfer_data(FIRST, str(source), [SECOND], str(out / "x.txt")), 60
        )
        assert (out / "x.txt").read_text() == "payload"
        assert [p.name for p in out.iterdir()] == ["x.txt"]
        assert site.connector.reads == 1
        route = site.manager.routes.last(FIRST, SECOND)
        assert route is not None and not route.direct
        assert "route to the destination failed" in route.reason
        replicas = site.manager.get_data_locations(str(out / "x.txt"), location="second")
        assert [r.path for r in replicas] == [str(out / "x.txt")]


async def test_vanished_source_is_reported_as_a_source_failure(site: Site) -> None:
    """A source gone behind the catalog's back: the source side is named, nothing written."""
    source = site.root / "gone.txt"
    source.write_text("soon gone")
    site.manager.register_path(FIRST, str(source))
    out = site.root / "out"
    out.mkdir()
    target = out / "gone.txt"
    # The engine stats the source before copying; remove it only once the send starts.
    original = site.connector.send

    async def send_after_removal(*args: object, **kwargs: object) -> None:
        source.unlink()
        await original(*args, **kwargs)  # type: ignore[arg-type]

    site.connector.send = send_after_removal  # type: ignore[method-assign]
    with pytest.raises(TransferError) as caught:
        await asyncio.wait_for(
            site.manager.transfer_data(FIRST, str(source), [SECOND], str(target)), 60
        )
    assert "reading the source failed" in str(caught.value.failures[SECOND])
    assert list(out.iterdir()) == []


def test_routes_must_name_another_host_of_the_connector(openssh_server: SSHTestServer) -> None:
    """A route to an unknown host, or to itself, is refused when the connector is built."""
    lost = openssh_server.ssh_host(name="first", routes={"nowhere": ["ssh", "x"]})
    with pytest.raises(ValueError, match="nowhere"):
        SSHConnector([lost])
    loop = openssh_server.ssh_host(name="first", routes={"first": ["ssh", "x"]})
    with pytest.raises(ValueError, match="first"):
        SSHConnector([loop])


def test_route_argv_must_be_a_sequence_of_strings() -> None:
    """A route given as one string (a shell line) is a TypeError, not a guess."""
    with pytest.raises(TypeError):
        SSHHost("127.0.0.1", routes={"b": "ssh b"})
    with pytest.raises(TypeError):
        SSHHost("127.0.0.1", routes={"b": []})
