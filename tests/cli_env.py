"""What the tests of the ``streamdata`` command share: a private environment and its runs."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streamdata.testing import SSHTestServer


@dataclass
class Result:
    """What one run of the command gave."""

    code: int
    out: str
    err: str

    def json(self) -> object:
        """Standard output parsed as JSON."""
        return json.loads(self.out)


@dataclass
class Env:
    """A private HOME, XDG directories, working directory, catalog and sites file."""

    root: Path
    catalog: Path
    sites: Path

    def environ(self, warnings: str | None = "error") -> dict[str, str]:
        """The environment of the command: nothing of the real user's leaks in.

        ``warnings`` is ``PYTHONWARNINGS`` (None: Python's defaults, as most users have).
        """
        home = self.root / "home"
        environ = {
            **os.environ,
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "COLUMNS": "200",
        }
        environ.pop("PYTHONWARNINGS", None)
        return environ if warnings is None else {**environ, "PYTHONWARNINGS": warnings}

    async def run(
        self,
        *args: str,
        catalog: bool = True,
        sites: bool = True,
        warnings: str | None = "error",
        preexec_fn: Callable[[], object] | None = None,
        seconds: float = 60,
    ) -> Result:
        """Run ``python -m streamdata ARGS`` with this environment (``preexec_fn`` runs in
        the child before it starts, e.g. to set resource limits)."""
        options = (["--catalog", str(self.catalog)] if catalog else []) + (
            ["--sites", str(self.sites)] if sites else []
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streamdata",
            *options,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.environ(warnings),
            cwd=self.root / "work",
            preexec_fn=preexec_fn,
        )
        async with asyncio.timeout(seconds):
            out, err = await process.communicate()
        assert process.returncode is not None
        return Result(process.returncode, out.decode(), err.decode())

    def dump(self) -> str:
        """The whole catalog as SQL text, to compare before and after a command."""
        return dump_catalog(self.catalog)

    def file(self, relpath: str, data: bytes = b"payload\n") -> str:
        """Create a file below the root; return its path."""
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)


def dump_catalog(catalog: Path) -> str:
    connection = sqlite3.connect(catalog)
    try:
        return "\n".join(connection.iterdump())
    finally:
        connection.close()


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def sites_text(server: SSHTestServer, closed_port: int) -> str:
    common = (
        f'username = "{server.username}"\n'
        f'client_keys = ["{server.client_key}"]\n'
        f'known_hosts = "{server.known_hosts}"\n'
    )
    return (
        '[deployments.site]\ntype = "local"\n\n'
        '[deployments.remote]\ntype = "ssh"\nconnect_retries = 0\n\n'
        f'[[deployments.remote.hosts]]\nhost = "127.0.0.1"\nport = {server.port}\n'
        f'name = "box"\n{common}\n'
        '[deployments.down]\ntype = "ssh"\nconnect_retries = 0\nconnect_timeout = 5\n\n'
        f'[[deployments.down.hosts]]\nhost = "127.0.0.1"\nport = {closed_port}\n{common}'
    )


def make_env(tmp_path: Path, server: SSHTestServer) -> Env:
    """A private environment whose sites file names the in-process SSH ``server``."""
    for directory in ("home", "work"):
        (tmp_path / directory).mkdir()
    sites = tmp_path / "sites.toml"
    sites.write_text(sites_text(server, closed_port()))
    return Env(tmp_path, tmp_path / "catalog.sqlite", sites)


def one_line_error(result: Result, code: int) -> None:
    assert result.code == code, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("streamdata: error: ")
    assert "Traceback" not in result.err
