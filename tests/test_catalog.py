"""RemotePathMapper internals: graph holds only related replicas, sets survive invalidation."""

from __future__ import annotations

import networkx as nx
import pytest

from streamdata import DataNotFoundError, DataType, ExecutionLocation
from streamdata._catalog.mapper import RemotePathMapper

L1, L2, L3 = (ExecutionLocation(f"n{i}", f"d{i}") for i in range(3))


def test_unrelated_replicas_cost_no_set() -> None:
    """Only related replicas carry a replica set; related ones share a single one."""
    catalog = RemotePathMapper()
    lonely = [catalog.register(L1, f"/data/f{index}") for index in range(100)]
    assert all(replica._set is None for replica in lonely)
    a, b = catalog.register(L1, "/x"), catalog.register(L2, "/x")
    catalog.relate(a, b)
    assert a._set is b._set
    assert set(a._set or ()) == {a, b}


def test_removing_the_middle_of_a_chain_keeps_the_ends_related() -> None:
    """A-B, B-C, invalidate B: A and C still form one set, re-linked with one edge."""
    catalog = RemotePathMapper()
    a, b, c = (catalog.register(loc, "/p") for loc in (L1, L2, L3))
    catalog.relate(a, b)
    catalog.relate(b, c)
    catalog.invalidate(L2, "/p")
    assert set(catalog.replica_set(a)) == {a, c}
    graph = catalog.graph()
    assert nx.node_connected_component(graph, a) == {a, c}
    assert b not in graph


def test_relating_an_invalid_replica_is_refused() -> None:
    """register_relation with an INVALID replica raises DataNotFoundError."""
    catalog = RemotePathMapper()
    a, b = catalog.register(L1, "/p"), catalog.register(L2, "/p")
    catalog.invalidate(L1, "/p")
    with pytest.raises(DataNotFoundError):
        catalog.relate(a, b)


def test_subtree_walk_stays_on_its_location() -> None:
    """replicas_of lists one location's subtree, parents first, and nothing of the others."""
    catalog = RemotePathMapper()
    catalog.register(L1, "/a/b/c")
    catalog.register(L2, "/a/b/d")
    paths = [r.path for r in catalog.replicas_of(L1, "/a")]
    assert paths == ["/a", "/a/b", "/a/b/c"]


def test_invalidating_data_invalidates_links_to_it_transitively() -> None:
    """A link to a link to invalidated data is invalidated too."""
    catalog = RemotePathMapper()
    data = catalog.register(L1, "/data")
    link1 = catalog.register(L2, "/l1", data_type=DataType.SYMBOLIC_LINK)
    link2 = catalog.register(L3, "/l2", data_type=DataType.SYMBOLIC_LINK)
    catalog.set_link_target(link1, data)
    catalog.set_link_target(link2, link1)
    catalog.invalidate(L1, "/data")
    assert link1.data_type is DataType.INVALID
    assert link2.data_type is DataType.INVALID


def test_explicit_registration_of_an_implied_ancestor_makes_it_explicit() -> None:
    """An implied directory registered explicitly becomes a source; never the reverse."""
    catalog = RemotePathMapper()
    catalog.register(L1, "/a/b/c")
    assert catalog.covering(L1, "/a/b") is None
    catalog.register(L1, "/a/b")
    assert catalog.covering(L1, "/a/b/other") is not None
    catalog.register(L1, "/a/b/c/d")
    assert catalog.covering(L1, "/a/b") is not None


def test_merging_sets_moves_the_smaller_one() -> None:
    """Relating a replica to a big set moves only the small side's members."""
    catalog = RemotePathMapper()
    locations = [ExecutionLocation(f"n{i}", "d") for i in range(50)]
    big = [catalog.register(loc, "/big") for loc in locations]
    for replica in big[1:]:
        catalog.relate(big[0], replica)
    shared = big[0]._set
    newcomer = catalog.register(L1, "/other")
    catalog.relate(newcomer, big[10])
    assert newcomer._set is shared
    assert len(catalog.locations("/other")) == 51


def test_set_survives_reopening_after_a_middle_replica_is_invalidated(tmp_path: object) -> None:
    """On disk too, dropping the middle of A-B-C keeps A and C related."""
    from pathlib import Path

    from streamdata._catalog.sqlite import SQLiteStore

    path = str(Path(str(tmp_path)) / "c.sqlite")
    store = SQLiteStore(path)
    catalog = RemotePathMapper(store)
    a, b, c = (catalog.register(loc, "/p") for loc in (L1, L2, L3))
    catalog.relate(a, b)
    catalog.relate(b, c)
    catalog.invalidate(L2, "/p")
    store.close()
    reopened_store = SQLiteStore(path)
    reopened = RemotePathMapper(reopened_store)
    reopened.load()
    assert {(r.deployment, r.path) for r in reopened.locations("/p")} == {
        ("d0", "/p"),
        ("d2", "/p"),
    }
    reopened_store.close()


def test_split_off_takes_the_data_and_its_links_out_of_the_set() -> None:
    """Changed data leaves its set with the links to it; the old copies stay related."""
    catalog = RemotePathMapper()
    data, old_copy, older_copy = (catalog.register(loc, "/p") for loc in (L1, L2, L3))
    link = catalog.register(L1, "/alias", data_type=DataType.SYMBOLIC_LINK)
    catalog.relate(data, old_copy)
    catalog.relate(old_copy, older_copy)
    catalog.relate(data, link)
    assert catalog.link_target(link) is data
    catalog.split_off(data)
    assert set(catalog.replica_set(data)) == {data, link}
    assert set(catalog.replica_set(old_copy)) == {old_copy, older_copy}
    assert all(r.data_type is not DataType.INVALID for r in (data, link, old_copy, older_copy))


def test_split_off_leaves_a_lone_copy_unrelated() -> None:
    """After a split, a copy left alone carries no set, nor does the data."""
    catalog = RemotePathMapper()
    data, copy = catalog.register(L1, "/p"), catalog.register(L2, "/p")
    catalog.relate(data, copy)
    catalog.split_off(data)
    assert data._set is None and copy._set is None
    assert catalog.replica_set(copy) == [copy]
