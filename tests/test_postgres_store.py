"""The PostgreSQL catalog store: its schema version, its errors, its change feed and claims."""

from __future__ import annotations

import asyncio
import re
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from streamdata import ConfigurationError, DataManager, DataType, ExecutionLocation
from streamdata._catalog import postgres_feed
from streamdata._catalog.postgres import PostgresStore
from streamdata._catalog.postgres_connect import display_url
from streamdata._catalog.postgres_schema import SCHEMA_VERSION
from streamdata._catalog.sync import REFRESH_SECONDS
from streamdata.testing._postgres import PostgresCluster, postgres_cluster

A = ExecutionLocation("a", "site-a")
B = ExecutionLocation("b", "site-b")


@pytest.fixture
def url(postgres: PostgresCluster) -> str:
    """A new, empty database of the session's cluster."""
    return postgres.create_database(f"store_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def store(url: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(url)
    yield opened
    opened.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_schema_is_created_and_versioned(store: PostgresStore, url: str) -> None:
    """Opening an empty database creates the schema and records its version."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT value FROM streamdata_meta WHERE key = 'schema_version'")
        assert row.fetchone() == (str(SCHEMA_VERSION),)


def test_a_newer_schema_is_a_clear_error_naming_the_database(url: str) -> None:
    """A schema written by a newer streamdata is a ConfigurationError naming the database."""
    PostgresStore(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE streamdata_meta SET value = %s WHERE key = 'schema_version'",
            (str(SCHEMA_VERSION + 1),),
        )
    with pytest.raises(ConfigurationError, match="newer") as raised:
        DataManager(catalog=url)
    assert url in str(raised.value)


def test_a_database_with_another_replicas_table_is_refused(url: str) -> None:
    """A database holding a replicas table of something else is not taken for a catalog."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE replicas (x int)")
    with pytest.raises(ConfigurationError, match="not a streamdata catalog"):
        PostgresStore(url)


@pytest.mark.timing  # a wall-clock bound of a few seconds
def test_an_unreachable_database_fails_fast_naming_it() -> None:
    """Nothing listening: a ConfigurationError naming the URL, without its password, no hang."""
    url = f"postgresql://user:secret@127.0.0.1:{_closed_port()}/db"
    start = time.monotonic()
    with pytest.raises(ConfigurationError) as raised:
        DataManager(catalog=url)
    assert time.monotonic() - start < 5
    assert "postgresql://user:***@127.0.0.1" in str(raised.value)
    assert "secret" not in str(raised.value)


def test_a_missing_database_is_a_clear_error(postgres: PostgresCluster) -> None:
    """A database that does not exist is a ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match="no_such_database"):
        PostgresStore(postgres.url("no_such_database"))


def test_a_late_commit_of_an_earlier_transaction_is_not_missed(url: str) -> None:
    """A change committed after a later one was read still reaches the other processes.

    Sequence numbers alone would miss it: it took the lower number.
    """
    reader, writer = PostgresStore(url), PostgresStore(url)
    try:
        reader.load()
        with psycopg.connect(url) as slow:
            slow.execute("SELECT set_config('streamdata.writer', 'slow', false)")
            slow.execute(
                "INSERT INTO replicas (deployment, name, local, path, relpath, data_type, "
                "implied, pending) VALUES ('site-a', 'a', false, '/slow', 'slow', 'primary', "
                "false, false)"
            )
            writer.put_replica(B, "/fast", "fast", DataType.PRIMARY, False, False)
            writer.commit()
            first = reader.changes()
            assert first is not None
            assert [row.path for row in first.rows] == ["/fast"]
            assert reader.changes() is None
            slow.commit()
        second = reader.changes()
        assert second is not None
        assert [row.path for row in second.rows] == ["/slow"]
    finally:
        reader.close()
        writer.close()


def test_a_reader_behind_the_pruned_changes_reads_everything(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changes pruned before a reader saw them: it reads every row again, missing nothing."""
    monkeypatch.setattr(postgres_feed, "KEEP_CHANGES", 2)
    reader, writer = PostgresStore(url), PostgresStore(url)
    try:
        reader.load()
        for index in range(6):
            writer.put_replica(A, f"/p{index}", f"p{index}", DataType.PRIMARY, False, False)
            writer.commit()
        with writer._write() as conn:
            postgres_feed.prune(conn)
        changes = reader.changes()
        assert changes is not None
        assert {row.path for row in changes.rows} == {f"/p{index}" for index in range(6)}
    finally:
        reader.close()
        writer.close()


def test_a_destination_is_claimed_by_one_live_store_at_a_time(url: str) -> None:
    """A claim holds against other live stores and is free again once its holder closes."""
    first, second = PostgresStore(url), PostgresStore(url)
    try:
        assert first.claim(B, "/dst")
        assert first.claim(B, "/dst")  # its own claim again
        assert not second.claim(B, "/dst")
        assert first.alive(second.token) and second.alive(first.token)
        token = first.token
        first.close()
        assert not second.alive(token)
        assert second.claim(B, "/dst")
        assert second.owner_of((B, "/dst")) == second.token
    finally:
        first.close()
        second.close()


async def test_an_open_manager_sees_another_managers_registration(url: str) -> None:
    """Two managers on one database: a registration and an invalidation reach the other."""
    async with DataManager(catalog=url) as reader, DataManager(catalog=url) as writer:
        await _seen_both_ways(reader, writer)


async def _seen_both_ways(reader: DataManager, writer: DataManager) -> None:
    writer.register_path(A, "/seen/file")
    assert await _within_a_second(lambda: bool(reader.get_data_locations("/seen/file")))
    writer.invalidate_location(A, "/seen/file")
    assert await _within_a_second(lambda: not reader.get_data_locations("/seen/file"))


async def _within_a_second(condition: Callable[[], bool]) -> bool:
    """True once ``condition`` holds, False if it still does not after one second."""
    for _ in range(50):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


def test_a_postgresql_url_without_the_driver_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without psycopg installed, a PostgreSQL URL says which extra to install."""
    monkeypatch.setitem(sys.modules, "streamdata._catalog.postgres", None)
    with pytest.raises(ConfigurationError, match=r"streamdata\[postgresql\]"):
        DataManager(catalog="postgresql://user@127.0.0.1:1/db")


def test_another_programs_advisory_lock_does_not_keep_a_dead_owner_alive(url: str) -> None:
    """Owner liveness reads only streamdata's own advisory locks, not others' on that number."""
    first, second = PostgresStore(url), PostgresStore(url)
    token = first.token
    try:
        with psycopg.connect(url, autocommit=True) as other:
            row = other.execute("SELECT key FROM owners WHERE token = %s", (token,)).fetchone()
            assert row is not None
            first.close()  # as if killed: its row is back, its lock gone
            other.execute(
                "INSERT INTO owners (token, key) OVERRIDING SYSTEM VALUE VALUES (%s, %s)",
                (token, *row),
            )
            # the closed connection's backend may hold its lock a moment longer
            deadline = time.monotonic() + 5.0
            while second.alive(token) and time.monotonic() < deadline:
                time.sleep(0.01)
            other.execute("SELECT pg_advisory_lock(%s)", row)  # another program, same number
            assert not second.alive(token)
    finally:
        first.close()
        second.close()


async def test_a_server_restart_is_a_clear_error_then_the_manager_reconnects() -> None:
    """After a restart the call that meets the broken connection fails, naming the database;
    the next one connects again, and every change whose call returned is there."""
    with postgres_cluster() as cluster:
        async with DataManager(catalog=cluster.url()) as manager:
            manager.register_path(A, "/before/restart")
            cluster.restart()
            with pytest.raises(ConfigurationError, match=re.escape(cluster.url())):
                manager.register_path(A, "/during/restart")
            manager.register_path(A, "/after/restart")
        async with DataManager(catalog=cluster.url()) as reopened:
            for path in ("/before/restart", "/after/restart"):
                assert [r.path for r in reopened.get_data_locations(path)] == [path]


def test_an_unknown_user_is_a_clear_error(postgres: PostgresCluster) -> None:
    """Credentials the server refuses (here an unknown role) are a ConfigurationError."""
    url = f"postgresql://no_such_role@127.0.0.1:{postgres.port}/{postgres.database}"
    with pytest.raises(ConfigurationError, match="no_such_role"):
        DataManager(catalog=url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        (
            "postgresql://u@h/db?password=secret&sslmode=off",
            "postgresql://u@h/db?password=***&sslmode=off",
        ),
        ("postgresql://h/db?sslmode=off&password=x", "postgresql://h/db?sslmode=off&password=***"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    """Errors name the database by a URL whose password, wherever it is, reads ***."""
    assert display_url(url) == shown


#: Version 1's change feed: a row-level trigger per table (what a version 1 catalog holds).
_ROW_TRIGGERS_V1 = {
    "replicas": "(NEW.id, NULL, false)",
    "relations": "(NEW.a, NULL, false), (NEW.b, NULL, false)",
    "links": "(NEW.link, NULL, false)",
    "entries": "(NEW.id, NULL, false)",
}


def _as_version_1(url: str) -> None:
    """Turn a catalog back into version 1's: row-level triggers, version 1 recorded."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for name, table in conn.execute(
            "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal"
        ).fetchall():
            conn.execute(f"DROP TRIGGER {name} ON {table}")
            conn.execute(f"DROP FUNCTION {name}()")
        for table, values in _ROW_TRIGGERS_V1.items():
            conn.execute(
                f"CREATE FUNCTION streamdata_{table}_changed() RETURNS trigger LANGUAGE plpgsql "
                f"AS $$ BEGIN INSERT INTO changes (replica, writer, dropped) VALUES {values}; "
                "RETURN NULL; END $$"
            )
            conn.execute(
                f"CREATE TRIGGER {table}_changed AFTER INSERT OR UPDATE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION streamdata_{table}_changed()"
            )
        conn.execute("UPDATE streamdata_meta SET value = '1' WHERE key = 'schema_version'")


def test_a_version_1_catalog_is_upgraded_keeping_its_rows(url: str) -> None:
    """A version 1 catalog gets statement-level feed triggers; its rows stay, the feed works."""
    first = DataManager(catalog=url)
    first.register_path(A, "/kept/file")
    asyncio.run(first.close())
    _as_version_1(url)
    reader, writer = DataManager(catalog=url), DataManager(catalog=url)
    try:
        assert [r.path for r in reader.get_data_locations("/kept/file")] == ["/kept/file"]
        with psycopg.connect(url) as conn:
            kinds = conn.execute(
                "SELECT tgtype & 1 FROM pg_trigger WHERE NOT tgisinternal"  # 1: FOR EACH ROW
            ).fetchall()
        assert kinds and set(kinds) == {(0,)}
        writer.register_path(B, "/new/file")
        time.sleep(REFRESH_SECONDS + 0.05)  # the next query looks at the feed
        assert [r.path for r in reader.get_data_locations("/new/file")] == ["/new/file"]
    finally:
        asyncio.run(reader.close())
        asyncio.run(writer.close())


def test_a_look_for_changes_does_not_write_a_batch_early(store: PostgresStore, url: str) -> None:
    """While nobody else changed anything, looking leaves this process's batch queued."""
    store.load()
    store.begin_batch()
    store.put_replica(A, "/queued", "queued", DataType.PRIMARY, False, False)
    assert store.changes() is None
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM replicas").fetchone() == (0,)
    store.end_batch()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM replicas").fetchone() == (1,)


def test_a_batch_changing_one_row_twice_keeps_the_last(store: PostgresStore, url: str) -> None:
    """Rows queued twice for one key in a batch: the last one is stored, once."""
    key = (A, "/twice")
    store.begin_batch()
    for data_type, pending in ((DataType.PRIMARY, True), (DataType.SYMBOLIC_LINK, False)):
        store.put_replica(A, "/twice", "twice", data_type, False, pending)
    store.put_replica(B, "/target", "target", DataType.PRIMARY, False, False)
    for size in (1, 2):
        store.record_entry(key, ("file", size, 1.5), None)
        store.add_relation(key, (B, "/target"))
        store.set_link_target(key, (B, "/target"))
        store.set_anchor(key, (B, "/target"), ("file", size, 2))
    store.end_batch()
    other = PostgresStore(url)
    snapshot = other.load()
    other.close()
    rows = [row for batch in snapshot.replicas for row in batch]
    assert [(row[2], snapshot.data_types[row[4]]) for row in rows if row[2] == "/twice"] == [
        ("/twice", DataType.SYMBOLIC_LINK)
    ]
    assert [entry[1] for entry in snapshot.entries] == [("file", 2, 1.5)]
    assert len(snapshot.relations) == len(snapshot.links) == 1
    assert [anchor[2] for anchor in snapshot.anchors] == [("file", 2, 2.0)]
    assert snapshot.pending == []


def test_a_batch_of_many_rows_of_each_kind_is_stored_row_for_row(
    store: PostgresStore, url: str
) -> None:
    """Many rows of every kind in one batch (empty columns included) all reach the database."""
    keys = [(A, f"/many/{index}") for index in range(5)]
    targets = [(B, f"/many/{index}") for index in range(5)]
    store.begin_batch()
    for (location, path), (linking, _) in zip(keys, targets, strict=True):
        store.put_replica(location, path, path[1:], DataType.PRIMARY, False, False)
        store.put_replica(linking, path, path[1:], DataType.SYMBOLIC_LINK, False, False)
    for key, target in zip(keys, targets, strict=True):
        store.add_relation(key, target)
        store.set_link_target(target, key)
        store.record_entry(key, ("file", 7, 3), None)
        store.set_anchor(target, key, None)
    store.end_batch()
    other = PostgresStore(url)
    snapshot = other.load()
    other.close()
    assert sum(len(batch) for batch in snapshot.replicas) == 10
    assert len(snapshot.relations) == len(snapshot.links) == len(snapshot.entries) == 5
    assert {entry[1] for entry in snapshot.entries} == {("file", 7, 3.0)}
    assert [anchor[2] for anchor in snapshot.anchors] == [None] * 5


@pytest.mark.parametrize("chunked", [True, False])
def test_a_catalog_reopens_whole_with_or_without_chunked_streaming(
    url: str, monkeypatch: pytest.MonkeyPatch, chunked: bool
) -> None:
    """Reopening reads every replica, streamed in chunks or (libpq < 17) by a cursor."""
    monkeypatch.setattr(postgres_feed, "LOAD_ROWS", 3)
    monkeypatch.setattr(postgres_feed, "STREAM_ROWS", 2)
    monkeypatch.setattr(psycopg.capabilities, "has_stream_chunked", lambda check=False: chunked)
    writer = DataManager(catalog=url)
    for index in range(5):
        writer.register_path(A, f"/reopened/{index}")
    asyncio.run(writer.close())
    reader = DataManager(catalog=url)
    try:
        paths = {
            r.path for index in range(5) for r in reader.get_data_locations(f"/reopened/{index}")
        }
        assert paths == {f"/reopened/{index}" for index in range(5)}
        assert [r.path for r in reader.get_data_locations("/reopened")] == ["/reopened"]
    finally:
        asyncio.run(reader.close())
