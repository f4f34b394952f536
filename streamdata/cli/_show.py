"""How the ``streamdata`` subcommands print their results: tables, lines or JSON."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from streamdata import CheckReport, ExecutionLocation

from . import _ops as ops
from ._catalog import Catalog
from ._errors import run
from ._output import ReplicaRow, emit_json, plain, printable, replica_table
from ._settings import Settings, stdout
from ._sites import Sites

__all__ = [
    "print_catalog",
    "print_copies",
    "print_replicated",
    "print_report",
    "print_rows",
    "print_sites",
    "row_record",
    "run_then_print",
    "site_rows",
]

_T = TypeVar("_T")


def site_rows(known: Sites) -> list[dict[str, Any]]:
    """One record per location of the sites file: its deployment, type and address."""
    rows = []
    for deployment in known.deployments.values():
        hosts = {host.location_name: host for host in deployment.hosts}
        for name in deployment.locations:
            host = hosts.get(name)
            rows.append(
                {
                    "deployment": deployment.name,
                    "type": deployment.kind,
                    "location": name,
                    "host": host.host if host else None,
                    "port": host.port if host else None,
                    "username": host.username if host else None,
                    "check_host_key": host.check_host_key if host else None,
                }
            )
    return rows


def print_sites(rows: Sequence[dict[str, Any]], source: str | None) -> None:
    from rich.table import Table
    from rich.text import Text

    title = plain(f"sites from {source or '(built-in defaults)'}")
    table = Table(title=title, title_justify="left")
    for column in ("deployment", "type", "location", "address", "host key"):
        table.add_column(column)
    for row in rows:
        address, key = "this machine", Text("-")
        if row["host"] is not None:
            user = f"{row['username']}@" if row["username"] else ""
            address = f"{user}{row['host']}:{row['port']}"
            key = Text("checked") if row["check_host_key"] else Text("NOT checked", "red")
        cells = (row["deployment"], row["type"], row["location"], address)
        table.add_row(*(plain(cell) for cell in cells), key)
    stdout().print(table)


def run_then_print(
    coroutine: Coroutine[Any, Any, _T],
    show: Callable[[_T, Mapping[ExecutionLocation, BaseException]], None],
) -> None:
    """Run an operation and show its result and failures, also when some destinations failed.

    Raises:
        PartlyFailed: After showing what was done, if some destinations failed.
    """
    try:
        result = run(coroutine)
    except ops.PartlyFailed as failed:
        show(failed.result, failed.failures)
        raise
    show(result, {})


def print_copies(settings: Settings, records: list[dict[str, Any]]) -> None:
    if settings.json:
        emit_json(stdout(), {"copies": records})
        return
    for record in records:
        source = record["source"]
        for destination in record["destinations"]:
            if not destination["ok"]:
                continue  # named by the error line
            verb = "linked" if destination["type"] == "SYMBOLIC_LINK" else "copied"
            stdout().print(
                printable(
                    f"{verb} {source['location']}:{source['path']} -> "
                    f"{destination['location']}:{destination['path']}"
                ),
                highlight=False,
                markup=False,
            )


def print_catalog(catalog: Catalog) -> None:
    """The line naming the catalog in use (a URL without its password)."""
    stdout().print(printable(catalog.describe()), highlight=False, markup=False)


def print_rows(
    settings: Settings, rows: Sequence[ReplicaRow], title: str, *, catalog: Catalog | None = None
) -> None:
    """Replicas as a table or JSON; with ``catalog``, the catalog they come from too."""
    if settings.json:
        document: dict[str, Any] = {"replicas": [row_record(row) for row in rows]}
        if catalog is not None:
            document["catalog"] = catalog.record()
        emit_json(stdout(), document)
        return
    stdout().print(replica_table(rows, title))
    if catalog is not None:
        print_catalog(catalog)


def row_record(row: ReplicaRow) -> dict[str, Any]:
    return {
        "location": f"{row.deployment}:{row.location}",
        "deployment": row.deployment,
        "name": row.location,
        "path": row.path,
        "type": row.type,
        "size": row.size,
        "available": row.available,
        "note": row.note,
    }


def print_report(report: CheckReport) -> None:
    out = stdout()
    out.print(
        printable(f"checked {report.path} on {report.location}"), highlight=False, markup=False
    )
    if report.dry_run:
        out.print("  dry run: nothing was changed; the lists say what would be", highlight=False)
    sections = (
        ("missing", report.missing),
        ("orphans", report.orphans),
        ("repaired", report.repaired),
        ("errors", [f"{p}: {r}" for p, r in report.errors]),
    )
    for title, items in sections:
        out.print(f"  {title}: {len(items)}", highlight=False)
        for item in items:
            out.print(f"    {printable(item)}", highlight=False, markup=False)


def print_replicated(
    settings: Settings,
    path: str,
    rows: Sequence[ReplicaRow],
    failures: Mapping[ExecutionLocation, BaseException],
) -> None:
    if not settings.json:
        print_rows(settings, rows, f"replicas of {path}")
        return
    failed = [{"location": str(where), "error": str(cause)} for where, cause in failures.items()]
    emit_json(stdout(), {"replicas": [row_record(row) for row in rows], "failures": failed})
