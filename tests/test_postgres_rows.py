"""The PostgreSQL store's one-row writes: a plain insert for a new replica, its fallbacks."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from streamdata import DataManager, DataType, ExecutionLocation
from streamdata._catalog.postgres import PostgresStore
from streamdata._catalog.sync import REFRESH_SECONDS
from streamdata.testing._postgres import PostgresCluster

A = ExecutionLocation("a", "site-a")


@pytest.fixture
def url(postgres: PostgresCluster) -> str:
    """A new, empty database of the session's cluster."""
    return postgres.create_database(f"rows_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def stores(url: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    first, second = PostgresStore(url), PostgresStore(url)
    yield first, second
    first.close()
    second.close()


def _rows(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        query = "SELECT path, data_type, pending, owner FROM replicas ORDER BY id"
        return conn.execute(query).fetchall()


def test_a_new_replica_another_process_inserted_meanwhile_is_updated(
    stores: tuple[PostgresStore, PostgresStore], url: str
) -> None:
    """A row new to this process but inserted by another one is written as the upsert."""
    first, second = stores
    first.put_replica(A, "/x", "x", DataType.PRIMARY, False, True, new=True)
    first.commit()
    second.put_replica(A, "/x", "x", DataType.SYMBOLIC_LINK, False, False, new=True)
    second.commit()
    assert _rows(url) == [(b"/x", "symbolic_link", False, second.token)]


def test_a_write_after_the_session_lost_its_statements_succeeds(
    stores: tuple[PostgresStore, PostgresStore], url: str
) -> None:
    """Prepared statements deallocated (psycopg does so after a ROLLBACK): prepared again."""
    store = stores[0]
    store.put_replica(A, "/one", "one", DataType.PRIMARY, False, False, new=True)
    store.commit()
    store._db.connection().execute("DEALLOCATE ALL")
    store.put_replica(A, "/two", "two", DataType.PRIMARY, False, False, new=True)
    store.commit()
    store.put_replica(A, "/two", "two", DataType.PRIMARY, False, True)
    store.commit()
    assert [row[:3] for row in _rows(url)] == [
        (b"/one", "primary", False),
        (b"/two", "primary", True),
    ]


def test_a_registration_one_at_a_time_is_seen_by_another_manager(url: str) -> None:
    """register_path alone (the one-row write) is stored and seen by another process."""
    writer, reader = DataManager(catalog=url), DataManager(catalog=url)
    try:
        for index in range(3):
            writer.register_path(A, f"/d/f{index}")
        writer.register_path(A, "/d/f1", data_type=DataType.SYMBOLIC_LINK)
        time.sleep(REFRESH_SECONDS * 1.5)  # the reader looks at the store again
        found = reader.get_data_locations("/d/f1")
        assert [(r.path, r.data_type) for r in found] == [("/d/f1", DataType.SYMBOLIC_LINK)]
        assert len(reader.get_data_locations("/d", deployment="site-a")) == 1
    finally:
        asyncio.run(writer.close())
        asyncio.run(reader.close())
