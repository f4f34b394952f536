"""_truth: paths followed through the links the catalog made, and what confirms a replica."""

from __future__ import annotations

import pytest

from streamdata import DataType, ExecutionLocation
from streamdata._catalog.mapper import RemotePathMapper
from streamdata._engine.truth import followed, holds, inside, other_kind
from streamdata.connectors import Entry, EntryKind

L, M = ExecutionLocation("l", "d"), ExecutionLocation("m", "d")


@pytest.mark.parametrize(
    ("path", "directory", "expected"),
    [
        ("/a", "/a", True),
        ("/a/b", "/a", True),
        ("/ab", "/a", False),
        ("/a", "/a/b", False),
        ("/anything", "/", True),
    ],
)
def test_inside_compares_whole_components(path: str, directory: str, expected: bool) -> None:
    """A path lies inside a directory when it is it or below it, never by a name prefix."""
    assert inside(path, directory) is expected


def _linked(catalog: RemotePathMapper, link: str, target: str) -> None:
    data = catalog.register(L, target)
    alias = catalog.register(L, link, data_type=DataType.SYMBOLIC_LINK)
    catalog.relate(data, alias)


def test_followed_goes_through_known_links_only_on_their_location() -> None:
    """A path below a link the catalog made leads into its target; other locations do not."""
    catalog = RemotePathMapper()
    _linked(catalog, "/x/run1", "/x/src")
    assert followed(catalog, L, "/x/run1/sub/f") == "/x/src/sub/f"
    assert followed(catalog, L, "/x/run1") == "/x/src"
    assert followed(catalog, L, "/x/run1", itself=False) == "/x/run1"
    assert followed(catalog, M, "/x/run1/sub") == "/x/run1/sub"


def test_followed_stops_on_a_loop() -> None:
    """Links that lead into each other are followed a bounded number of times."""
    catalog = RemotePathMapper()
    _linked(catalog, "/a", "/a/b")
    assert followed(catalog, L, "/a/c").startswith("/a/b/b")


def _file(size: int, mtime: float) -> Entry:
    return Entry("/p", EntryKind.FILE, size, mtime, 0o644)


def test_holds_compares_kind_size_and_mtime_with_the_record() -> None:
    """A replica holds when found as recorded: whole-second mtimes match a precise one."""
    catalog = RemotePathMapper()
    replica = catalog.register(L, "/p")
    assert holds(catalog, replica, _file(3, 10.5))  # nothing recorded: existence is enough
    catalog.record_entry(replica, ("file", 3, 10.5))
    assert holds(catalog, replica, _file(3, 10.0))
    assert not holds(catalog, replica, _file(4, 10.5))
    assert not holds(catalog, replica, _file(3, 12.5))
    assert not holds(catalog, replica, None)
    assert not holds(catalog, replica, Entry("/p", EntryKind.SYMLINK, 0, 0.0, 0o777))


def test_a_link_holds_what_was_recorded_for_its_target() -> None:
    """A link is compared, through the link, with its target's record."""
    catalog = RemotePathMapper()
    _linked(catalog, "/alias", "/p")
    target, link = catalog.lookup(L, "/p"), catalog.lookup(L, "/alias")
    assert target is not None and link is not None
    catalog.record_entry(target, ("file", 3, 10.5))
    assert holds(catalog, link, _file(3, 10.5))
    assert not holds(catalog, link, _file(5, 10.5))


def test_other_kind_refuses_only_a_swap_of_file_and_directory() -> None:
    """A file never replaces a directory nor a directory a file; the rest may be replaced."""
    directory = Entry("/p", EntryKind.DIRECTORY, 0, 0.0, 0o755)
    dangling = Entry("/p", EntryKind.SYMLINK, 0, 0.0, 0o777)
    assert other_kind(EntryKind.FILE, directory) == "a file never replaces a directory"
    assert other_kind(EntryKind.DIRECTORY, _file(1, 1.0)) == "a directory never replaces a file"
    assert other_kind(EntryKind.FILE, _file(1, 1.0)) is None
    assert other_kind(EntryKind.DIRECTORY, directory) is None
    assert other_kind(EntryKind.DIRECTORY, dangling) is None
    assert other_kind(EntryKind.FILE, None) is None
