"""The stress run of benchmarks/stress_catalog.py: 8 processes on 2 nodes, one catalog, an audit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from catalog_kinds import DURABLE, Catalogs

STRESS = Path(__file__).parent.parent / "benchmarks" / "stress_catalog.py"


@pytest.mark.slow
@DURABLE
def test_processes_on_two_nodes_doing_random_work_on_one_catalog_lose_nothing(
    catalogs: Catalogs, tmp_path: Path
) -> None:
    """8 processes, 2 nodes, STREAMDATA_STRESS_SECONDS, a claim holder killed -9: catalog and
    disk agree, identical transfers copied once, another process finishes the copy < 10 s."""
    seconds = os.environ.get("STREAMDATA_STRESS_SECONDS", "60")
    result = subprocess.run(
        [sys.executable, str(STRESS), "--catalog", catalogs.durable(), "--workers", "8",
         "--nodes", "2", "--seconds", seconds, "--root", str(tmp_path / "stress")],
        capture_output=True,
        text=True,
        timeout=float(seconds) + 300,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["problems"] == []
    assert summary["by_kind"]["register"] > 50  # it really worked
    assert summary["by_kind"]["copy"] > 50
    assert summary["shared_transfers"] > summary["shared_copies"] > 5  # identical ones met
    assert summary["takeover"]["waiters_finished"] == 7
    assert summary["takeover"]["copied_after_kill"] < 10
    assert summary["errors"] == []
