"""Installing and importing streamdata is silent: no warning, nothing heavy at pytest start-up.

Each test runs a fresh interpreter, so what earlier tests imported (or the warning filters
of this pytest run) cannot hide a warning that a user's first import would show.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

IMPORT_EVERY_MODULE = """
import importlib, pkgutil, sys, warnings
import streamdata
before = list(warnings.filters)
names = sorted(m.name for m in pkgutil.walk_packages(streamdata.__path__, "streamdata."))
for name in names:
    importlib.import_module(name)
for name in streamdata.__all__:
    getattr(streamdata, name)
assert "asyncssh" in sys.modules, "nothing imported asyncssh: the test proves nothing"
assert list(warnings.filters) == before, "importing streamdata changed the warning filters"
print(len(names))
"""


def _environ() -> dict[str, str]:
    """This environment without the settings that would change what a fresh run shows."""
    skip = {"PYTHONWARNINGS", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTHONDEVMODE"}
    return {key: value for key, value in os.environ.items() if key not in skip}


def _python(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=_environ(),
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_every_module_imports_without_a_warning() -> None:
    """A fresh interpreter with -W error imports every streamdata module (asyncssh too)."""
    result = _python("-W", "error", "-c", IMPORT_EVERY_MODULE)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert int(result.stdout) > 30  # every module was walked, not just the package


def test_the_asyncssh_filter_is_narrow() -> None:
    """After streamdata imported asyncssh, the same warning category from elsewhere still shows."""
    code = (
        "import warnings\n"
        "from cryptography.utils import CryptographyDeprecationWarning\n"
        "import streamdata.connectors.ssh\n"
        "warnings.warn('from the user', CryptographyDeprecationWarning)\n"
    )
    result = _python("-W", "error", "-c", code)
    assert result.returncode == 1
    assert "CryptographyDeprecationWarning: from the user" in result.stderr


def _unrelated_project(root: Path) -> Path:
    """A project with one trivial test and warnings turned into errors.

    pytest-asyncio (installed here with the test extras) warns on its own when its loop
    scope option is unset, streamdata or not; the project sets it, as such projects do.
    """
    root.mkdir()
    (root / "pyproject.toml").write_text(
        "[tool.pytest.ini_options]\n"
        'filterwarnings = ["error"]\n'
        'asyncio_default_fixture_loop_scope = "function"\n'
    )
    (root / "test_trivial.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    return root


def test_the_plugin_leaves_an_unrelated_project_alone(tmp_path: Path) -> None:
    """A strict project passes with streamdata installed; the plugin loads, asyncssh does not."""
    project = _unrelated_project(tmp_path / "project")
    run = _python("-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout
    collect = _python(
        "-X", "importtime", "-m", "pytest", "--co", "--trace-config", "-p", "no:cacheprovider",
        cwd=project,
    )  # fmt: skip
    assert collect.returncode == 0, collect.stdout + collect.stderr
    # pytest imports entry-point plugins with importlib, which -X importtime does not log:
    # --trace-config says the plugin was loaded; the log shows what it imported.
    assert "PLUGIN registered: <module 'streamdata.testing._plugin'" in collect.stdout
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0] for line in collect.stderr.splitlines()
    }
    assert "pytest_asyncio" in imported  # the log is read correctly ...
    assert not imported & {"asyncssh", "cryptography", "networkx", "rich", "sqlite3"}  # ... light
