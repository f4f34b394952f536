"""The examples run as part of the test suite, so they never rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _run(script: str) -> subprocess.CompletedProcess[str]:
    """Run an example as a user would, with warnings turned into errors."""
    return subprocess.run(
        [sys.executable, str(HERE / script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=False,
    )


@pytest.mark.parametrize("script", ["multisite_copy.py", "workflow_runner.py"])
def test_example_runs(script: str) -> None:
    """Each example script exits 0 and prints something."""
    result = _run(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_multisite_copy_prints_three_primary_replicas() -> None:
    """The multi-site example ends with the origin and both copies in the catalog."""
    out = _run("multisite_copy.py").stdout
    assert sum("PRIMARY" in line for line in out.splitlines()) == 3
    for site in ("origin", "cluster", "cloud"):
        assert site in out


def test_workflow_runner_report() -> None:
    """The workflow example stages the text to the second site and back and counts 6 words."""
    out = _run("workflow_runner.py").stdout
    assert "the text has 6 words" in out
    assert "step count on hpc: done" in out
