"""The consistency audit: the catalog against what storage really holds.

One pass over the storage listing (streamed from the connector, parents before children)
classifies each entry against the catalog as it stood before the check: a registered
replica is *seen* (and compared: size and mtime for files, type for the rest); an entry
inside an explicit directory replica is covered; anything else is an orphan, and an
orphan directory is reported once with its subtree skipped. Only the set of seen replica
paths is kept, never a second full listing.

Each missing replica is invalidated and the catalog remembers what it was a copy of and
what the check found in its place (:mod:`._catalog.lineage`); a repair copies back the missing
replicas and those earlier checks invalidated, replacing only what was found there. A
dry run stops after the classification: it changes nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from ._catalog.lineage import Signature
from ._catalog.mapper import RemotePathMapper, parent_of
from ._engine.engine import Engine
from ._engine.replicate import fill
from ._engine.treeprint import TreeAudit
from ._errors import ConsistencyError, StreamDataError
from ._integrity import digest_of, entry_changed, entry_signature
from ._models import DataLocation, DataType, ExecutionLocation
from .connectors._base import Connector, Entry, EntryKind, entry_from_stat

__all__ = ["CheckReport", "record_local_entry", "run_check"]


@dataclass(frozen=True)
class CheckReport:
    """What :meth:`DataManager.check` found. Every list is sorted.

    Attributes:
        location: The location that was checked.
        path: The path that was checked.
        missing: Replica paths the catalog held as valid that are absent or changed
            (size or modification time for files, type for other entries); they are now
            INVALID (in a dry run: they would be).
        orphans: Entries under ``path`` that no valid replica covered.
        repaired: Replicas copied back from another replica of their set: missing ones,
            and those an earlier check invalidated (in a dry run: those that would be).
        errors: Repairs that failed, as ``(path, reason)``.
        dry_run: True when nothing was changed (see :meth:`DataManager.check`).
    """

    location: ExecutionLocation
    path: str
    missing: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    dry_run: bool = False


CheckReport.__module__ = "streamdata"


def record_local_entry(catalog: RemotePathMapper, replica: DataLocation) -> None:
    """Remember size and mtime of a local replica now, for the audit to compare."""
    try:
        info = os.lstat(replica.path)  # what a storage listing will see
    except OSError:
        return
    entry = entry_from_stat(replica.path, info)
    catalog.record_entry(replica, entry_signature(entry))


_FILE, _DIRECTORY = EntryKind.FILE, EntryKind.DIRECTORY
_INVALID, _PRIMARY = DataType.INVALID, DataType.PRIMARY


class _Audit:
    """The classification of one listing; hot: one :meth:`visit` per entry."""

    def __init__(
        self,
        catalog: RemotePathMapper,
        location: ExecutionLocation,
        path: str,
        *,
        collect_files: bool = False,
    ) -> None:
        self.catalog, self.location, self.path = catalog, location, path
        self.seen: set[str] = set()
        self.missing: dict[DataLocation, Signature] = {}  # changed, with what is there now
        self.orphans: list[str] = []
        self.covered: set[str] = set()
        self.skipped: set[str] = set()
        self.updates: list[tuple[DataLocation, tuple[str, int, float]]] = []
        self.files: list[tuple[DataLocation, tuple[str, int, float]]] | None = (
            [] if collect_files else None
        )
        self.in_flight: set[str] = set()
        self.trees = TreeAudit(path, with_content=collect_files)

    def visit(self, entry: Entry) -> None:
        path = entry.path
        if self.in_flight and path in self.in_flight:
            self.skipped.add(path)  # a transfer of this manager is writing it
            return
        if self.skipped:
            parent = path[: path.rfind("/")] or "/"
            if parent in self.skipped and path != self.path:
                if entry.kind is _DIRECTORY:
                    self.skipped.add(path)
                return
        self.trees.visit(entry)
        replica = self.catalog.lookup(self.location, path)
        if replica is not None and replica.data_type is not _INVALID:
            self._compare(replica, entry)
            return
        parent = path[: path.rfind("/")] or "/"
        if parent in self.covered and path != self.path:
            if entry.kind is _DIRECTORY:
                self.covered.add(path)
        elif not self._covered_above(path):
            self.orphans.append(path)
            if entry.kind is _DIRECTORY:
                self.skipped.add(path)
        elif entry.kind is _DIRECTORY:
            self.covered.add(path)

    def _covered_above(self, path: str) -> bool:
        if path != self.path:
            return False
        replica = self.catalog.covering(self.location, path)
        return replica is not None

    def _compare(self, replica: DataLocation, entry: Entry) -> None:
        kind = entry.kind
        self.seen.add(entry.path)
        if kind is _FILE:
            signature: tuple[str, int, float] = ("file", entry.size, entry.mtime)
        else:
            signature = (kind.value, 0, 0.0)
        recorded = self.catalog.entry_of(replica)
        if recorded is None:
            if replica.is_available:
                self.updates.append((replica, signature))
        elif recorded != signature and entry_changed(recorded, signature):
            self.missing[replica] = signature
            return
        if kind is _FILE:
            if self.files is not None and replica.data_type is _PRIMARY:
                self.files.append((replica, signature))
        elif kind is _DIRECTORY and not replica.implied:
            self.covered.add(entry.path)
            if replica.is_available:
                self.trees.start(replica)

    def unseen(self) -> list[DataLocation]:
        """Valid, available replicas under the checked path that the listing did not show.

        Walks the catalog's tree of paths; a path seen in the listing is known to hold a
        valid replica of this location, so only its children need looking at.
        """
        seen, location, catalog = self.seen, self.location, self.catalog
        lost: list[DataLocation] = []
        stack = [self.path]
        while stack:
            current = stack.pop()
            if current not in seen:
                replica = catalog.lookup(location, current)
                if replica is None:
                    continue  # nothing of this location here, hence nothing below either
                if replica.data_type is not _INVALID and replica.is_available:
                    lost.append(replica)
            below = catalog.children(current)
            if below:
                stack.extend(below)
        return lost


async def run_check(
    engine: Engine,
    location: ExecutionLocation,
    path: str,
    *,
    repair: bool,
    max_missing: int | None,
    verify_content: bool = False,
    dry_run: bool = False,
) -> CheckReport:
    """Audit ``path`` on ``location`` (see :meth:`DataManager.check`)."""
    catalog, connector = engine.catalog, engine.deployments.connector(location)
    if not dry_run:
        await engine.remove_stale_temporaries([location])
    audit = _Audit(catalog, location, path, collect_files=verify_content)
    audit.in_flight = engine.writing(location)
    async for entry in connector.walk(location, path):
        audit.visit(entry)
    lost, digests = await _losses(audit, connector)
    missing = sorted(lost, key=lambda r: r.path)
    if max_missing is not None and len(missing) > max_missing:
        raise ConsistencyError(
            f"{len(missing)} replicas under {path!r} on {location} look missing, more than "
            f"max_missing={max_missing}; nothing was changed"
        )
    repairs = _repairs(catalog, location, path, missing, lost)
    report = CheckReport(location, path, [r.path for r in missing], sorted(audit.orphans))
    if dry_run:
        would = [r.path for r, (candidates, _) in repairs.items() if _repairable(candidates)]
        return replace(report, repaired=sorted(would) if repair else [], dry_run=True)
    _record(audit, missing, repairs, lost, digests)
    if repair:
        await _repair(engine, location, repairs, report)
    return report


async def _losses(
    audit: _Audit, connector: Connector
) -> tuple[dict[DataLocation, Signature | None], dict[DataLocation, str]]:
    """The replicas the listing shows lost (with what is there now), and fresh digests."""
    catalog, location = audit.catalog, audit.location
    corrupt: dict[DataLocation, Signature] = {}
    digests: dict[DataLocation, str] = {}
    if audit.files is not None:
        corrupt, digests = await _verify_contents(catalog, connector, location, audit.files)
    damaged, prints = await audit.trees.judge(catalog, connector, location)
    digests.update(prints)
    unseen = await _still_absent(audit.unseen(), connector, location)
    lost: dict[DataLocation, Signature | None] = dict.fromkeys(unseen)
    lost.update(audit.missing)
    lost.update(corrupt)
    lost.update((tree, ("directory", 0, 0.0)) for tree in damaged if tree not in lost)
    return lost, digests


async def _still_absent(
    unseen: list[DataLocation], connector: Connector, location: ExecutionLocation
) -> list[DataLocation]:
    """The replicas the listing did not show that are still absent: one ``stat`` for each
    top-most one (another process may have finished a transfer there after the listing
    passed by); nothing at or below a path found present is judged."""
    absent: list[DataLocation] = []
    gone: set[str] = set()
    present: set[str] = set()
    for replica in sorted(unseen, key=lambda r: r.path):  # a directory before its inside
        if _inside(replica.path, present):
            continue
        if not _inside(replica.path, gone):
            if await connector.stat(location, replica.path) is not None:
                present.add(replica.path)
                continue
            gone.add(replica.path)
        absent.append(replica)
    return absent


def _record(
    audit: _Audit,
    missing: list[DataLocation],
    repairs: _Repairs,
    lost: dict[DataLocation, Signature | None],
    digests: dict[DataLocation, str],
) -> None:
    """Invalidate the missing replicas; record the entries and digests the check saw."""
    catalog, location = audit.catalog, audit.location
    for replica in missing:
        catalog.invalidate(location, replica.path)
        catalog.remember_lost(replica, *repairs[replica])
    for replica, signature in audit.updates:
        catalog.record_entry(replica, signature, digests.pop(replica, None))
    for replica, digest in digests.items():
        if replica not in lost:
            catalog.record_entry(replica, catalog.entry_of(replica) or ("file", 0, 0.0), digest)


#: For each replica to restore: the replicas it may be copied from, and the entry the
#: check found at its path (which the copy may replace; None: it must find nothing there).
_Repairs = dict[DataLocation, tuple[list[DataLocation], Signature | None]]


def _repairs(
    catalog: RemotePathMapper,
    location: ExecutionLocation,
    path: str,
    missing: list[DataLocation],
    lost: dict[DataLocation, Signature | None],
) -> _Repairs:
    """What a repair would restore: the missing replicas, then those lost to earlier checks.

    A replica lost earlier is left alone while a valid replica (not missing now) covers
    its path: other data lives there now.
    """
    repairs: _Repairs = {}
    for replica in missing:
        others = [r for r in catalog.replica_set(replica) if r not in lost and r is not replica]
        repairs[replica] = (others, lost[replica])
    lineage = catalog.lineage
    for replica in lineage.lost_below(location, path) if lineage.anchored else ():
        above = catalog.covering(location, parent_of(replica.path))
        anchor = lineage.anchor_of(replica)
        if anchor is not None and (above is None or above in lost):
            candidates = [r for r in catalog.replica_set(anchor) if r not in lost]
            repairs[replica] = (candidates, lineage.seen_at(replica))
    return repairs


def _repairable(candidates: list[DataLocation]) -> bool:
    return any(r.data_type is _PRIMARY and not r.implied for r in candidates)


async def _verify_contents(
    catalog: RemotePathMapper,
    connector: Connector,
    location: ExecutionLocation,
    files: list[tuple[DataLocation, tuple[str, int, float]]],
) -> tuple[dict[DataLocation, Signature], dict[DataLocation, str]]:
    """Hash every file replica; those whose digest differs from the recorded one are lost.

    Returns the corrupt replicas (with their entries) and the digests of files that had
    none recorded yet.
    """
    corrupt: dict[DataLocation, Signature] = {}
    fresh: dict[DataLocation, str] = {}
    for replica, signature in files:
        digest = await digest_of(connector, location, replica.path)
        recorded = catalog.digest_of(replica)
        if recorded is None:
            fresh[replica] = digest
        elif recorded != digest:
            corrupt[replica] = signature
    return corrupt, fresh


async def _repair(
    engine: Engine, location: ExecutionLocation, repairs: _Repairs, report: CheckReport
) -> None:
    """Copy back each repairable replica, in path order (a tree before what is inside)."""
    restored: set[str] = set()
    for replica in sorted(repairs, key=lambda r: r.path):
        candidates, seen = repairs[replica]
        if not _repairable(candidates):
            continue
        if _inside(replica.path, restored):  # the tree restored a moment ago holds it
            seen = await _now_at(engine, location, replica.path)
        _, failures = await fill(engine, candidates, [location], replica.path, replaceable=seen)
        if failures:
            report.errors.append((replica.path, str(failures[location])))
        else:
            report.repaired.append(replica.path)
            restored.add(replica.path)


def _inside(path: str, trees: set[str]) -> bool:
    while trees and path != "/":
        path = parent_of(path)
        if path in trees:
            return True
    return False


async def _now_at(engine: Engine, location: ExecutionLocation, path: str) -> Signature | None:
    try:
        entry = await engine.deployments.connector(location).stat(location, path)
    except StreamDataError:
        return None  # the copy will meet the same trouble and report it
    return None if entry is None else entry_signature(entry)
