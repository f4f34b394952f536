"""The sites file is validated once, when it is loaded: every subcommand agrees on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamdata.cli import main
from streamdata.cli._sites import SitesError, load_sites


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        ("max_sessions = 0", "max_sessions"),
        ("max_sessions = 1", "max_sessions"),
        ("max_connections = 0", "max_connections"),
        ("connect_timeout = 0", "connect_timeout"),
    ],
)
def test_limits_the_connector_refuses_are_refused_by_every_subcommand(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    option: str,
    reason: str,
) -> None:
    """A limit SSHConnector rejects makes sites, ls, cp, check, replicate all exit 2, one line."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    sites = tmp_path / "sites.toml"
    sites.write_text(
        f'[deployments.hpc]\ntype = "ssh"\n{option}\n'
        '[[deployments.hpc.hosts]]\nhost = "127.0.0.1"\nport = 1\n'
    )
    source = tmp_path / "f.txt"
    source.write_text("f")
    commands = {
        "sites": ["sites"],
        "ls": ["ls", str(source)],
        "cp": ["cp", str(source), f"{tmp_path}/g.txt"],
        "check": ["check", "local", str(tmp_path)],
        "replicate": ["replicate", str(source), "local"],
    }
    for name, args in commands.items():
        code = main(["--sites", str(sites), "--catalog", str(tmp_path / "c.sqlite"), *args])
        err = capsys.readouterr().err
        assert code == 2, (name, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("streamdata: error: "), (name, err)
        assert "deployments.hpc" in err and reason in err, (name, err)
    with pytest.raises(SitesError, match=reason):
        load_sites(sites)
