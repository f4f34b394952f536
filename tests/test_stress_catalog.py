"""The stress run of benchmarks/stress_catalog.py: N processes, one catalog, then an audit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

STRESS = Path(__file__).parent.parent / "benchmarks" / "stress_catalog.py"


@pytest.mark.slow
def test_processes_doing_random_work_on_one_catalog_lose_nothing(tmp_path: Path) -> None:
    """4 processes (one killed half-way) for STREAMDATA_STRESS_SECONDS: catalog and disk agree."""
    seconds = os.environ.get("STREAMDATA_STRESS_SECONDS", "60")
    result = subprocess.run(
        [sys.executable, str(STRESS), "--workers", "4", "--seconds", seconds,
         "--root", str(tmp_path / "stress")],
        capture_output=True,
        text=True,
        timeout=float(seconds) + 300,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["by_kind"]["register"] > 50  # it really worked
    assert summary["by_kind"]["copy"] > 50
    assert summary["lost_registrations"] == []
    assert summary["untrue_replicas"] == []
    assert summary["temporaries_left"] == []
