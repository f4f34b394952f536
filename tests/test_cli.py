"""The streamdata command end to end: real subprocesses, a real SSH server, a real catalog.

Errors found before any I/O (usage, sites file) and the help texts are checked by calling
``streamdata.cli.main`` in this process, which is the same code without the start-up
cost of a new interpreter.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_env import Env, Result, closed_port, dump_catalog, one_line_error

from streamdata import ExecutionLocation
from streamdata.cli import main
from streamdata.cli._sites import load_sites


async def test_sites_lists_every_location(env: Env) -> None:
    """sites shows the file's deployments plus the built-in local one, as JSON too."""
    table = await env.run("sites")
    assert table.code == 0, table
    for word in ("remote", "box", "down", "site", "local"):
        assert word in table.out
    document = (await env.run("sites", "--json")).json()
    assert isinstance(document, dict)
    assert document["sites_file"] == str(env.sites)
    names = {(row["deployment"], row["location"]) for row in document["locations"]}
    assert names == {
        ("site", "localhost"),
        ("remote", "box"),
        ("down", "127.0.0.1"),
        ("local", "localhost"),
    }


async def test_cp_local_to_local_then_ls(env: Env) -> None:
    """cp of an unregistered local file registers it, copies it, and ls shows both replicas."""
    source = env.file("src/data.txt", b"hello\n")
    target = str(env.root / "copy" / "data.txt")
    result = await env.run("cp", source, f"site:{target}")
    assert result.code == 0, result
    assert Path(target).read_bytes() == b"hello\n"
    listing = (await env.run("ls", "--json", source)).json()
    assert isinstance(listing, dict)
    rows = {(r["location"], r["path"]): r for r in listing["replicas"]}
    assert set(rows) == {("local:localhost", source), ("site:localhost", target)}
    assert all(r["type"] == "PRIMARY" and r["available"] and r["size"] == 6 for r in rows.values())


async def test_cp_to_ssh_and_local_destinations_at_once(env: Env) -> None:
    """One cp with two destination locations (SSH and local) copies a tree to both."""
    env.file("tree/a.txt", b"a")
    env.file("tree/sub/b.txt", b"bb")
    (env.root / "out").mkdir()
    result = await env.run(
        "cp", "--json", str(env.root / "tree"), f"remote:box,site:{env.root}/out"
    )
    assert result.code == 0, result
    document = result.json()
    assert isinstance(document, dict)
    destinations = document["copies"][0]["destinations"]
    assert {d["location"] for d in destinations} == {"remote:box", "site:localhost"}
    assert {d["path"] for d in destinations} == {str(env.root / "out" / "tree")}
    assert (env.root / "out" / "tree" / "sub" / "b.txt").read_bytes() == b"bb"
    table = await env.run("ls", str(env.root / "tree"))
    assert table.code == 0
    assert "remote:box" in table.out and "site:localhost" in table.out


async def test_cp_twice_to_one_place_changes_nothing(env: Env) -> None:
    """The same cp twice on one location leaves the one link, and reports it both times."""
    env.file("src/a.txt", b"a")
    source, target = str(env.root / "src"), str(env.root / "run1")
    first = await env.run("cp", "--json", source, target)
    second = await env.run("cp", "--json", source, target)
    assert first.code == second.code == 0, (first, second)
    assert os.readlink(target) == source
    assert os.listdir(source) == ["a.txt"]
    reports = [run.json() for run in (first, second)]
    expected: dict[str, object] = {"location": "local:localhost", "path": target}
    expected |= {"type": "SYMBOLIC_LINK", "ok": True, "error": None}
    for report in reports:
        assert isinstance(report, dict)
        assert report["copies"][0]["destinations"] == [expected]


async def test_cp_into_itself_fails_and_touches_nothing(env: Env) -> None:
    """cp of a directory into itself fails in one line with exit 1; nothing is made."""
    env.file("src/a.txt", b"a")
    source = str(env.root / "src")
    for extra in ([], ["--writable"]):
        result = await env.run("cp", *extra, source, f"{source}/sub")
        one_line_error(result, 1)
        assert os.listdir(source) == ["a.txt"], extra


async def test_help_and_a_copy_print_nothing_on_stderr(env: Env) -> None:
    """With Python's default warning settings, --help and an SSH cp write nothing on stderr."""
    shown = await env.run("--help", warnings=None)
    assert shown.code == 0 and "Usage" in shown.out
    assert shown.err == ""
    source = env.file("src/blob.bin", os.urandom(3000))
    copied = await env.run("cp", source, f"remote:box:{env.root}/over-ssh.bin", warnings=None)
    assert copied.code == 0, copied
    assert (env.root / "over-ssh.bin").read_bytes() == Path(source).read_bytes()
    assert copied.err == ""


async def test_check_replicate_and_repair_over_ssh(env: Env) -> None:
    """check finds a deleted SSH replica (exit 1); replicate and check --repair restore it."""
    source = env.file("src/f.bin", b"x" * 5000)
    target = str(env.root / "remote" / "f.bin")
    assert (await env.run("cp", source, f"remote:{target}")).code == 0
    Path(target).unlink()
    report = await env.run("check", "--json", "remote", str(env.root / "remote"))
    assert report.code == 1, report
    document = report.json()
    assert isinstance(document, dict)
    assert document["missing"] == [target]
    replicated = await env.run("replicate", source, "remote:box", "--dst-path", target)
    assert replicated.code == 0, replicated
    assert Path(target).read_bytes() == b"x" * 5000
    clean = await env.run("check", "remote:box", str(env.root / "remote"))
    assert clean.code == 0, clean
    assert "missing: 0" in clean.out
    Path(target).unlink()
    repaired = await env.run("check", "remote:box", str(env.root / "remote"), "--repair", "--json")
    assert repaired.code == 0, repaired
    document = repaired.json()
    assert isinstance(document, dict)
    assert document["missing"] == document["repaired"] == [target]
    assert Path(target).read_bytes() == b"x" * 5000


async def test_replicate_onto_an_unrelated_directory_fails_and_keeps_it(env: Env) -> None:
    """replicate --dst-path onto a directory it does not own: exit 1, one line, tree intact."""
    source = env.file("src/f.bin", b"replicated")
    assert (await env.run("cp", source, f"site:{env.root}/seed.bin")).code == 0
    env.file("precious/a.txt", b"keep me")
    env.file("precious/sub/b.txt", b"keep me too")
    target = str(env.root / "precious")
    result = await env.run("replicate", source, "site", "remote:box", "--dst-path", target)
    one_line_error(result, 1)
    assert sorted(p.name for p in (env.root / "precious").iterdir()) == ["a.txt", "sub"]
    assert (env.root / "precious" / "a.txt").read_bytes() == b"keep me"
    assert (env.root / "precious" / "sub" / "b.txt").read_bytes() == b"keep me too"


async def test_check_dry_run_then_check_then_check_repair(env: Env) -> None:
    """--dry-run changes nothing; a plain check invalidates; a later --repair restores."""
    source = env.file("src/f.bin", b"y" * 4000)
    folder = str(env.root / "remote")
    target = f"{folder}/f.bin"
    assert (await env.run("cp", source, f"remote:{target}")).code == 0
    Path(target).unlink()
    before = env.dump()
    dry = await env.run("check", "--json", "--dry-run", "remote", folder)
    assert dry.code == 1, dry
    document = dry.json()
    assert isinstance(document, dict)
    assert (document["dry_run"], document["missing"]) == (True, [target])
    assert env.dump() == before
    assert (await env.run("check", "remote", folder)).code == 1
    checked = env.dump()
    assert checked != before
    would = await env.run("check", "--dry-run", "--repair", "remote:box", folder)
    assert would.code == 0, would
    assert "dry run" in would.out and "repaired: 1" in would.out
    assert env.dump() == checked
    assert not Path(target).exists()
    repaired = await env.run("check", "--json", "--repair", "remote:box", folder)
    assert repaired.code == 0, repaired
    document = repaired.json()
    assert isinstance(document, dict)
    assert (document["missing"], document["repaired"]) == ([], [target])
    assert Path(target).read_bytes() == b"y" * 4000


async def test_defaults_sites_in_cwd_and_catalog_in_xdg_data_home(env: Env) -> None:
    """Without options: ./streamdata.toml is the sites file and the catalog is in XDG_DATA_HOME."""
    (env.root / "work" / "streamdata.toml").write_text(env.sites.read_text())
    source = env.file("src/d.txt")
    result = await env.run("cp", source, f"remote:{env.root}/d2.txt", catalog=False, sites=False)
    assert result.code == 0, result
    assert (env.root / "d2.txt").read_bytes() == b"payload\n"
    assert (env.root / "home" / "data" / "streamdata" / "catalog.sqlite").is_file()


async def test_failures_needing_io_are_one_line_and_change_nothing(env: Env) -> None:
    """Missing source, unreachable host, unknown path: one line, exit 1, catalog unchanged."""
    source = env.file("src/ok.txt")
    assert (await env.run("cp", source, f"site:{env.root}/seed.txt")).code == 0
    before = env.dump()
    cases = {
        "missing file": ["cp", str(env.root / "src" / "missing.txt"), f"remote:{env.root}/x"],
        "unreachable host": ["cp", env.file("src/new.txt"), f"down:{env.root}/x"],
        "unknown path": ["ls", "/no/such/path"],
    }
    for case, args in cases.items():
        result = await env.run(*args)
        assert result.code == 1, (case, result)
        one_line_error(result, 1)
    assert env.dump() == before
    assert not (env.root / "x").exists()


async def test_demo_json_runs_to_completion(env: Env) -> None:
    """demo --json exits 0; its report shows the repaired replica available again."""
    result = await env.run("demo", "--json", "--files", "2", "--size", "1", sites=False)
    assert result.code == 0, result
    document = result.json()
    assert isinstance(document, dict)
    assert len(document["check"]["repaired"]) == 1
    assert len(document["after"]) == 6
    assert all(row["available"] and row["size"] == 1 << 20 for row in document["after"])


# -- in this process: usage and configuration errors, help ---------------------------------


@dataclass
class Local:
    """A private catalog and a sites file with a local site and an unreachable SSH host."""

    root: Path
    catalog: Path
    sites: Path

    def run(self, capsys: pytest.CaptureFixture[str], *args: str) -> Result:
        """Call ``main`` with this catalog and sites file; capture what it printed."""
        code = main(["--catalog", str(self.catalog), "--sites", str(self.sites), *args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def dump(self) -> str:
        """The catalog as SQL text."""
        return dump_catalog(self.catalog)


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Local:
    """A Local environment with HOME and the XDG directories inside ``tmp_path``."""
    for variable, relpath in (("HOME", ""), ("XDG_DATA_HOME", "data"), ("XDG_CONFIG_HOME", "cfg")):
        monkeypatch.setenv(variable, str(tmp_path / relpath))
    monkeypatch.chdir(tmp_path)
    sites = tmp_path / "sites.toml"
    sites.write_text(
        '[deployments.site]\ntype = "local"\n\n[deployments.down]\ntype = "ssh"\n'
        f'[[deployments.down.hosts]]\nhost = "127.0.0.1"\nport = {closed_port()}\n'
    )
    return Local(tmp_path, tmp_path / "catalog.sqlite", sites)


def test_help_everywhere(local: Local, capsys: pytest.CaptureFixture[str]) -> None:
    """--help works on the group and every subcommand and exits 0."""
    for command in ("", "sites", "cp", "ls", "check", "replicate", "demo"):
        result = local.run(capsys, *command.split(), "--help")
        assert result.code == 0, (command, result)
        assert f"Usage: streamdata {command}".strip() in result.out


def test_no_subcommand_prints_the_help(local: Local, capsys: pytest.CaptureFixture[str]) -> None:
    """`streamdata` alone prints the help on standard output and exits 2."""
    result = Result(main([]), *capsys.readouterr())
    assert result.code == 2
    assert "Commands:" in result.out and result.err == ""


def test_usage_errors_are_one_line_and_change_nothing(
    local: Local, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unknown locations, relative paths, bad options: exit 2, one line, catalog unchanged."""
    source = local.root / "ok.txt"
    source.write_text("ok")
    assert local.run(capsys, "cp", str(source), f"site:{local.root}/seed.txt").code == 0
    before = local.dump()
    cases = {
        "unknown deployment": ["cp", str(source), "nowhere:/tmp/x"],
        "unknown location": ["cp", str(source), "down:nobox:/tmp/x"],
        "relative path": ["cp", str(source), "site:localhost:relative/x"],
        "not an address": ["cp", str(source), "site"],
        "bad option": ["cp", "--frobnicate", str(source), "/tmp/x"],
        "one argument": ["cp", str(source)],
        "unknown check location": ["check", "down:nobox", "/tmp"],
        "unknown replicate location": ["replicate", str(source), "nowhere"],
        "negative max-missing": ["check", "site", "/tmp", "--max-missing", "-1"],
    }
    for case, args in cases.items():
        result = local.run(capsys, *args)
        assert result.code == 2, (case, result)
        one_line_error(result, 2)
    assert local.dump() == before
    assert "nowhere" in local.run(capsys, "cp", str(source), "nowhere:/x").err


def test_malformed_sites_file(local: Local, capsys: pytest.CaptureFixture[str]) -> None:
    """A sites file that is not TOML, or breaks the schema, is a one-line error (exit 2)."""
    source = local.root / "ok.txt"
    source.write_text("ok")
    assert local.run(capsys, "cp", str(source), f"site:{local.root}/seed.txt").code == 0
    before = local.dump()
    bad = {
        "[deployments.x\ntype = ": "not valid TOML",
        '[deployments.x]\ntype = "ftp"\n': "deployments.x.type",
        '[deployments.x]\ntype = "ssh"\n': "at least one [[hosts]]",
        '[deployments.x]\ntype = "ssh"\n[[deployments.x.hosts]]\nhots = "a"\n': "'hots'",
        '[deployments.x]\ntype = "ssh"\n[[deployments.x.hosts]]\nhost = "a"\nport = "22"\n': (
            "port must be of type int"
        ),
        '[deployments.x]\ntype = "ssh"\n[[deployments.x.hosts]]\nhost = "a"\n'
        'routes = { b = "ssh b" }\n': "routes.b must be a list of strings",
        '[deployments.x]\ntype = "ssh"\n[[deployments.x.hosts]]\nhost = "a"\n'
        'routes = { b = ["ssh", "b"] }\n': "route to 'b'",
    }
    for text, message in bad.items():
        local.sites.write_text(text)
        result = local.run(capsys, "ls", str(source))
        one_line_error(result, 2)
        assert message in result.err, result.err
    missing = local.run(capsys, "--sites", str(local.root / "nope.toml"), "sites")
    one_line_error(missing, 2)
    assert local.dump() == before


def test_max_missing_refuses_and_changes_nothing(
    local: Local, capsys: pytest.CaptureFixture[str]
) -> None:
    """check --max-missing 0 with a missing replica fails with one line, catalog unchanged."""
    source = local.root / "h.txt"
    source.write_text("h")
    target = local.root / "dst" / "h.txt"
    assert local.run(capsys, "cp", "--writable", str(source), f"site:{target}").code == 0
    target.unlink()
    before = local.dump()
    one_line_error(local.run(capsys, "check", "site", str(target.parent), "--max-missing", "0"), 1)
    assert local.dump() == before


def test_debug_shows_the_traceback(local: Local, capsys: pytest.CaptureFixture[str]) -> None:
    """--debug adds the traceback before the error line."""
    result = local.run(capsys, "--debug", "cp", str(local.root / "missing"), "/tmp/x")
    assert result.code == 1
    assert "Traceback" in result.err
    assert result.err.strip().splitlines()[-1].startswith("streamdata: error: ")


def test_sites_file_routes_reach_the_connector(tmp_path: Path) -> None:
    """A host's ``routes`` table becomes SSHHost.routes, so copies can go host to host."""
    sites = tmp_path / "sites.toml"
    sites.write_text(
        '[deployments.hpc]\ntype = "ssh"\n'
        '[[deployments.hpc.hosts]]\nhost = "127.0.0.1"\nname = "a"\n'
        'routes = { b = ["ssh", "-o", "BatchMode=yes", "b"] }\n'
        '[[deployments.hpc.hosts]]\nhost = "localhost"\nname = "b"\n'
    )
    deployment = load_sites(sites).deployments["hpc"]
    first = deployment.hosts[0]
    assert dict(first.routes) == {"b": ("ssh", "-o", "BatchMode=yes", "b")}
    connector = deployment.connector()
    assert connector.can_send(ExecutionLocation("a", "hpc"), ExecutionLocation("b", "hpc"))
    assert not connector.can_send(ExecutionLocation("b", "hpc"), ExecutionLocation("a", "hpc"))
