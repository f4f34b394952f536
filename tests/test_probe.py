"""Readiness: probes of live, stopped and frozen servers, and the breaker sources go by.

The servers are real OpenSSH ``sshd`` processes logged into as a plain user (shell
``/bin/sh``); "frozen" is a listening ``sshd`` stopped with ``SIGSTOP``: the kernel
accepts connections, nobody answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fault_sites import PLAIN_USER, same_file, user_directory

from streamdata import (
    ConfigurationError,
    DataManager,
    ExecutionLocation,
    LocalConnector,
    Readiness,
    ReadinessState,
    SSHConnector,
    TransferEvent,
)
from streamdata._engine.health import Health
from streamdata.testing._openssh import OpenSSHTestServer, openssh_server

LOCAL = ExecutionLocation("localhost", "local", local=True)
LIVE, STOPPED, FROZEN = (ExecutionLocation(n, n) for n in ("live", "stopped", "frozen"))
#: What a probe may take beyond its timeout (scheduling on a loaded 2-core machine).
SLACK = 0.5
#: Every test bounds how long probes take (CI runs them alone: the ``timing`` marker).
pytestmark = pytest.mark.timing


@dataclass
class Servers:
    """Three OpenSSH servers: one live, one stopped, one frozen (thawed at the end)."""

    live: OpenSSHTestServer
    stopped: OpenSSHTestServer
    frozen: OpenSSHTestServer

    def connectors(self) -> dict[str, SSHConnector]:
        """One SSH deployment per server, named as its location, plus nothing else."""
        return {
            name: SSHConnector([server.ssh_host(name=name)], connect_timeout=15)
            for name, server in (
                ("live", self.live),
                ("stopped", self.stopped),
                ("frozen", self.frozen),
            )
        }


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    """A live, a stopped and a frozen OpenSSH server."""
    async with (
        openssh_server(user=PLAIN_USER) as live,
        openssh_server(user=PLAIN_USER) as stopped,
        openssh_server(user=PLAIN_USER) as frozen,
    ):
        await stopped.stop()
        frozen.freeze()
        try:
            yield Servers(live, stopped, frozen)
        finally:
            frozen.thaw()


async def _timed_probe(dm: DataManager, location: ExecutionLocation, seconds: float) -> Readiness:
    """Probe ``location`` for up to ``seconds``; assert the answer came in time."""
    started = time.monotonic()
    answer = await dm.probe(location, timeout=seconds)
    assert time.monotonic() - started < seconds + SLACK, answer
    assert answer.location == location and answer.checked_at is not None
    return answer


async def test_probe_tells_live_stopped_and_frozen_servers_apart(servers: Servers) -> None:
    """A live server is up with its round trip; stopped and frozen ones are down, in time."""
    async with DataManager(servers.connectors()) as dm:
        live = await _timed_probe(dm, LIVE, 3.0)
        assert live.state is ReadinessState.UP and live.error is None
        assert live.round_trip is not None and 0 < live.round_trip < 1
        stopped = await _timed_probe(dm, STOPPED, 3.0)
        assert stopped.state is ReadinessState.DOWN and stopped.round_trip is None
        assert stopped.error and "cannot connect" in stopped.error
        started = time.monotonic()
        frozen = await _timed_probe(dm, FROZEN, 1.0)
        assert time.monotonic() - started > 0.9  # it did wait for an answer
        assert frozen.state is ReadinessState.DOWN
        assert frozen.error == "no answer within 1 s"


async def test_probes_are_remembered_and_a_deployment_probes_each_location(
    servers: Servers,
) -> None:
    """max_age returns the last answer unasked; a deployment name probes its hosts."""
    hosts = [servers.live.ssh_host(name="one"), servers.live.ssh_host(name="two")]
    async with DataManager({**servers.connectors(), "pair": SSHConnector(hosts)}) as dm:
        first = await dm.probe(STOPPED, timeout=3)
        assert await dm.probe(STOPPED, max_age=60) is first
        assert await dm.probe(STOPPED, max_age=0) is not first
        answers = await dm.probe("pair", timeout=3)
        assert [a.location.name for a in answers] == ["one", "two"]
        assert {a.state for a in answers} == {ReadinessState.UP}
        with pytest.raises(ConfigurationError):
            await dm.probe("nowhere")
        with pytest.raises(ValueError, match="timeout"):
            await dm.probe(LIVE, timeout=0)


async def test_a_source_known_down_is_skipped_for_another_replica(
    servers: Servers, tmp_path: Path
) -> None:
    """After a probe found it down, a frozen source is not waited for: another replica is read."""
    with user_directory() as root:
        frozen_copy = same_file(root / "frozen" / "data.bin", b"payload" * 1000)
        live_copy = same_file(root / "live" / "data.bin", b"payload" * 1000)
        async with DataManager({**servers.connectors(), "local": LocalConnector()}) as dm:
            down = dm.register_path(FROZEN, frozen_copy)
            dm.register_relation(down, dm.register_path(LIVE, live_copy))
            assert dm.get_source_location(frozen_copy, "frozen") is down
            await dm.probe(FROZEN, timeout=1)
            assert dm.get_source_location(frozen_copy, "frozen").location == LIVE  # type: ignore[union-attr]
            events: list[object] = []
            dm.add_listener(events.append)
            started = time.monotonic()
            async with asyncio.timeout(10):  # a frozen source would take 15 s to time out
                await dm.transfer_data(FROZEN, frozen_copy, [LOCAL], str(tmp_path / "out"))
            assert time.monotonic() - started < 5
            assert (tmp_path / "out").read_bytes() == b"payload" * 1000
            sources = {e.source for e in events if isinstance(e, TransferEvent)}
            assert sources == {LIVE}


async def test_a_source_known_down_is_still_read_when_it_is_the_only_one(
    servers: Servers, tmp_path: Path
) -> None:
    """Skipping never fails a transfer that could work: the only source, found down, is read."""
    with user_directory() as root:
        copy = same_file(root / "data.bin", b"only copy")
        async with DataManager({**servers.connectors(), "local": LocalConnector()}) as dm:
            dm.register_path(FROZEN, copy)
            assert (await dm.probe(FROZEN, timeout=1)).state is ReadinessState.DOWN
            servers.frozen.thaw()
            await dm.transfer_data(FROZEN, copy, [LOCAL], str(tmp_path / "out"))
            assert (tmp_path / "out").read_bytes() == b"only copy"
            assert (await dm.probe(FROZEN, max_age=60)).state is ReadinessState.UP


def test_the_breaker_opens_on_failure_and_half_opens_after_a_while() -> None:
    """Down: skipped for down_for seconds, then tried again; a success closes it."""
    now = [100.0]
    health = Health(down_for=30, clock=lambda: now[0])
    where = ExecutionLocation("n", "d")
    assert health.readiness(where).state is ReadinessState.UNKNOWN
    health.record(Readiness(where, ReadinessState.DOWN, error="refused", checked_at=1.0))
    assert health.is_down(where)
    now[0] += 29
    assert health.is_down(where)
    now[0] += 2
    assert not health.is_down(where)  # half-open: may be tried again
    health.record(Readiness(where, ReadinessState.DOWN, error="refused", checked_at=2.0))
    assert health.is_down(where)
    health.succeeded(where)
    assert not health.is_down(where)
    assert health.readiness(where).state is ReadinessState.UP


def _sites_file(path: Path, servers: Servers) -> Path:
    blocks = ['[deployments.here]\ntype = "local"\n']
    for name in ("live", "stopped", "frozen"):
        server: OpenSSHTestServer = getattr(servers, name)
        blocks.append(
            f'[deployments.{name}]\ntype = "ssh"\n\n'
            f'[[deployments.{name}.hosts]]\nhost = "127.0.0.1"\nport = {server.port}\n'
            f'username = "{server.username}"\nclient_keys = ["{server.client_key}"]\n'
            f'known_hosts = "{server.known_hosts}"\nname = "{name}"\n'
        )
    path.write_text("\n".join(blocks))
    return path


async def _streamdata(tmp_path: Path, *args: str) -> tuple[str, float]:
    """Run the command; its standard output and how long it took."""
    environ = {**os.environ, "HOME": str(tmp_path), "COLUMNS": "200"}
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamdata",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode(), time.monotonic() - started


async def test_sites_probe_shows_each_state_and_round_trip(
    servers: Servers, tmp_path: Path
) -> None:
    """``sites --probe`` (JSON and table): up with a round trip, down with a reason, in time."""
    sites = str(_sites_file(tmp_path / "sites.toml", servers))
    with contextlib.chdir(tmp_path):
        out, took = await _streamdata(
            tmp_path, "--sites", sites, "sites", "--probe", "--timeout", "2", "--json"
        )
    rows = {row["location"]: row for row in json.loads(out)["locations"]}
    assert {name: row["state"] for name, row in rows.items()} == {
        "localhost": "up",
        "live": "up",
        "stopped": "down",
        "frozen": "down",
    }
    assert rows["live"]["round_trip"] > 0 and rows["stopped"]["round_trip"] is None
    assert rows["frozen"]["error"] == "no answer within 2 s"
    assert took < 2 + 4  # the probes ran at once, each within its timeout (plus start-up)
    table, _ = await _streamdata(tmp_path, "--sites", sites, "sites", "--probe", "--timeout", "1")
    (live,) = [line for line in table.splitlines() if " live " in line]
    (frozen,) = [line for line in table.splitlines() if " frozen " in line]
    assert " up " in live and " ms " in live
    assert " down " in frozen and "no answer within 1 s" in frozen
