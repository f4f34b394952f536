"""A destination that runs out of space mid-write: typed error, nothing partial, catalog true.

The kernel enforces the limit: the copies run in a child process whose ``RLIMIT_FSIZE``
is 1 MiB (``SIGXFSZ`` ignored), so every write past 1 MiB fails with ``EFBIG`` the way a
full disk fails with ``ENOSPC``: in the middle of the data, after a partial file exists.
This needs no privilege, unlike mounting a small filesystem. The sources (2 MiB) are
written by the test before the child starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import asyncio, json, resource, signal, sys
from pathlib import Path

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

from streamdata import (
    DataManager, DataType, ExecutionLocation, LocalConnector, SSHConnector, StreamDataError,
)
from streamdata.testing import open_ssh_server

A, B = ExecutionLocation("a", "site-a"), ExecutionLocation("b", "site-b")
R = ExecutionLocation("remote", "ssh")


async def attempt(dm, source, src_path, dst, dst_path, **options):
    try:
        await asyncio.wait_for(dm.transfer_data(source, src_path, [dst], dst_path, **options), 60)
    except StreamDataError as exc:
        cause = exc.failures.get(dst) if hasattr(exc, "failures") else None
        return {"error": type(exc).__name__, "cause": type(cause).__name__ if cause else None,
                "message": str(exc)}
    return {"error": None}


async def main(root):
    root = Path(root)
    outcomes = {}
    async with open_ssh_server() as server:
        deployments = {
            "site-a": LocalConnector(),
            "site-b": LocalConnector(),
            "ssh": SSHConnector([server.ssh_host(name="remote")]),
        }
        async with DataManager(deployments, catalog=str(root / "catalog.sqlite")) as dm:
            for name in ("big.bin", "tree"):
                dm.register_path(A, str(root / name))
                dm.register_path(R, str(root / name))
            cases = {
                "local file": (A, "big.bin", "out/file.bin", {}),
                "local tree": (A, "tree", "out/tree", {}),
                "local writable file": (A, "big.bin", "out/wfile.bin", {"writable": True}),
                "ssh file download": (R, "big.bin", "out/dl.bin", {}),
                "ssh tree download": (R, "tree", "out/dltree", {}),
            }
            for label, (source, src, dst, options) in cases.items():
                outcome = await attempt(dm, source, str(root / src), B, str(root / dst), **options)
                outcome["dst_replicas"] = len(dm.get_data_locations(str(root / dst)))
                outcome["src_valid"] = [
                    r.name for r in dm.get_data_locations(str(root / src))
                    if r.data_type is DataType.PRIMARY
                ]
                outcomes[label] = outcome
    print(json.dumps(outcomes))

asyncio.run(main(sys.argv[1]))
"""


def test_running_out_of_space_loses_nothing(tmp_path: Path) -> None:
    """Every direction: a TransferError with a ConnectorError cause, no partial, catalog true."""
    payload = os.urandom(2 << 20)
    (tmp_path / "big.bin").write_bytes(payload)
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "small.txt").write_text("fits")
    (tmp_path / "tree" / "sub" / "big.bin").write_bytes(payload)
    (tmp_path / "out").mkdir()
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr
    outcomes = json.loads(child.stdout.strip().splitlines()[-1])
    assert len(outcomes) == 5
    for label, outcome in outcomes.items():
        assert outcome["error"] == "TransferError", (label, outcome)
        assert outcome["cause"] == "ConnectorError", (label, outcome)
        assert outcome["dst_replicas"] == 0, (label, outcome)
        assert "File too large" in outcome["message"] or "SIGXFSZ" in outcome["message"]
        assert sorted(outcome["src_valid"]) == ["a", "remote"], (label, outcome)
    assert list((tmp_path / "out").iterdir()) == []  # no partial file, no temporary
    assert (tmp_path / "big.bin").read_bytes() == payload
