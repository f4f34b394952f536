"""``streamdata sites --probe``: whether each location of the sites file answers, and how fast.

Every location is probed at once (:meth:`streamdata.DataManager.probe`), each within the
timeout, by a manager that has no catalog: probing reads and writes no replica.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from streamdata import DataManager, Readiness

from ._sites import Sites

__all__ = ["print_probed", "probe_rows"]


async def probe_rows(
    known: Sites,
    rows: Sequence[dict[str, Any]],
    seconds: float,
) -> list[dict[str, Any]]:
    """``rows`` (one per location, see ``site_rows``) with each location's readiness.

    Adds ``state`` (``up``/``down``), ``round_trip`` (seconds, or None), ``error`` (or
    None) and ``checked_at`` (seconds since the epoch).
    """
    locations = [known.deployments[row["deployment"]].location(row["location"]) for row in rows]
    async with DataManager(known.connectors()) as manager, asyncio.TaskGroup() as group:
        tasks = [group.create_task(manager.probe(loc, timeout=seconds)) for loc in locations]
    return [row | _fields(task.result()) for row, task in zip(rows, tasks, strict=True)]


def _fields(readiness: Readiness) -> dict[str, Any]:
    return {
        "state": readiness.state.value,
        "round_trip": readiness.round_trip,
        "error": readiness.error,
        "checked_at": readiness.checked_at,
    }


def print_probed(rows: Sequence[dict[str, Any]], source: str | None) -> None:
    """Print the probed locations as a table: state, round trip, and why one is down."""
    from rich.table import Table
    from rich.text import Text

    from ._output import plain
    from ._settings import stdout

    title = plain(f"sites from {source or '(built-in defaults)'}, probed")
    table = Table(title=title, title_justify="left")
    for column in ("deployment", "location", "state", "round trip", "error"):
        table.add_column(column)
    for row in rows:
        up = row["state"] == "up"
        state = Text(row["state"], "green" if up else "red")
        trip = f"{row['round_trip'] * 1000:.1f} ms" if row["round_trip"] is not None else "-"
        cells = (row["deployment"], row["location"])
        error = plain(row["error"] or "")
        table.add_row(*(plain(cell) for cell in cells), state, trip, error)
    stdout().print(table)
