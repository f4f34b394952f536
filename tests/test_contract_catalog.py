"""Acceptance tests for the replica catalog, derived from CONTRACT.md alone.

Covers ``register_path``, ``register_relation``, ``invalidate_location``,
``get_data_locations`` and ``get_source_location`` through the public API only.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
from catalog_kinds import Catalogs

from streamdata import (
    DataLocation,
    DataManager,
    DataType,
    ExecutionLocation,
    LocalConnector,
    SSHConnector,
    SSHHost,
)

A = ExecutionLocation("a", "site-a")
A2 = ExecutionLocation("a2", "site-a")
B = ExecutionLocation("b", "site-b")
C = ExecutionLocation("c", "site-c")


def _key(replica: DataLocation) -> tuple[str, str, str]:
    return (replica.deployment, replica.name, replica.path)


def _keys(replicas: Iterable[DataLocation]) -> set[tuple[str, str, str]]:
    return {_key(r) for r in replicas}


def _closed_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _remote(name: str) -> SSHConnector:
    """A non-local deployment that is never contacted (connections are lazy)."""
    host = SSHHost("127.0.0.1", port=_closed_loopback_port(), name=name, check_host_key=False)
    return SSHConnector([host])


@pytest.fixture
async def dm(catalogs: Catalogs) -> AsyncIterator[DataManager]:
    manager = DataManager(
        {"site-a": LocalConnector(), "site-b": LocalConnector(), "site-c": LocalConnector()},
        catalog=catalogs.new(),
    )
    async with manager:
        yield manager


class _GatedConnector(LocalConnector):
    """A LocalConnector whose copies wait for a gate, to observe in-flight transfers."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def copy(self, location: ExecutionLocation, src_path: str, dst_path: str) -> None:
        self.entered.set()
        await self.gate.wait()
        await super().copy(location, src_path, dst_path)


# --- register_path ------------------------------------------------------------------------


def test_register_path_records_every_ancestor_once(dm: DataManager) -> None:
    """register_path records every ancestor directory, `/` included, exactly once."""
    dm.register_path(A, "/x/y/z")
    for ancestor in ("/", "/x", "/x/y"):
        found = dm.get_data_locations(ancestor, deployment="site-a")
        assert [r.path for r in found] == [ancestor]
        assert found[0].location == A


def test_register_path_ancestors_not_duplicated_by_siblings(dm: DataManager) -> None:
    """Registering two siblings still leaves one replica per ancestor."""
    dm.register_path(A, "/x/y/z1")
    dm.register_path(A, "/x/y/z2")
    dm.register_path(A, "/x/y")
    assert len(dm.get_data_locations("/x/y", deployment="site-a")) == 1
    assert len(dm.get_data_locations("/x", deployment="site-a")) == 1
    assert len(dm.get_data_locations("/", deployment="site-a")) == 1


def test_register_path_normalises_paths(dm: DataManager) -> None:
    """`/a//b/` is recorded and found as `/a/b`."""
    replica = dm.register_path(A, "/a//b/")
    assert replica.path == "/a/b"
    for spelling in ("/a/b", "/a//b", "/a/b/", "//a/b"):
        assert [r.path for r in dm.get_data_locations(spelling)] == ["/a/b"]


@pytest.mark.parametrize("path", ["a/b", "./a", "rel", ""])
def test_register_path_rejects_relative_path(dm: DataManager, path: str) -> None:
    """A relative path given to register_path is a ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 -- the contract names only the type
        dm.register_path(A, path)


@pytest.mark.parametrize("path", ["a/b", "./a"])
def test_queries_reject_relative_path(dm: DataManager, path: str) -> None:
    """A relative path given to the catalog queries is a ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011
        dm.get_data_locations(path)
    with pytest.raises(ValueError):  # noqa: PT011
        dm.invalidate_location(A, path)
    with pytest.raises(ValueError):  # noqa: PT011
        dm.get_source_location(path, "site-a")


def test_register_path_relpath_defaults_to_basename(dm: DataManager) -> None:
    """relpath defaults to the basename of path, and an explicit one is kept."""
    assert dm.register_path(A, "/d/e/file.txt").relpath == "file.txt"
    assert dm.register_path(A, "/d/e/other", relpath="sub/other").relpath == "sub/other"


def test_register_path_exposes_location_attributes(dm: DataManager) -> None:
    """A replica exposes path, location, deployment, name and data_type."""
    replica = dm.register_path(B, "/p/q", data_type=DataType.SYMBOLIC_LINK)
    assert replica.path == "/p/q"
    assert replica.location == B
    assert replica.deployment == "site-b"
    assert replica.name == "b"
    assert replica.data_type is DataType.SYMBOLIC_LINK


def test_register_again_returns_same_replica_with_new_type(dm: DataManager) -> None:
    """Registering an existing (location, path) again returns that replica with the new type."""
    first = dm.register_path(A, "/r/x")
    second = dm.register_path(A, "/r/x", data_type=DataType.SYMBOLIC_LINK)
    assert _key(second) == _key(first)
    assert second.data_type is DataType.SYMBOLIC_LINK
    found = dm.get_data_locations("/r/x")
    assert [(_key(r), r.data_type) for r in found] == [(_key(first), DataType.SYMBOLIC_LINK)]


def test_register_again_after_invalidation_makes_valid(dm: DataManager) -> None:
    """A replica registered again after invalidation is valid again, with the new type."""
    dm.register_path(A, "/r/x")
    dm.invalidate_location(A, "/r/x")
    assert dm.get_data_locations("/r/x") == []
    again = dm.register_path(A, "/r/x", data_type=DataType.PRIMARY)
    assert again.data_type is DataType.PRIMARY
    assert _keys(dm.get_data_locations("/r/x")) == {("site-a", "a", "/r/x")}


def test_register_again_does_not_duplicate_replica(dm: DataManager) -> None:
    """Registering the same (location, path) many times leaves one replica."""
    for _ in range(5):
        dm.register_path(A, "/dup/x")
    assert len(dm.get_data_locations("/dup/x")) == 1


def test_local_flag_does_not_split_a_location(dm: DataManager) -> None:
    """Locations equal in (deployment, name) share replicas whatever their `local` flag."""
    dm.register_path(ExecutionLocation("a", "site-a", local=True), "/l/x")
    dm.register_path(ExecutionLocation("a", "site-a"), "/l/x")
    assert len(dm.get_data_locations("/l/x")) == 1
    assert len(dm.get_data_locations("/l/x", deployment="site-a", location="a")) == 1


# --- relations ----------------------------------------------------------------------------


def test_relations_are_symmetric_and_transitive(dm: DataManager) -> None:
    """Related replicas form one set seen from any member's path."""
    ra = dm.register_path(A, "/sa/x")
    rb = dm.register_path(B, "/sb/x")
    rc = dm.register_path(C, "/sc/x")
    dm.register_relation(ra, rb)
    dm.register_relation(rc, rb)
    expected = _keys([ra, rb, rc])
    for path in ("/sa/x", "/sb/x", "/sc/x"):
        assert _keys(dm.get_data_locations(path)) == expected


def test_unrelated_replicas_stay_apart(dm: DataManager) -> None:
    """Replicas at different paths that were never related are not returned together."""
    dm.register_path(A, "/u/one")
    dm.register_path(B, "/u/two")
    assert _keys(dm.get_data_locations("/u/one")) == {("site-a", "a", "/u/one")}


def test_same_path_on_several_locations_all_returned(dm: DataManager) -> None:
    """Every valid replica registered at the path on any location is returned."""
    dm.register_path(A, "/same/x")
    dm.register_path(B, "/same/x")
    assert _keys(dm.get_data_locations("/same/x")) == {
        ("site-a", "a", "/same/x"),
        ("site-b", "b", "/same/x"),
    }


def test_invalidation_takes_replica_out_of_its_set(dm: DataManager) -> None:
    """Invalidating the middle of a chain leaves the other two related."""
    ra = dm.register_path(A, "/ia/x")
    rb = dm.register_path(B, "/ib/x")
    rc = dm.register_path(C, "/ic/x")
    dm.register_relation(ra, rb)
    dm.register_relation(rb, rc)
    dm.invalidate_location(B, "/ib/x")
    assert _keys(dm.get_data_locations("/ia/x")) == _keys([ra, rc])
    assert _keys(dm.get_data_locations("/ic/x")) == _keys([ra, rc])
    assert dm.get_data_locations("/ib/x") == []


def test_reregistered_after_invalidation_starts_new_set(dm: DataManager) -> None:
    """A replica registered again after invalidation is in a set of its own."""
    ra = dm.register_path(A, "/na/x")
    rb = dm.register_path(B, "/nb/x")
    rc = dm.register_path(C, "/nc/x")
    dm.register_relation(ra, rb)
    dm.register_relation(rb, rc)
    dm.invalidate_location(B, "/nb/x")
    rb2 = dm.register_path(B, "/nb/x")
    assert _keys(dm.get_data_locations("/nb/x")) == _keys([rb2])
    assert _keys(dm.get_data_locations("/na/x")) == _keys([ra, rc])


# --- get_data_locations -------------------------------------------------------------------


def _related_trio(dm: DataManager) -> None:
    ra = dm.register_path(A, "/f/a")
    ra2 = dm.register_path(A2, "/f/a2", data_type=DataType.SYMBOLIC_LINK)
    rb = dm.register_path(B, "/f/b")
    dm.register_relation(ra, ra2)
    dm.register_relation(ra, rb)


def test_get_data_locations_filters_by_deployment(dm: DataManager) -> None:
    """The deployment filter keeps only replicas of that deployment."""
    _related_trio(dm)
    assert _keys(dm.get_data_locations("/f/b", deployment="site-a")) == {
        ("site-a", "a", "/f/a"),
        ("site-a", "a2", "/f/a2"),
    }
    assert dm.get_data_locations("/f/b", deployment="site-c") == []


def test_get_data_locations_filters_by_location_name(dm: DataManager) -> None:
    """The location filter keeps only replicas on the location of that name."""
    _related_trio(dm)
    assert _keys(dm.get_data_locations("/f/a", location="b")) == {("site-b", "b", "/f/b")}
    assert _keys(dm.get_data_locations("/f/b", location="a2")) == {("site-a", "a2", "/f/a2")}


def test_get_data_locations_filters_by_type(dm: DataManager) -> None:
    """The location_type filter keeps only replicas of that type, combined with the others."""
    _related_trio(dm)
    links = dm.get_data_locations("/f/b", location_type=DataType.SYMBOLIC_LINK)
    assert _keys(links) == {("site-a", "a2", "/f/a2")}
    primaries = dm.get_data_locations("/f/b", deployment="site-a", location_type=DataType.PRIMARY)
    assert _keys(primaries) == {("site-a", "a", "/f/a")}
    assert dm.get_data_locations("/f/b", location_type=DataType.INVALID) == []


def test_get_data_locations_never_returns_invalid(dm: DataManager) -> None:
    """INVALID replicas are never returned, even when related or asked for by type."""
    ra = dm.register_path(A, "/inv/x")
    rb = dm.register_path(B, "/inv/y")
    dm.register_relation(ra, rb)
    dm.invalidate_location(B, "/inv/y")
    found = dm.get_data_locations("/inv/x")
    assert all(r.data_type is not DataType.INVALID for r in found)
    assert ("site-b", "b", "/inv/y") not in _keys(found)
    assert dm.get_data_locations("/inv/y", location_type=DataType.INVALID) == []


def test_get_data_locations_unknown_path_is_empty(dm: DataManager) -> None:
    """An unknown path gives an empty list."""
    dm.register_path(A, "/known/x")
    assert dm.get_data_locations("/unknown") == []
    assert dm.get_data_locations("/known/x/below") == []


# --- invalidate_location ------------------------------------------------------------------


def _tree(dm: DataManager) -> None:
    for path in ("/t", "/t/u", "/t/u/v", "/t/u/v/w", "/t/sib", "/tother", "/t/u-x"):
        dm.register_path(A, path)


def test_invalidate_marks_subtree_invalid(dm: DataManager) -> None:
    """The replica at path and every replica of the location below it become INVALID."""
    _tree(dm)
    dm.invalidate_location(A, "/t/u")
    for gone in ("/t/u", "/t/u/v", "/t/u/v/w"):
        assert dm.get_data_locations(gone) == [], gone
    for kept in ("/t", "/t/sib", "/tother", "/t/u-x", "/"):
        assert [r.path for r in dm.get_data_locations(kept, deployment="site-a")] == [kept]


def test_invalidate_keeps_ancestors_valid(dm: DataManager) -> None:
    """Ancestors of an invalidated path, implied or explicit, stay valid."""
    dm.register_path(A, "/anc/mid/leaf")
    dm.invalidate_location(A, "/anc/mid/leaf")
    assert dm.get_data_locations("/anc/mid/leaf") == []
    for kept in ("/anc/mid", "/anc", "/"):
        assert len(dm.get_data_locations(kept, deployment="site-a")) == 1


def test_invalidate_keeps_other_locations_valid(dm: DataManager) -> None:
    """Replicas of other locations, at the same path or related, stay valid."""
    ra = dm.register_path(A, "/o/x")
    dm.register_path(B, "/o/x")
    rb_related = dm.register_path(B, "/ob/x")
    dm.register_relation(ra, rb_related)
    dm.register_path(A2, "/o/x/in")
    dm.invalidate_location(A, "/o/x")
    assert _keys(dm.get_data_locations("/o/x")) == {
        ("site-b", "b", "/o/x"),
        ("site-a", "a2", "/o/x"),  # implied by /o/x/in on a2
    }
    assert _keys(dm.get_data_locations("/ob/x")) == {("site-b", "b", "/ob/x")}
    assert _keys(dm.get_data_locations("/o/x/in")) == {("site-a", "a2", "/o/x/in")}


def test_invalidate_takes_symbolic_links_to_the_data(dm: DataManager) -> None:
    """SYMBOLIC_LINK replicas pointing at the invalidated data are invalidated too."""
    target = dm.register_path(A, "/sl/data")
    link_other = dm.register_path(B, "/sl/link-b", data_type=DataType.SYMBOLIC_LINK)
    link_same = dm.register_path(A2, "/sl/link-a2", data_type=DataType.SYMBOLIC_LINK)
    dm.register_relation(target, link_other)
    dm.register_relation(link_same, target)
    dm.invalidate_location(A, "/sl/data")
    assert dm.get_data_locations("/sl/link-b") == []
    assert dm.get_data_locations("/sl/link-a2") == []


def test_invalidate_subtree_takes_links_to_data_below(dm: DataManager) -> None:
    """A SYMBOLIC_LINK to a replica below the invalidated path is invalidated too."""
    below = dm.register_path(A, "/slt/dir/file")
    link = dm.register_path(B, "/slt-link", data_type=DataType.SYMBOLIC_LINK)
    dm.register_relation(below, link)
    dm.invalidate_location(A, "/slt/dir")
    assert dm.get_data_locations("/slt-link") == []


def test_invalidate_unknown_path_is_noop(dm: DataManager) -> None:
    """Invalidating an unknown path or location changes nothing and raises nothing."""
    dm.register_path(A, "/kn/x")
    dm.invalidate_location(A, "/kn/nothing")
    dm.invalidate_location(ExecutionLocation("nowhere", "site-a"), "/kn/x")
    dm.invalidate_location(B, "/never/seen")
    assert _keys(dm.get_data_locations("/kn/x")) == {("site-a", "a", "/kn/x")}


# --- get_source_location ------------------------------------------------------------------


@pytest.fixture
async def mixed(catalogs: Catalogs) -> AsyncIterator[DataManager]:
    """Two local deployments and three non-local ones (never contacted)."""
    manager = DataManager(
        {
            "site-a": LocalConnector(),
            "site-b": LocalConnector(),
            "r1": _remote("n1"),
            "r2": _remote("n2"),
            "r3": _remote("n3"),
        },
        rng=random.Random(1234),
        catalog=catalogs.new(),
    )
    async with manager:
        yield manager


R1 = ExecutionLocation("n1", "r1")
R2 = ExecutionLocation("n2", "r2")
R3 = ExecutionLocation("n3", "r3")


def _replica_set(dm: DataManager, members: list[tuple[ExecutionLocation, str]]) -> None:
    replicas = [dm.register_path(location, path) for location, path in members]
    for other in replicas[1:]:
        dm.register_relation(replicas[0], other)


def test_source_prefers_destination_deployment(mixed: DataManager) -> None:
    """Tier 1: a replica on a location of dst_deployment wins."""
    _replica_set(mixed, [(A, "/g/a"), (B, "/g/b"), (R1, "/g/r1"), (R2, "/g/r2")])
    for dst, expected in (("site-b", "/g/b"), ("r1", "/g/r1"), ("r2", "/g/r2")):
        chosen = mixed.get_source_location("/g/a", dst)
        assert chosen is not None
        assert (chosen.deployment, chosen.path) == (dst, expected)


def test_source_prefers_local_location(mixed: DataManager) -> None:
    """Tier 2: without a replica on dst_deployment, a LocalConnector location wins."""
    _replica_set(mixed, [(R1, "/h/r1"), (A, "/h/a"), (R2, "/h/r2")])
    for _ in range(20):
        chosen = mixed.get_source_location("/h/r1", "r3")
        assert chosen is not None
        assert _key(chosen) == ("site-a", "a", "/h/a")


def test_source_prefers_location_flagged_local(mixed: DataManager) -> None:
    """Tier 2: a location with local=True counts as local even on a non-local deployment."""
    flagged = ExecutionLocation("n2", "r2", local=True)
    _replica_set(mixed, [(R1, "/k/r1"), (flagged, "/k/r2"), (R3, "/k/r3")])
    for _ in range(20):
        chosen = mixed.get_source_location("/k/r1", "site-a")
        assert chosen is not None
        assert _key(chosen) == ("r2", "n2", "/k/r2")


def test_source_random_tier_spreads_over_candidates(mixed: DataManager) -> None:
    """Tier 3: with neither, the choice is random and spreads over every candidate."""
    _replica_set(mixed, [(R1, "/m/1"), (R2, "/m/2"), (R3, "/m/3")])
    counts: Counter[str] = Counter()
    for _ in range(300):
        chosen = mixed.get_source_location("/m/1", "site-a")
        assert chosen is not None
        counts[chosen.deployment] += 1
    assert set(counts) == {"r1", "r2", "r3"}
    assert min(counts.values()) >= 50, counts


async def test_source_random_tier_uses_injected_rng() -> None:
    """Tier 3 draws from the injected rng: equal seeds give equal choices."""
    sequences = []
    for _ in range(2):
        manager = DataManager(
            {"site-a": LocalConnector(), "r1": _remote("n1"), "r2": _remote("n2")},
            rng=random.Random(99),
        )
        async with manager:
            _replica_set(manager, [(R1, "/q/1"), (R2, "/q/2")])
            picks = [manager.get_source_location("/q/1", "site-a") for _ in range(40)]
            sequences.append([p.deployment if p else None for p in picks])
    assert sequences[0] == sequences[1]
    assert set(sequences[0]) == {"r1", "r2"}


def test_source_never_symbolic_link(mixed: DataManager) -> None:
    """SYMBOLIC_LINK replicas are never chosen, even on the destination deployment."""
    primary = mixed.register_path(R1, "/sy/p")
    link = mixed.register_path(B, "/sy/l", data_type=DataType.SYMBOLIC_LINK)
    mixed.register_relation(primary, link)
    for _ in range(20):
        chosen = mixed.get_source_location("/sy/l", "site-b")
        assert chosen is not None
        assert _key(chosen) == ("r1", "n1", "/sy/p")


def test_source_none_when_only_links(mixed: DataManager) -> None:
    """With only SYMBOLIC_LINK replicas there is no source."""
    mixed.register_path(A, "/ol/l", data_type=DataType.SYMBOLIC_LINK)
    assert mixed.get_source_location("/ol/l", "site-a") is None


def test_source_none_when_nothing(mixed: DataManager) -> None:
    """Unknown or invalidated data has no source."""
    assert mixed.get_source_location("/nothing/here", "site-a") is None
    mixed.register_path(A, "/gone/x")
    mixed.invalidate_location(A, "/gone/x")
    assert mixed.get_source_location("/gone/x", "site-a") is None


def test_source_never_implied_ancestor(mixed: DataManager) -> None:
    """An implied ancestor is never used as the source for its directory."""
    mixed.register_path(A, "/imp/dir/file")
    assert mixed.get_source_location("/imp/dir", "site-a") is None
    assert mixed.get_source_location("/imp/dir", "site-b") is None


async def test_source_available_beats_pending_within_tier(tmp_path: Path) -> None:
    """Within a tier, a replica whose data is available wins over one still being written."""
    gated = _GatedConnector()
    manager = DataManager({"site-a": LocalConnector(), "site-b": gated, "site-c": LocalConnector()})
    async with manager:
        (tmp_path / "a").mkdir()
        src = tmp_path / "a" / "data"
        src.write_bytes(b"payload")
        manager.register_path(A, str(src))
        dst = str(tmp_path / "b" / "data")
        task = asyncio.create_task(manager.transfer_data(A, str(src), [B], dst))
        await asyncio.wait_for(gated.entered.wait(), 10)
        try:
            pending = [r for r in manager.get_data_locations(dst) if r.deployment == "site-b"]
            assert pending, "the destination being written is not in the catalog"
            assert not pending[0].is_available
            for _ in range(10):
                chosen = manager.get_source_location(dst, "site-c")
                assert chosen is not None
                assert _key(chosen) == ("site-a", "a", str(src))
        finally:
            gated.gate.set()
            await task
        chosen = manager.get_source_location(dst, "site-b")
        assert chosen is not None
        assert _key(chosen) == ("site-b", "b", dst)
