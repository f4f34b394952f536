"""The catalog owns its state: one claim call, a store that knows rows only, public pickles."""

from __future__ import annotations

import ast
import asyncio
import pickle
import pickletools
from pathlib import Path

import pytest

from streamdata import DataType, ExecutionLocation, TransferError
from streamdata._catalog.batch import CatalogBatch
from streamdata._catalog.mapper import RemotePathMapper
from streamdata._catalog.sqlite import SQLiteStore
from streamdata._catalog.store import ReplicaRow

A = ExecutionLocation("a", "site-a")
B = ExecutionLocation("b", "site-b")
CATALOG = Path(__file__).resolve().parent.parent / "streamdata" / "_catalog"


def test_claim_registers_a_pending_copy_related_to_its_source() -> None:
    """claim() registers the destination pending, related to the source, in one call."""
    catalog = RemotePathMapper()
    source = catalog.register(A, "/data/f")
    replica, elsewhere = catalog.claim(B, "/copy/f", tmp_path="/copy/.tmp", source=source)
    assert not elsewhere
    assert (replica.location, replica.path, replica.data_type) == (B, "/copy/f", DataType.PRIMARY)
    assert not replica.is_available
    assert catalog.same_data(source, replica)
    assert catalog.lookup(B, "/copy").implied  # type: ignore[union-attr]


def test_claim_of_a_link_points_it_at_its_target() -> None:
    """claim(link_to=...) registers a SYMBOLIC_LINK related to and pointing at the target."""
    catalog = RemotePathMapper()
    source = catalog.register(A, "/data/f")
    link, _ = catalog.claim(A, "/l", tmp_path="/.tmp", source=source, link_to=source)
    assert link.data_type is DataType.SYMBOLIC_LINK
    assert catalog.link_target(link) is source
    assert catalog.same_data(link, source)


def test_claim_without_a_source_is_an_unrelated_copy_replacing_the_old_one() -> None:
    """A writable claim relates nothing, and invalidates the replica it replaces."""
    catalog = RemotePathMapper()
    source = catalog.register(A, "/data/f")
    old = catalog.register(B, "/copy/f")
    catalog.relate(source, old)
    replica, _ = catalog.claim(B, "/copy/f", tmp_path="/copy/.tmp", source=None)
    assert replica is old  # the same replica, pending again and out of the old set
    assert catalog.replica_set(source) == [source]
    assert catalog.replica_set(replica) == [replica]


def test_claim_is_on_disk_with_its_relation_and_temporary(tmp_path: Path) -> None:
    """After claim() returns, the file holds the pending row, its relation and its temporary."""
    db = str(tmp_path / "catalog.sqlite")
    store = SQLiteStore(db)
    catalog = RemotePathMapper(store)
    other = SQLiteStore(db)  # another process's view of the file
    with CatalogBatch(store):  # (a batch defers commits: a claim must not wait for it)
        source = catalog.register(A, "/data/f")
        catalog.claim(B, "/copy/f", tmp_path="/copy/.tmp", source=source)
        snapshot = other.load()
    paths = {row[2]: row[0] for rows in snapshot.replicas for row in rows}
    assert [rid for rid, _ in snapshot.pending] == [paths["/copy/f"]]
    assert (paths["/data/f"], paths["/copy/f"]) in snapshot.relations
    store.close()
    assert other.stale_temporaries() == [(B, "/copy/.tmp", "/copy/f")]
    other.close()


def test_a_claim_held_by_another_live_process_returns_its_replica(tmp_path: Path) -> None:
    """Two catalogs on one file: the second claim returns the first's pending replica."""
    db = str(tmp_path / "catalog.sqlite")
    first = RemotePathMapper(SQLiteStore(db))
    second = RemotePathMapper(SQLiteStore(db))
    source = first.register(A, "/data/f")
    first.claim(B, "/copy/f", tmp_path="/copy/.tmp", source=source)
    held, elsewhere = second.claim(B, "/copy/f", tmp_path="/copy/.tmp2", source=None)
    assert elsewhere
    assert (held.location, held.path, held.is_available) == (B, "/copy/f", False)
    for catalog in (first, second):
        assert catalog._store is not None
        catalog._store.close()


def test_the_store_modules_import_nothing_of_the_catalog() -> None:
    """The store interface and the SQLite store never import the catalog's modules."""
    catalog_modules = {"mapper", "core", "restore", "sets", "lineage", "writers", "sync"}
    for name in ("store", "sqlite", "sqlite_feed", "sqlite_load", "sqlite_schema", "owners"):
        tree = ast.parse((CATALOG / f"{name}.py").read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                imported.add(node.module or "")
                imported.update(alias.name for alias in node.names if not node.module)
        assert not imported & catalog_modules, (name, imported & catalog_modules)


def test_a_store_alone_takes_and_returns_rows(tmp_path: Path) -> None:
    """SQLiteStore used without a catalog: values in, a snapshot and changes of rows out."""
    db = str(tmp_path / "catalog.sqlite")
    writer, reader = SQLiteStore(db), SQLiteStore(db)
    writer.put_replica(A, "/f", "f", DataType.PRIMARY, False, False)
    writer.put_replica(B, "/f", "f", DataType.PRIMARY, False, True)
    writer.add_relation((A, "/f"), (B, "/f"))
    writer.commit()
    changes = reader.changes()
    assert changes is not None
    assert sorted(changes.rows, key=lambda row: row.location.name) == [
        ReplicaRow(A, "/f", "f", DataType.PRIMARY, False, False, writer.token),
        ReplicaRow(B, "/f", "f", DataType.PRIMARY, False, True, writer.token),
    ]
    assert {frozenset(edge) for edge in changes.edges} == {frozenset({(A, "/f"), (B, "/f")})}
    snapshot = reader.load()
    rows = [row for batch in snapshot.replicas for row in batch]
    named = {(snapshot.locations[row[1]], row[2]): row[0] for row in rows}
    assert snapshot.relations == [(named[(A, "/f")], named[(B, "/f")])]
    assert snapshot.pending == [(named[(B, "/f")], writer.token)]
    writer.close()
    reader.close()


@pytest.mark.parametrize("state", ["available", "pending", "failed", "implied"])
def test_a_replica_pickles_to_its_public_constructor(state: str) -> None:
    """A pickled DataLocation names no private field and comes back in the same state."""
    catalog = RemotePathMapper()
    catalog.register(A, "/d/f", available=state not in ("pending", "failed"))
    replica = catalog.lookup(A, "/d" if state == "implied" else "/d/f")
    assert replica is not None
    if state == "failed":
        catalog.complete(replica, TransferError("it broke"))
    data = pickle.dumps(replica)
    strings = [arg for op, arg, _ in pickletools.genops(data) if isinstance(arg, str)]
    assert not [s for s in strings if s.startswith("_")], strings
    copy = pickle.loads(data)
    assert (copy, copy.data_type, copy.relpath) == (replica, replica.data_type, replica.relpath)
    assert (copy.is_available, copy.implied) == (replica.is_available, replica.implied)
    if state == "failed":
        with pytest.raises(TransferError, match="it broke"):
            asyncio.run(copy.wait_available())


def test_implied_is_a_read_only_attribute() -> None:
    """Readers learn whether a replica is an implied ancestor without touching its fields."""
    replica = RemotePathMapper().register(A, "/d/f")
    with pytest.raises(AttributeError):
        replica.implied = True  # type: ignore[misc]
    assert not replica.implied
