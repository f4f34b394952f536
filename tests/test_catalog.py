"""RemotePathMapper internals: graph holds only related replicas, sets survive invalidation."""

from __future__ import annotations

import pytest

from streamdata import DataNotFoundError, DataType, ExecutionLocation
from streamdata._catalog import RemotePathMapper

L1, L2, L3 = (ExecutionLocation(f"n{i}", f"d{i}") for i in range(3))


def test_unrelated_replicas_cost_no_graph_nodes() -> None:
    """Only replicas that take part in a relation are nodes of the relation graph."""
    catalog = RemotePathMapper()
    for index in range(100):
        catalog.register(L1, f"/data/f{index}")
    assert catalog._graph.number_of_nodes() == 0
    catalog.relate(catalog.register(L1, "/x"), catalog.register(L2, "/x"))
    assert catalog._graph.number_of_nodes() == 2


def test_removing_the_middle_of_a_chain_keeps_the_ends_related() -> None:
    """A-B, B-C, invalidate B: A and C still form one set, re-linked with one edge."""
    catalog = RemotePathMapper()
    a, b, c = (catalog.register(loc, "/p") for loc in (L1, L2, L3))
    catalog.relate(a, b)
    catalog.relate(b, c)
    catalog.invalidate(L2, "/p")
    assert set(catalog.replica_set(a)) == {a, c}
    assert catalog._graph.number_of_edges() == 1


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
