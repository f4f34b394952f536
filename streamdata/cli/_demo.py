"""``streamdata demo``: a complete multi-site session on a throw-away setup.

It starts an SSH server inside this process on ``127.0.0.1`` (generated keys, a private
``known_hosts``), makes two SSH "sites" on it and a local one, generates a data set,
copies it across the sites with progress bars, shows the replica table, deletes one
replica behind the catalog's back, runs ``check --repair`` and shows the table again.
Everything lives in a temporary directory, catalog included.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from streamdata import (
    CheckReport,
    Connector,
    DataLocation,
    DataManager,
    ExecutionLocation,
    LocalConnector,
    SSHConnector,
    StreamDataError,
)

from ..testing import open_ssh_server
from ._output import ReplicaRow, TransferProgress, describe_replicas, emit_json, replica_table

__all__ = ["run_demo"]

LAPTOP = ExecutionLocation("localhost", "laptop", local=True)
SITE_A = ExecutionLocation("login-a", "site-a")
SITE_B = ExecutionLocation("login-b", "site-b")
_SEED = 2026


def make_dataset(directory: Path, files: int, size: int) -> list[Path]:
    """Write ``files`` files of ``size`` pseudo-random bytes into ``directory``."""
    directory.mkdir(parents=True)
    rng = random.Random(_SEED)
    paths = []
    for index in range(files):
        path = directory / f"sample-{index}.dat"
        path.write_bytes(rng.randbytes(size))
        paths.append(path)
    return paths


class _Demo:
    """One run of the demo: the sites, the manager and what it prints."""

    def __init__(
        self, manager: DataManager, connectors: dict[str, Connector], root: Path, out: Console
    ) -> None:
        self.manager = manager
        self.connectors = connectors
        self.root = root
        self.out = out
        self.files: list[str] = []

    def site_path(self, location: ExecutionLocation, name: str) -> str:
        return str(self.root / location.deployment / "dataset" / name)

    async def copy_everywhere(self, progress: TransferProgress) -> None:
        """laptop -> site-a for every file, then site-a -> site-b (SSH to SSH)."""
        async with asyncio.TaskGroup() as group:
            for path in self.files:
                group.create_task(self._hop(path, progress))

    async def _hop(self, path: str, progress: TransferProgress) -> None:
        name = Path(path).name
        on_a = self.site_path(SITE_A, name)
        await self.manager.transfer_data(LAPTOP, path, [SITE_A], on_a)
        await self.manager.transfer_data(SITE_A, on_a, [SITE_B], self.site_path(SITE_B, name))

    async def rows(self) -> list[ReplicaRow]:
        replicas: dict[DataLocation, None] = {}
        for path in self.files:
            replicas.update(dict.fromkeys(self.manager.get_data_locations(path)))
        rows = await describe_replicas(self.connectors, list(replicas))
        return sorted(rows, key=lambda row: (Path(row.path).name, row.deployment))


async def run_demo(
    out: Console, err: Console, *, files: int = 4, size: int = 8 << 20, json_output: bool = False
) -> None:
    """Run the demo, printing to ``out`` (tables) and ``err`` (progress bars).

    Raises:
        StreamDataError: If a step of the demo fails or the repair does not restore
            every replica.
    """
    async with open_ssh_server() as server:
        with tempfile.TemporaryDirectory(prefix="streamdata-demo-") as temp:
            root = Path(temp)
            connectors: dict[str, Connector] = {
                "laptop": LocalConnector(),
                "site-a": SSHConnector([server.ssh_host(name=SITE_A.name)]),
                "site-b": SSHConnector([server.ssh_host(name=SITE_B.name)]),
            }
            say = _printer(out, json_output)
            say(f"SSH server (in-process) listening on {server.host}:{server.port}")
            say(f"sites: laptop (local), site-a and site-b (SSH); working in {root}")
            catalog = root / "catalog.sqlite"
            async with DataManager(connectors, catalog=catalog) as manager:
                demo = _Demo(manager, connectors, root, out)
                report = await _scenario(demo, err, files, size, json_output, say)
            _verify(report)


async def _scenario(
    demo: _Demo, err: Console, files: int, size: int, json_output: bool, say: Any
) -> CheckReport:
    for path in make_dataset(demo.root / "laptop" / "dataset", files, size):
        demo.manager.register_path(LAPTOP, str(path))
        demo.files.append(str(path))
    say(f"generated {files} files of {size >> 20} MiB on laptop")
    progress = TransferProgress(err, enabled=err.is_terminal and not json_output)
    remove = demo.manager.add_listener(progress)
    try:
        with progress:
            await demo.copy_everywhere(progress)
        before = await demo.rows()
        _show(demo, before, "replicas after the copies", json_output)
        broken = demo.site_path(SITE_B, Path(demo.files[-1]).name)
        await asyncio.to_thread(Path(broken).unlink)  # the SSH sites share this filesystem
        say(f"broke a replica: deleted {broken} on site-b behind the catalog's back")
        with progress:
            report = await demo.manager.check(
                SITE_B, str(Path(broken).parent), repair=True, max_missing=files
            )
    finally:
        remove()
    say(f"check --repair on site-b: missing {report.missing}, repaired {report.repaired}")
    after = await demo.rows()
    _show(demo, after, "replicas after check --repair", json_output)
    if json_output:
        emit_json(demo.out, _json_document(before, after, report))
    return report


def _printer(out: Console, json_output: bool) -> Any:
    def say(text: str) -> None:
        if not json_output:
            out.print(text, highlight=False, markup=False)

    return say


def _show(demo: _Demo, rows: Sequence[ReplicaRow], title: str, json_output: bool) -> None:
    if not json_output:
        demo.out.print(
            replica_table(rows, f"{title} (paths below {demo.root})", base=str(demo.root))
        )


def _json_document(
    before: Sequence[ReplicaRow], after: Sequence[ReplicaRow], report: CheckReport
) -> dict[str, Any]:
    def record(row: ReplicaRow) -> dict[str, Any]:
        return {
            "location": f"{row.deployment}:{row.location}",
            "path": row.path,
            "type": row.type,
            "size": row.size,
            "available": row.available,
        }

    return {
        "before": [record(row) for row in before],
        "check": {"missing": report.missing, "repaired": report.repaired},
        "after": [record(row) for row in after],
    }


def _verify(report: CheckReport) -> None:
    if not report.missing or sorted(report.repaired) != sorted(report.missing):
        raise StreamDataError(
            f"the demo's repair did not restore the broken replica: {report.missing} missing, "
            f"{report.repaired} repaired"
        )
