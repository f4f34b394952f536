"""The command on each kind of durable catalog: a SQLite file and a PostgreSQL database.

Every subcommand takes ``--catalog FILE|URL`` or ``STREAMDATA_CATALOG``; ``sites`` and
``ls`` say which catalog is in use; a database that cannot be used is one error line
naming it, never its password. The commands run for real, as subprocesses (``env``),
or in this process through ``main`` where only the error line matters.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from catalog_kinds import DURABLE, Catalogs
from cli_env import Env, Result, closed_port, one_line_error
from pg_cluster import PostgresCluster

from streamdata import DataManager, DataType
from streamdata.cli import main

ROLE, SECRET = "cli_password_user", "s3cret-Pa55"


async def _run(env: Env, catalog: str, *args: str) -> Result:
    """Run the command with ``--catalog catalog`` (given after the subcommand)."""
    return await env.run(*args, "--catalog", catalog, catalog=False)


def _document(result: Result) -> dict[str, object]:
    assert result.code == 0, result
    document = result.json()
    assert isinstance(document, dict)
    return document


def _kind(catalog: str) -> str:
    return "postgresql" if catalog.startswith("postgresql://") else "sqlite"


@DURABLE
async def test_every_command_works_on_the_catalog_given(env: Env, catalogs: Catalogs) -> None:
    """cp, ls, check, replicate and check --repair share one catalog, file or database."""
    catalog = catalogs.durable()
    source = env.file("src/f.bin", b"z" * 3000)
    folder = str(env.root / "remote")
    target = f"{folder}/f.bin"
    assert (await _run(env, catalog, "cp", source, f"remote:{target}")).code == 0
    listing = _document(await _run(env, catalog, "ls", "--json", source))
    assert listing["catalog"] == {
        "kind": _kind(catalog),
        "location": catalog,
        "source": "--catalog",
    }
    replicas = listing["replicas"]
    assert isinstance(replicas, list)
    assert {(r["location"], r["path"]) for r in replicas} == {
        ("local:localhost", source),
        ("remote:box", target),
    }
    Path(target).unlink()
    assert (await _run(env, catalog, "check", "--dry-run", "remote", folder)).code == 1
    assert (await _run(env, catalog, "check", "remote", folder)).code == 1
    replicated = await _run(env, catalog, "replicate", source, "remote:box", "--dst-path", target)
    assert replicated.code == 0, replicated
    Path(target).unlink()
    repaired = _document(await _run(env, catalog, "check", "--json", "--repair", "remote", folder))
    assert repaired["repaired"] == [target]
    assert Path(target).read_bytes() == b"z" * 3000
    assert not (env.root / "home" / "data" / "streamdata").exists()  # not the default file
    async with DataManager(catalog=catalog) as manager:  # and the library sees it all
        seen = manager.get_data_locations(source, location_type=DataType.PRIMARY)
    assert {(r.deployment, r.path) for r in seen} == {("local", source), ("remote", target)}


@DURABLE
async def test_sites_and_ls_name_the_catalog_in_use(env: Env, catalogs: Catalogs) -> None:
    """sites and ls print the catalog's kind and location after their table, and in --json."""
    catalog = catalogs.durable()
    shown = "PostgreSQL database" if _kind(catalog) == "postgresql" else "SQLite file"
    sites = await _run(env, catalog, "sites")
    assert sites.code == 0, sites
    assert sites.out.splitlines()[-1] == f"catalog: {shown} {catalog} (from --catalog)"
    document = _document(await _run(env, catalog, "sites", "--json"))
    assert document["catalog"] == {
        "kind": _kind(catalog),
        "location": catalog,
        "source": "--catalog",
    }
    source = env.file("src/a.txt")
    assert (await _run(env, catalog, "cp", source, f"site:{env.root}/b.txt")).code == 0
    listing = await _run(env, catalog, "ls", source)
    assert listing.code == 0, listing
    assert listing.out.splitlines()[-1] == f"catalog: {shown} {catalog} (from --catalog)"


@DURABLE
async def test_streamdata_catalog_names_the_catalog(
    env: Env, catalogs: Catalogs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STREAMDATA_CATALOG is used by every command; --catalog, before or after, wins over it."""
    catalog = catalogs.durable()
    monkeypatch.setenv("STREAMDATA_CATALOG", catalog)
    source = env.file("src/e.txt")
    copied = await env.run("cp", source, f"site:{env.root}/e2.txt", catalog=False)
    assert copied.code == 0, copied
    listing = _document(await env.run("ls", "--json", source, catalog=False))
    assert listing["catalog"] == {
        "kind": _kind(catalog),
        "location": catalog,
        "source": "STREAMDATA_CATALOG",
    }
    assert isinstance(listing["replicas"], list) and len(listing["replicas"]) == 2
    assert not (env.root / "home" / "data" / "streamdata").exists()
    other = str(env.root / "other.sqlite")
    for args in (["--catalog", other, "sites", "--json"], ["sites", "--json", "--catalog", other]):
        document = _document(await env.run(*args, catalog=False))
        assert document["catalog"] == {"kind": "sqlite", "location": other, "source": "--catalog"}


# -- a database that cannot be used, a password never shown ---------------------------------


def _reject_wrong_passwords(url: str) -> None:
    """Wait until the server asks ROLE for its password (a reload takes effect soon after)."""
    wrong = url.replace(SECRET, "not-the-password")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            psycopg.connect(wrong, connect_timeout=5).close()
        except psycopg.OperationalError:
            return
        time.sleep(0.05)
    raise AssertionError("the server still lets ROLE in without its password")


@pytest.fixture(scope="module")
def password_url(postgres: PostgresCluster) -> Iterator[str]:
    """A database owned by ROLE, who logs in with SECRET (the cluster trusts everyone else).

    The rule asking ROLE for its password goes first in ``pg_hba.conf`` (the first line
    that matches decides), and is taken out again afterwards.
    """
    hba = postgres.data / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text(f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n{original}")
    try:
        postgres.psql(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN "
            f"CREATE ROLE {ROLE} LOGIN PASSWORD '{SECRET}'; END IF; END $$"
        )
        postgres.psql("SELECT pg_reload_conf()")
        database = f"cli_{uuid.uuid4().hex[:12]}"
        postgres.create_database(database)
        postgres.psql(f"ALTER DATABASE {database} OWNER TO {ROLE}")
        url = f"postgresql://{ROLE}:{SECRET}@127.0.0.1:{postgres.port}/{database}"
        _reject_wrong_passwords(url)
        yield url
    finally:
        hba.write_text(original)
        postgres.psql("SELECT pg_reload_conf()")


def _hidden(url: str) -> str:
    """``url`` as it must be shown: the password between ``user:`` and ``@`` as ``***``."""
    return re.sub(r"(://[^:@/]*:)[^@]*@", r"\1***@", url)


def _commands(root: Path) -> dict[str, list[str]]:
    """Every subcommand that opens the catalog, with arguments that would otherwise work."""
    source = root / "in.txt"
    source.write_text("in")
    return {
        "ls": ["ls", str(source)],
        "cp": ["cp", str(source), f"{root}/out.txt"],
        "check": ["check", "local", str(root)],
        "check --dry-run": ["check", "--dry-run", "local", str(root)],
        "replicate": ["replicate", str(source), "local"],
    }


def test_an_unusable_database_is_one_line_naming_it_without_the_password(
    password_url: str,
    postgres: PostgresCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Wrong password, nothing listening, no such database: exit 2, one line naming it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    wrong = password_url.replace(SECRET, "wrong-" + SECRET)
    unusable = {
        wrong: "password authentication failed",
        f"postgresql://{ROLE}:{SECRET}@127.0.0.1:{closed_port()}/streamdata": "refused",
        f"postgres://{ROLE}:{SECRET}@127.0.0.1:{postgres.port}/no_such_db": "no_such_db",
    }
    for url, reason in unusable.items():
        for name, args in _commands(tmp_path).items():
            start = time.monotonic()
            code = main(["--catalog", url, *args])
            result = Result(code, *capsys.readouterr())
            one_line_error(result, 2)
            assert time.monotonic() - start < 10, (name, url)
            assert _hidden(url) in result.err and reason in result.err, (name, result.err)
            assert "\\n" not in result.err, result.err  # libpq's hint line, joined
            assert SECRET not in result.err + result.out, (name, result.err)
    assert not (tmp_path / "data").exists()


def test_debug_output_never_shows_the_password(
    password_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--debug shows the traceback and the library's log lines, still without the password."""
    wrong = password_url.replace(SECRET, "wrong-" + SECRET)
    code = main(["--debug", "--catalog", wrong, "ls", str(tmp_path)])
    result = Result(code, *capsys.readouterr())
    assert result.code == 2 and "Traceback" in result.err
    assert SECRET not in result.err + result.out


async def test_the_password_is_hidden_in_sites_and_ls(env: Env, password_url: str) -> None:
    """With the right password the commands work; sites and ls show it as ***."""
    source = env.file("src/p.txt")
    copied = await _run(env, password_url, "cp", source, f"site:{env.root}/p2.txt")
    assert copied.code == 0, copied
    runs = [
        await _run(env, password_url, "sites"),
        await _run(env, password_url, "sites", "--json"),
        await _run(env, password_url, "ls", source),
        await _run(env, password_url, "ls", "--json", source),
    ]
    for result in runs:
        assert result.code == 0, result
        assert SECRET not in result.out + result.err
        assert _hidden(password_url) in result.out
    assert "site:localhost" in runs[2].out


def test_a_url_that_names_no_catalog_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another kind of URL (mysql://) or a directory is refused in one line, password hidden."""
    monkeypatch.setenv("STREAMDATA_CATALOG", "mysql://me:hunter2@127.0.0.1/db")
    result = Result(main(["sites"]), *capsys.readouterr())
    one_line_error(result, 2)
    assert "mysql://me:***@127.0.0.1/db" in result.err and "hunter2" not in result.err
    assert "STREAMDATA_CATALOG" in result.err
    replaced = main(["sites", "--catalog", str(tmp_path / "c.sqlite")])
    assert (replaced, capsys.readouterr().err) == (0, "")  # the variable does not matter then
    directory = Result(main(["--catalog", str(tmp_path), "sites"]), *capsys.readouterr())
    one_line_error(directory, 2)
    assert "is a directory" in directory.err


def test_an_option_before_the_subcommand_beats_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """STREAMDATA_SITES, read again by the subcommand, does not replace --sites given before it."""
    given, ignored = tmp_path / "given.toml", tmp_path / "ignored.toml"
    given.write_text('[deployments.given]\ntype = "local"\n')
    ignored.write_text('[deployments.ignored]\ntype = "local"\n')
    monkeypatch.setenv("STREAMDATA_SITES", str(ignored))
    assert main(["--sites", str(given), "sites", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["sites_file"] == str(given)
