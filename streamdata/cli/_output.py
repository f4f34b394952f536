"""What the ``streamdata`` command shows: progress bars, replica tables and JSON.

Progress bars are drawn from the DataManager's events (one bar per transfer), on standard
error so that standard output stays clean for pipes; they are only drawn on a terminal.

Names are data: every name in a human-readable line, table or bar goes through
:func:`printable`, and reaches rich as plain text (never as markup), so a file name can
neither move the cursor nor change colours. JSON keeps names exact (:func:`emit_json`).
"""

from __future__ import annotations

import asyncio
import json
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from streamdata import (
    DataLocation,
    EventKind,
    ExecutionLocation,
    ReplicaEvent,
    StreamDataError,
    TransferEvent,
)
from streamdata.connectors import Connector, EntryKind

__all__ = [
    "ReplicaRow",
    "TransferProgress",
    "describe_replicas",
    "emit_json",
    "human_size",
    "plain",
    "printable",
    "replica_table",
    "tree_size",
]

_STAT_TIMEOUT = 30.0
_C_ESCAPES = {
    "\\": "\\\\",
    "\a": "\\a",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\v": "\\v",
    "\f": "\\f",
    "\r": "\\r",
}


def printable(text: str, *, backslashes: bool = True) -> str:
    """``text`` with what a terminal would interpret escaped, as ``ls -b`` shows names.

    Control characters become C escapes (``\\n``, ``\\t``) or octal ones (``\\033``);
    other characters Python does not call printable (DEL, C1 controls, bidi overrides,
    zero-width and non-ASCII spaces) become the octal escapes of their UTF-8 bytes; an
    undecodable byte, which :func:`os.fsdecode` turned into a lone surrogate, becomes the
    octal escape of that byte (``\\377``). Unlike ``ls -b``, the ASCII space stays a space.

    Args:
        text: A name, or a line holding names.
        backslashes: Double each backslash too, so the escaped form is unambiguous. False
            for prose that already holds Python ``repr`` escapes (error messages).
    """
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_escape(char, backslashes) for char in text)


def _escape(char: str, backslashes: bool) -> str:
    if char == "\\" and not backslashes:
        return char
    if char in _C_ESCAPES:
        return _C_ESCAPES[char]
    if char.isprintable():
        return char
    try:
        raw = char.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate os.fsdecode does not make
        raw = char.encode("utf-8", "surrogatepass")
    return "".join(f"\\{byte:03o}" for byte in raw)


def plain(text: str) -> Text:
    """``text`` made :func:`printable`, as rich text that is never read as markup."""
    return Text(printable(text))


class TransferProgress:
    """Rich progress bars fed by :meth:`DataManager.add_listener`.

    Use it as a context manager around the transfers, and pass it (it is callable) to
    ``add_listener``. :meth:`expect` gives the size of a directory tree in advance, since
    tree transfers only know their total once they are finished.

    Args:
        console: Where to draw (usually standard error).
        enabled: False draws nothing (not a terminal, or JSON output).
    """

    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=28),
            TextColumn("{task.percentage:>3.0f}%"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[files]}"),
            console=console,
            disable=not enabled,
        )
        self._tasks: dict[int, TaskID] = {}
        self._trees: set[int] = set()  # transfers of trees (a file announces files_total=1)
        self._expected: dict[tuple[ExecutionLocation, str], tuple[int, int]] = {}

    def expect(self, location: ExecutionLocation, path: str, size: int, files: int) -> None:
        """Announce the size of the data at ``path`` on ``location`` and its file count."""
        self._expected[(location, path)] = (size, files)

    def __enter__(self) -> TransferProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def __call__(self, event: TransferEvent | ReplicaEvent) -> None:
        """Update the bars with one event (the listener)."""
        if not isinstance(event, TransferEvent):
            return
        task = self._tasks.get(event.transfer_id)
        if task is None:
            task = self._tasks[event.transfer_id] = self._add(event)
        if event.kind is EventKind.TRANSFER_PROGRESS:
            self._progress.update(
                task,
                completed=event.bytes_done,
                total=self._total(event),
                files=self._files(event),
            )
        elif event.kind is EventKind.TRANSFER_FINISHED:
            done = event.bytes_done
            total = max(done, 1)
            self._progress.update(task, completed=total, total=total, files=self._files(event))
        elif event.kind is EventKind.TRANSFER_FAILED:
            description = self._progress.tasks[task].description
            self._progress.update(task, description=f"[red]{description} (failed)[/red]")

    def _add(self, event: TransferEvent) -> TaskID:
        if event.files_total is None:
            self._trees.add(event.transfer_id)
        targets = ", ".join(str(d) for d in event.destinations)
        name = posixpath.basename(event.src_path) or event.src_path
        files = self._expected.get((event.source, event.src_path), (0, 1))[1]
        count = f" ({files} files)" if files != 1 else ""
        description = escape(printable(f"{name}{count}: {event.source} -> {targets}"))
        return self._progress.add_task(description, total=self._total(event), files="")

    def _files(self, event: TransferEvent) -> str:
        """``done/total files`` for a tree (the total announced, or final); else nothing."""
        if event.transfer_id not in self._trees:
            return ""  # a single file
        expected = self._expected.get((event.source, event.src_path))
        total = event.files_total
        if total is None and expected is not None:
            total = max(expected[1], event.files_done)
            if event.kind is EventKind.TRANSFER_FINISHED:
                return f"{total}/{total} files"  # copied where its files are not seen
        return (
            f"{event.files_done}/{total} files"
            if total is not None
            else f"{event.files_done} files"
        )

    def _total(self, event: TransferEvent) -> float | None:
        if event.bytes_total is not None:
            return event.bytes_total
        expected = self._expected.get((event.source, event.src_path))
        return float(max(expected[0], event.bytes_done)) if expected else None


@dataclass(frozen=True)
class ReplicaRow:
    """One line of a replica table.

    Attributes:
        deployment: The replica's deployment.
        location: The replica's location name.
        path: The replica's path.
        type: ``PRIMARY`` or ``SYMBOLIC_LINK``.
        available: True when its data is complete.
        size: Bytes (a tree: the sum of its files), None when unknown.
        note: Why the size is unknown, or "" .
    """

    deployment: str
    location: str
    path: str
    type: str
    available: bool
    size: int | None
    note: str = ""


async def tree_size(
    connector: Connector, location: ExecutionLocation, path: str
) -> tuple[int, int]:
    """The total size and number of regular files at ``path`` (a file or a tree).

    Raises:
        ConnectorError: If the location cannot be listed.
    """
    size = files = 0
    async for entry in connector.walk(location, path):
        if entry.kind is EntryKind.FILE:
            size, files = size + entry.size, files + 1
    return size, files


async def _describe(replica: DataLocation, connector: Connector | None) -> ReplicaRow:
    row = ReplicaRow(
        replica.deployment,
        replica.name,
        replica.path,
        replica.data_type.name,
        replica.is_available,
        None,
    )
    if connector is None:
        return _with(row, note="deployment not configured")
    try:
        async with asyncio.timeout(_STAT_TIMEOUT):
            entry = await connector.stat(replica.location, replica.path)
            if entry is None:
                return _with(row, note="absent")
            if entry.kind is EntryKind.DIRECTORY:
                size, _ = await tree_size(connector, replica.location, replica.path)
                return _with(row, size=size)
            return _with(row, size=entry.size)
    except (StreamDataError, TimeoutError) as exc:
        return _with(row, note=f"unreachable: {exc}".splitlines()[0])


def _with(row: ReplicaRow, **changes: Any) -> ReplicaRow:
    return ReplicaRow(**{**asdict(row), **changes})


async def describe_replicas(
    connectors: Mapping[str, Connector], replicas: Sequence[DataLocation]
) -> list[ReplicaRow]:
    """Rows for ``replicas``, sizes read from their locations concurrently."""
    ordered = sorted(replicas, key=lambda r: (r.deployment, r.name, r.path))
    return list(
        await asyncio.gather(*(_describe(r, connectors.get(r.deployment)) for r in ordered))
    )


def human_size(size: int | None) -> str:
    """``1.5 MiB`` style sizes; ``?`` when unknown."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def replica_table(rows: Iterable[ReplicaRow], title: str, *, base: str | None = None) -> Table:
    """A rich table: location, path, type, size, available.

    Args:
        rows: The replicas.
        title: The table's title.
        base: A directory whose prefix is left out of the paths shown.
    """
    table = Table(title=plain(title), title_justify="left")
    for column in ("location", "path", "type", "size", "available"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for row in rows:
        size = human_size(row.size) if row.size is not None else f"? ({row.note})"
        available = Text("yes", "green") if row.available else Text("no", "yellow")
        path = row.path
        if base is not None and path.startswith(base.rstrip("/") + "/"):
            path = path[len(base.rstrip("/")) + 1 :]
        cells = (f"{row.deployment}:{row.location}", path, row.type, size)
        table.add_row(*(plain(cell) for cell in cells), available)
    return table


def emit_json(console: Console, document: object) -> None:
    """Print ``document`` as JSON, with no markup or wrapping.

    Names are kept exact: JSON escapes control characters (``\\u001b``), and an
    undecodable byte, a lone surrogate in the :func:`os.fsdecode` form of the name, is
    written as that surrogate's escape (``\\udcff`` for the byte ``0xff``): Python's
    ``os.fsencode(json.loads(...))`` gives the original bytes back.
    """
    console.file.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
    console.file.flush()
