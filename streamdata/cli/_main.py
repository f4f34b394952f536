"""The ``streamdata`` command: copy data between sites and keep the catalog true.

Subcommands::

    streamdata sites [--probe]                        the deployments of the sites file
    streamdata cp SRC... DST                          copy (DST may name several locations)
    streamdata ls PATH                                the replicas of PATH
    streamdata check LOCATION PATH [--repair]         audit a location against the catalog
    streamdata check LOCATION PATH --dry-run          what check would change, changing nothing
    streamdata replicate PATH LOCATION...             make every LOCATION hold PATH
    streamdata demo                                   everything above, on a throw-away setup

Addresses are ``/path`` (the built-in ``local`` deployment), ``DEPLOYMENT:/path`` (a
deployment with one location), ``DEPLOYMENT:LOCATION:/path``, or several locations for one
path: ``cluster:login1,cloud:/data``. Locations are ``DEPLOYMENT[:LOCATION]``. A
destination path ending in ``/`` means "into this directory" (made if missing), as in
rsync and scp: ``streamdata cp /x/file site:/y/out/`` makes ``/y/out/file``.

Options valid everywhere: ``--sites FILE`` (default ``./streamdata.toml``, else
``~/.config/streamdata/sites.toml``; see :mod:`streamdata.cli._sites` for its schema),
``--catalog FILE|URL`` (a SQLite file, default
``$XDG_DATA_HOME/streamdata/catalog.sqlite``, or a PostgreSQL database,
``postgresql://USER@HOST:PORT/DB``; also ``STREAMDATA_CATALOG``; see
:mod:`streamdata.cli._catalog`), ``--json``, ``--debug``. Exit codes: 0 success, 1 the
operation failed, 2 usage or configuration error (a catalog that cannot be opened
included), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM): either signal cancels the
running operation, whose cleanup (temporaries, helper processes) runs before the exit.
Errors are one line on standard error; a failed tool (``cp``, ``tar``, a remote shell)
is quoted by its most telling line, and ``--debug`` adds the traceback and all it said.

Names are data. In tables, lines and errors, control characters and bytes that are not
UTF-8 are shown escaped as ``ls -b`` shows them (``\\033``, ``\\n``, ``\\377``, a
backslash as ``\\\\``; see :func:`streamdata.cli._output.printable`), so no file name
can drive the terminal. ``--json`` keeps every name exact: a path is its
:func:`os.fsdecode` form, so an undecodable byte is a lone surrogate, which JSON writes as
its escape (``\\udcff`` for the byte ``0xff``); ``os.fsencode(json.loads(...))`` gives
the original bytes back.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

import click
from rich.console import Console

from . import _copy
from . import _ops as ops
from ._errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    Terminated,
    exit_code,
    first_leaf,
    logging_to_stderr,
    message,
    run,
    tool_output,
    wants_debug,
)
from ._output import emit_json
from ._probe import print_probed, probe_rows
from ._settings import Settings, default_catalog_path, global_options, stdout
from ._show import (
    print_catalog,
    print_copies,
    print_replicated,
    print_report,
    print_rows,
    print_sites,
    run_then_print,
    site_rows,
)
from ._sites import parse_address

__all__ = ["cli", "default_catalog_path", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@global_options
@click.version_option(package_name="streamdata", prog_name="streamdata")
def cli() -> None:
    """Copy data between local and SSH sites and keep a catalog of every replica."""


@cli.command()
@global_options
@click.option("--probe", is_flag=True, help="Ask each location whether it answers, and how fast.")
@click.option(
    "--timeout",
    default=3.0,
    type=click.FloatRange(0, min_open=True),
    help="Seconds each probe waits for an answer (with --probe).",
)
@click.pass_context
def sites(ctx: click.Context, probe: bool, timeout: float) -> None:
    """List the deployments and locations of the sites file, and the catalog in use.

    The catalog is shown as configured (kind, file or URL without its password, and
    whether --catalog, STREAMDATA_CATALOG or the default named it); it is not opened.
    With --probe, each location is probed: its state and round-trip time are shown.
    """
    settings = Settings.of(ctx)
    known = settings.load_sites()
    rows = site_rows(known)
    source = str(known.path) if known.path else None
    catalog = settings.catalog_in_use()
    if probe:
        rows = run(probe_rows(known, rows, timeout))
    if settings.json:
        emit_json(stdout(), {"sites_file": source, "locations": rows, "catalog": catalog.record()})
        return
    if probe:
        print_probed(rows, source)
    else:
        print_sites(rows, source)
    print_catalog(catalog)


@cli.command()
@global_options
@click.argument("paths", nargs=-1, required=True, metavar="SRC... DST")
@click.option(
    "--writable",
    is_flag=True,
    help="Make independent copies: never a link, not recorded as the same data.",
)
@click.pass_context
def cp(ctx: click.Context, paths: tuple[str, ...], writable: bool) -> None:
    """Copy SRC (one or more) to DST; DST may name several locations.

    Addresses: /path, DEPLOYMENT:/path, DEPLOYMENT:LOCATION:/path, or several
    locations for one path: DEP1:LOC1,DEP2:/path. A source unknown to the catalog is
    registered first. With several sources, or a DST ending in /, DST is a directory
    receiving each of them (made if missing).
    On the source's own location, or where a replica of the data already is, a symbolic
    link is made instead of a second copy (unless --writable). A destination that fails
    does not stop the others: they are copied, and the command exits 1 naming the failed
    ones (--json gives the outcome of every destination).
    """
    if len(paths) < 2:
        raise click.UsageError("cp needs at least one SRC and a DST", ctx)
    settings = Settings.of(ctx)
    known = settings.load_sites()
    sources = [parse_address(known, text) for text in paths[:-1]]
    target = parse_address(known, paths[-1])
    copying = _copy.copy(settings.session(known), sources, target, writable=writable)
    run_then_print(copying, lambda records, _: print_copies(settings, records))


@cli.command()
@global_options
@click.argument("path")
@click.pass_context
def ls(ctx: click.Context, path: str) -> None:
    """Show every replica of PATH: location, type, size and availability.

    The line after the table (and "catalog" in --json) names the catalog they come from.
    """
    settings = Settings.of(ctx)
    known = settings.load_sites()
    session = settings.session(known)
    rows = run(ops.list_replicas(session, path))
    print_rows(settings, rows, f"replicas of {path}", catalog=session.catalog)


@cli.command()
@global_options
@click.argument("location")
@click.argument("path")
@click.option("--repair", is_flag=True, help="Copy missing replicas back from another replica.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Report what would be invalidated (and repaired); change nothing.",
)
@click.option(
    "--max-missing",
    type=click.IntRange(min=0),
    default=None,
    help="Refuse to change anything if more replicas than this are missing.",
)
@click.pass_context
def check(
    ctx: click.Context,
    location: str,
    path: str,
    repair: bool,
    dry_run: bool,
    max_missing: int | None,
) -> None:
    """Compare the catalog with what is really under PATH on LOCATION.

    Missing or changed replicas are invalidated (and copied back with --repair, as are
    those an earlier check invalidated). With --dry-run, nothing is changed, neither the
    catalog nor the files: the report says what would be. Exits 1 when missing replicas
    remain (or would remain) unrepaired.
    """
    settings = Settings.of(ctx)
    known = settings.load_sites()
    where = known.resolve(location)
    session = settings.session(known)
    report = run(
        ops.check(session, where, path, repair=repair, max_missing=max_missing, dry_run=dry_run)
    )
    if settings.json:
        emit_json(stdout(), ops.report_record(report))
    else:
        print_report(report)
    unrepaired = set(report.missing) - set(report.repaired)
    if unrepaired or report.errors:
        raise click.exceptions.Exit(EXIT_FAILED)


@cli.command()
@global_options
@click.argument("path")
@click.argument("locations", nargs=-1, required=True)
@click.option(
    "--dst-path",
    default=None,
    help="Destination path (default: PATH); ending in /, a directory receiving PATH.",
)
@click.pass_context
def replicate(
    ctx: click.Context, path: str, locations: tuple[str, ...], dst_path: str | None
) -> None:
    """Make sure every LOCATION (DEPLOYMENT[:LOCATION]) holds a replica of PATH.

    A location that fails does not stop the others; the command then exits 1 naming it.
    """
    settings = Settings.of(ctx)
    known = settings.load_sites()
    targets = list(dict.fromkeys(known.resolve(spec) for spec in locations))
    replicating = ops.replicate(settings.session(known), path, targets, dst_path)
    run_then_print(replicating, lambda rows, failed: print_replicated(settings, path, rows, failed))


@cli.command()
@global_options
@click.option("--files", default=4, type=click.IntRange(1, 64), help="Files in the data set.")
@click.option("--size", default=8, type=click.IntRange(1, 256), help="Size of each file, in MiB.")
@click.pass_context
def demo(ctx: click.Context, files: int, size: int) -> None:
    """Run a throw-away multi-site demo: an in-process SSH server, two SSH sites, one local.

    Nothing is installed or left behind: the server listens on 127.0.0.1 only, and the
    data set and the catalog live in a temporary directory (--catalog is not used).
    """
    from ._demo import run_demo

    settings = Settings.of(ctx)
    err = Console(stderr=True)
    run(run_demo(stdout(), err, files=files, size=size << 20, json_output=settings.json))


def main(args: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it).

    Args:
        args: The arguments (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 1 if the operation failed, 2 on a usage or configuration error, 130
        if interrupted (Ctrl-C), 143 if terminated (SIGTERM).
    """
    argv = list(sys.argv[1:] if args is None else args)
    debug = wants_debug(argv)
    with logging_to_stderr(debug):
        return _main(argv, debug)


def _main(argv: list[str], debug: bool) -> int:
    try:
        status = cli.main(argv, prog_name="streamdata", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as bare:
        click.echo(bare.format_message())  # no subcommand: the help, on standard output
        return EXIT_USAGE
    except click.exceptions.Exit as done:
        return done.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("streamdata: interrupted", err=True)
        return EXIT_INTERRUPTED
    except Terminated:
        click.echo("streamdata: terminated", err=True)
        return EXIT_TERMINATED
    except Exception as error:
        if debug:
            traceback.print_exc()
            for text in tool_output(error):
                click.echo(f"streamdata: {text}", err=True)
        click.echo(f"streamdata: error: {message(error)}", err=True)
        return exit_code(first_leaf(error))
    return status if isinstance(status, int) else EXIT_OK
