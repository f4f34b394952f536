"""Direct route or relay, chosen by measured cost, on a real OpenSSH sshd on loopback.

Two host entries of one deployment reach the same sshd (logged into as a plain user
with ``/bin/sh``) at two addresses, so streamdata sees two hosts on two filesystems;
the route from "first" runs the real ``ssh`` client there to reach "second". A
:class:`~streamdata.testing.DelayLine` in front of the sshd makes one link slow: the
route (the ``ssh`` on "first" goes through it) or this process's link to "second".
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fault_sites import PLAIN_USER, same_file, user_directory

from streamdata import (
    DataManager,
    EventKind,
    ExecutionLocation,
    SSHConnector,
    SSHHost,
    TransferError,
    TransferEvent,
)
from streamdata._engine.routes import MEASURE_MIN, PROBE_BYTES
from streamdata.testing import DelayLine
from streamdata.testing._openssh import OpenSSHTestServer, openssh_server

FIRST = ExecutionLocation("first", "site")
SECOND = ExecutionLocation("second", "site")
MiB = 1 << 20


class CountingSSHConnector(SSHConnector):
    """The real connector, counting its link measurements and the streams read here."""

    measured = 0
    reads = 0

    async def measure_link(
        self, source: ExecutionLocation | None, target: ExecutionLocation | None, size: int
    ) -> tuple[float, float, int]:
        self.measured += 1
        return await super().measure_link(source, target, size)

    def read(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().read(*args, **kwargs)


@dataclass
class Site:
    """A manager with hosts "first" and "second" of deployment "site", and their files."""

    manager: DataManager
    connector: CountingSSHConnector
    root: Path


@pytest.fixture
async def server() -> AsyncIterator[OpenSSHTestServer]:
    """An sshd logged into as the plain user."""
    async with openssh_server(user=PLAIN_USER) as value:
        yield value


@pytest.fixture
def root() -> Iterator[Path]:
    """A directory the plain user owns: the hosts' files, and the route's key files."""
    with user_directory() as path:
        yield path


def _known_hosts(server: OpenSSHTestServer, root: Path, ports: list[int]) -> Path:
    """A known_hosts file naming the server's key at 127.0.0.1 and localhost, each port."""
    entry = server.known_hosts.read_text()
    lines = []
    for port in ports:
        line = entry.replace(f"]:{server.port} ", f"]:{port} ")
        lines += [line, line.replace("[127.0.0.1]", "[localhost]")]
    path = root / "known_hosts"
    path.write_text("".join(lines))
    return path


def _route(server: OpenSSHTestServer, root: Path, known_hosts: Path, port: int) -> list[str]:
    """The ssh command line that, run on "first" as the plain user, reaches "second"."""
    key = root / "route_key"
    shutil.copy(server.client_key, key)
    if os.geteuid() == 0:
        shutil.chown(key, PLAIN_USER, PLAIN_USER)
        shutil.chown(known_hosts, PLAIN_USER, PLAIN_USER)
    key.chmod(0o600)
    options = ["UserKnownHostsFile=" + str(known_hosts), "StrictHostKeyChecking=yes"]
    options += ["BatchMode=yes", "IdentitiesOnly=yes", "LogLevel=ERROR"]
    argv = ["ssh", "-p", str(port), "-i", str(key), "-l", server.username]
    for option in options:
        argv += ["-o", option]
    return [*argv, "localhost"]


@contextlib.asynccontextmanager
async def _site(
    server: OpenSSHTestServer, root: Path, *, route_port: int, second_port: int
) -> AsyncIterator[Site]:
    """The two hosts; "second" reached here at ``second_port``, over the route at ``route_port``."""
    known = _known_hosts(server, root, sorted({server.port, route_port, second_port}))
    first = server.ssh_host(
        name="first", known_hosts=known, routes={"second": _route(server, root, known, route_port)}
    )
    second = SSHHost(
        "localhost",
        port=second_port,
        username=server.username,
        client_keys=[server.client_key],
        known_hosts=known,
        name="second",
    )
    connector = CountingSSHConnector([first, second])
    async with DataManager({"site": connector}) as manager:
        yield Site(manager, connector, root)


async def _copy(site: Site, size: int, name: str = "data.bin") -> tuple[bytes, Path]:
    """Copy a fresh file of ``size`` bytes from "first" to "second"; returns data and target."""
    data = os.urandom(size)
    source = same_file(site.root / "in" / name, data)
    site.manager.register_path(FIRST, source)
    target = site.root / "out" / name
    await asyncio.wait_for(site.manager.transfer_data(FIRST, source, [SECOND], str(target)), 120)
    return data, target


async def _catalog_true(site: Site, target: Path, data: bytes) -> None:
    """The copy holds the data, is registered on "second", and a check finds it sound."""
    assert target.read_bytes() == data
    replicas = site.manager.get_data_locations(str(target), location="second")
    assert [r.path for r in replicas] == [str(target)]
    report = await site.manager.check(SECOND, str(target))
    assert report.missing == [] and report.orphans == []


async def test_relay_is_chosen_when_the_route_is_slow(
    server: OpenSSHTestServer, root: Path
) -> None:
    """A route through a 2 x 60 ms line loses to the loopback relay: the copy goes through here."""
    async with (
        DelayLine("127.0.0.1", server.port, delay=0.06) as line,
        _site(server, root, route_port=line.port, second_port=server.port) as site,
    ):
        data, target = await _copy(site, 8 * MiB)
        route = site.manager.routes.last(FIRST, SECOND)
        assert route is not None and not route.direct and route.reason == "cheaper"
        assert len(route.path) == 3 and route.path[1] == "this process"
        assert route.seconds is not None and route.other_seconds is not None
        assert route.seconds < route.other_seconds
        assert site.connector.reads == 1
        assert line.accepted >= 1  # the route was measured through the line
        await _catalog_true(site, target, data)


async def test_direct_route_is_chosen_when_this_process_is_far(
    server: OpenSSHTestServer, root: Path
) -> None:
    """Behind a slow line from here (2.6 MB/s), "second" gets the data over the loopback route."""
    async with (
        DelayLine("127.0.0.1", server.port, delay=0.1, buffer=256 << 10) as line,
        _site(server, root, route_port=server.port, second_port=line.port) as site,
    ):
        data, target = await _copy(site, 8 * MiB)
        route = site.manager.routes.last(FIRST, SECOND)
        assert route is not None and route.direct and route.reason == "cheaper"
        assert route.seconds is not None and route.other_seconds is not None
        assert route.seconds < route.other_seconds
        assert site.connector.reads == 0
        links = {(link.source, link.target): link for link in site.manager.routes.links()}
        assert set(links) == {(FIRST, SECOND), (FIRST, None), (None, SECOND)}
        assert links[(None, SECOND)].rate < links[(FIRST, SECOND)].rate
        assert links[(None, SECOND)].streams == 1  # the line, not the window, caps it
        await _catalog_true(site, target, data)


async def test_measurements_are_cached_then_taken_again_after_their_age(
    server: OpenSSHTestServer, root: Path
) -> None:
    """A second copy reuses the links' measurements; once older than max_age, they are redone."""
    async with _site(server, root, route_port=server.port, second_port=server.port) as site:
        routes = site.manager.routes
        await _copy(site, PROBE_BYTES, "one")
        first_count = site.connector.measured
        assert first_count == 3  # three links: to here, from here, the route
        stamps = {(link.source, link.target): link.measured_at for link in routes.links()}
        await _copy(site, PROBE_BYTES, "two")
        assert site.connector.measured == first_count
        routes.max_age = 0.0
        data, target = await _copy(site, PROBE_BYTES, "three")
        assert site.connector.measured == 2 * first_count
        again = {(link.source, link.target): link.measured_at for link in routes.links()}
        assert set(again) == set(stamps)
        assert all(again[key] > stamps[key] for key in stamps)
        await _catalog_true(site, target, data)


async def test_broken_route_falls_back_to_relay_and_is_avoided_next(
    server: OpenSSHTestServer, root: Path
) -> None:
    """A route that stops answering before writing: the copy is relayed, then relay is chosen."""
    async with (
        DelayLine("127.0.0.1", server.port) as line,
        _site(server, root, route_port=line.port, second_port=server.port) as site,
    ):
        routes = site.manager.routes
        routes.force(FIRST, SECOND, "direct")
        await _copy(site, MiB, "before")
        assert site.connector.reads == 0  # forced and working: direct
        line.refusing = True
        data, target = await _copy(site, 3 * MiB, "during")
        route = routes.last(FIRST, SECOND)
        assert route is not None and not route.direct
        assert route.reason.startswith("the direct route failed")
        assert site.connector.reads == 1
        await _catalog_true(site, target, data)
        assert [p.name for p in target.parent.iterdir() if p.name.startswith(".")] == []
        routes.force(FIRST, SECOND, None)
        data, target = await _copy(site, MiB, "small")  # too small to measure for
        route = routes.last(FIRST, SECOND)
        assert route is not None and not route.direct
        assert route.reason == "the direct route is known broken"
        assert site.connector.measured == 0
        await _catalog_true(site, target, data)
        data, target = await _copy(site, PROBE_BYTES, "after")
        route = routes.last(FIRST, SECOND)
        assert route is not None and not route.direct and route.reason == "cheaper"
        assert route.other_seconds is None  # the broken route costs infinity
        assert any(math.isinf(link.latency) for link in routes.links())
        await _catalog_true(site, target, data)


async def test_a_small_copy_takes_the_route_without_measuring_links(
    server: OpenSSHTestServer, root: Path
) -> None:
    """Below MEASURE_MIN nothing is measured (the route is taken); once a big copy measured
    the links, small copies choose by those measurements too."""
    async with _site(server, root, route_port=server.port, second_port=server.port) as site:
        routes = site.manager.routes
        data, target = await _copy(site, 64 << 10, "small")
        route = routes.last(FIRST, SECOND)
        assert route is not None and route.direct and route.reason == "not measured"
        assert (site.connector.measured, site.connector.reads) == (0, 0)
        await _catalog_true(site, target, data)
        await _copy(site, MEASURE_MIN, "big")
        assert site.connector.measured == 3
        await _copy(site, 64 << 10, "small-again")
        route = routes.last(FIRST, SECOND)
        assert route is not None and route.reason == "cheaper" and route.seconds is not None
        assert site.connector.measured == 3


async def test_both_ways_failing_names_the_route(server: OpenSSHTestServer, root: Path) -> None:
    """Route down and destination unwritable: TransferError names the route, then the relay."""
    async with (
        DelayLine("127.0.0.1", server.port) as line,
        _site(server, root, route_port=line.port, second_port=server.port) as site,
    ):
        site.manager.routes.force(FIRST, SECOND, "direct")
        line.refusing = True
        source = same_file(root / "in" / "x.bin", b"payload")
        site.manager.register_path(FIRST, source)
        out = root / "out"
        out.mkdir()
        if os.geteuid() == 0:
            shutil.chown(out, PLAIN_USER, PLAIN_USER)
        out.chmod(0o555)
        with pytest.raises(TransferError) as caught:
            await asyncio.wait_for(
                site.manager.transfer_data(FIRST, source, [SECOND], str(out / "x.bin")), 60
            )
        message = str(caught.value.failures[SECOND])
        assert "route to the destination failed" in message
        assert message.index("route to the destination") < message.index("relaying")
        assert site.manager.get_data_locations(str(out / "x.bin")) == []


async def test_tree_events_count_files_only_when_relayed(
    server: OpenSSHTestServer, root: Path
) -> None:
    """A tree sent over the route reports no files; the same tree relayed reports each."""
    async with _site(server, root, route_port=server.port, second_port=server.port) as site:
        tree = root / "tree"
        for name in ("a", "b", "c"):
            same_file(tree / name, name.encode() * 1000)
        site.manager.register_path(FIRST, str(tree))
        finished: list[TransferEvent] = []

        def keep(event: object) -> None:
            if isinstance(event, TransferEvent) and event.kind is EventKind.TRANSFER_FINISHED:
                finished.append(event)

        site.manager.add_listener(keep)
        for mode in ("direct", "relay"):
            site.manager.routes.force(FIRST, SECOND, mode)
            target = root / f"out-{mode}"
            await asyncio.wait_for(
                site.manager.transfer_data(FIRST, str(tree), [SECOND], str(target), writable=True),
                60,
            )
            assert sorted(p.name for p in target.iterdir()) == ["a", "b", "c"]
        direct, relayed = finished
        assert (direct.files_done, direct.files_total) == (0, None)
        assert (relayed.files_done, relayed.files_total) == (3, 3)
        assert site.connector.reads == 1


def test_force_refuses_an_unknown_mode() -> None:
    """Only "direct", "relay" and None are modes."""
    manager = DataManager()
    with pytest.raises(ValueError, match="mode"):
        manager.routes.force(FIRST, SECOND, "fast")  # type: ignore[arg-type]
