"""Run every benchmark section, print the comparison tables and update RESULTS.md.

    python benchmarks/run.py            # full run (about 25 minutes on 2 cores)
    python benchmarks/run.py --quick    # smoke test with small sizes; RESULTS.md untouched
    python benchmarks/run.py --before a6041b5 --only catalog   # before / after (compare.py)

Each section is a module of ``benchmarks/`` exposing ``SECTION`` (see ``_harness.py``);
add a module name to :data:`SECTION_MODULES` to add a section. In RESULTS.md every
section sits between ``<!-- section:KEY -->`` markers and is replaced only when that
section runs again, so ``--only`` updates one section and keeps the others.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import shlex
import sys
from pathlib import Path

import compare
from _harness import (
    BENCHMARKS_DIR,
    Options,
    Section,
    SectionReport,
    load_average,
    machine_info,
    markdown_table,
    print_report,
    progress,
    replace_block,
    streamdata_revision,
)

#: Benchmark sections, in the order they run.
SECTION_MODULES = ("catalog", "local_copy", "ssh_transfer", "durable", "shared_catalog", "wan")
DEFAULT_STREAMFLOW_PYTHON = "/work/sfvenv/bin/python"
RESULTS = BENCHMARKS_DIR / "RESULTS.md"

TITLE = "# streamdata benchmark results"
PREAMBLE = """\
Written by `benchmarks/run.py` (see `benchmarks/README.md`); each section below is
replaced when it is run again, so edit the code, not this file.

Targets (issue 2, acceptance point 5):

- catalog, at 10^5 paths: at least 3x StreamFlow's `DefaultDataManager` rate on every
  operation (`register_path` + `register_relation`, `get_data_locations`,
  `get_source_location`, `invalidate_location`), and at most 0.5x its memory per replica;
- local copies (one 1 GiB file, 10,000 files of 4 KiB, 1,000 files of 1 MiB): at least
  0.8x the throughput of `cp -a` in the same run.
"""


def load_sections(keys: list[str]) -> list[Section]:
    """The SECTION of each named module, in the order given."""
    return [importlib.import_module(key).SECTION for key in keys]


def section_markdown(report: SectionReport, command: str, when: str, revision: str) -> str:
    """One section of RESULTS.md: provenance, tables, targets, notes, raw records."""
    machine = ", ".join(f"{key}: {value}" for key, value in machine_info().items())
    parts = [
        f"## {report.title}",
        f"Command: `{command}`  \nDate: {when}  \nstreamdata: {revision}  \nMachine: {machine}",
    ]
    parts.extend(markdown_table(header, rows) for header, rows in report.tables)
    if report.targets:
        rows = [[target.text, target.detail, target.verdict] for target in report.targets]
        parts.append(markdown_table(["target", "measured", "verdict"], rows))
    if report.notes:
        parts.append("\n".join(f"- {note}" for note in report.notes))
    for heading, header, rows in report.appendix:
        parts.extend([f"### {heading}", markdown_table(header, rows)])
    if report.raw:
        records = "\n".join(json.dumps(record, sort_keys=True) for record in report.raw)
        parts.append(
            f"<details><summary>raw records</summary>\n\n```json\n{records}\n```\n</details>"
        )
    return "\n\n".join(parts)


def header_markdown(command: str, when: str, revision: str) -> str:
    """The block describing the latest run and the machine it ran on."""
    lines = [f"## Latest run\n\nCommand: `{command}`  \nDate: {when}  \nstreamdata: {revision}\n"]
    lines.append(markdown_table(["machine", ""], [[k, v] for k, v in machine_info().items()]))
    return "\n".join(lines)


def update_results(
    path: Path, reports: list[SectionReport], command: str, when: str, revision: str
) -> None:
    """Rewrite the header and the sections that ran; keep the other sections."""
    document = path.read_text(encoding="utf-8") if path.exists() else ""
    if not document.startswith(TITLE):
        document = f"{TITLE}\n\n{PREAMBLE}"
    document = replace_block(document, "header", header_markdown(command, when, revision))
    for report in reports:
        body = section_markdown(report, command, when, revision)
        document = replace_block(document, report.key, body)
    path.write_text(document.rstrip("\n") + "\n", encoding="utf-8")


def _digest(revision: str) -> str:
    """The source digest part of a revision string (the git commit may move meanwhile)."""
    return revision.rsplit("sha256 ", 1)[-1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="Run the streamdata benchmarks.")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, one run each (smoke test)"
    )
    parser.add_argument(
        "--streamflow-python",
        default=os.environ.get("STREAMFLOW_PYTHON", DEFAULT_STREAMFLOW_PYTHON),
        help="interpreter of a virtualenv with `pip install --pre streamflow` "
        f"(default: $STREAMFLOW_PYTHON or {DEFAULT_STREAMFLOW_PYTHON})",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        help="fresh processes per catalog size below 10^6, median taken (default 3); "
        "with --before: rounds per tree (default 3, 1 with --quick)",
    )
    parser.add_argument(
        "--before",
        metavar="REF",
        help="also run the sections on git REF (a temporary worktree), alternating with "
        "this checkout, and print / write before-after tables instead (see compare.py)",
    )
    parser.add_argument(
        "--only", action="append", choices=SECTION_MODULES, help="run only this section"
    )
    parser.add_argument(
        "--ssh-cases",
        default="a,b,c,d",
        help="the ssh_transfer cases to run, comma-separated (default a,b,c,d)",
    )
    parser.add_argument(
        "--shared-parts",
        default="registration,lookup,reopen,feed",
        help="the shared_catalog parts to run, comma-separated (default: all four)",
    )
    parser.add_argument(
        "--wan-cases", default="", help="the wan cases to run, comma-separated (default all)"
    )
    parser.add_argument(
        "--wan-rtts", default="", help="the wan round-trip times in ms, comma-separated"
    )
    parser.add_argument(
        "--results",
        type=Path,
        help=f"markdown file to update (default {RESULTS.name}; not written with --quick)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the selected sections, print their tables, update the results file."""
    args = parse_args(argv)
    command = shlex.join(["python", *sys.argv]) if argv is None else shlex.join(argv)
    if args.quick and not args.before:
        repeats = 1  # a smoke test
    else:
        repeats = max(1, args.repeats or (1 if args.quick else 3))
    options = Options(
        quick=args.quick,
        streamflow_python=args.streamflow_python,
        repeats=repeats,
        command=command,
        ssh_cases=args.ssh_cases,
        shared_parts=args.shared_parts,
        wan_cases=args.wan_cases,
        wan_rtts=args.wan_rtts,
    )
    results = args.results or (None if args.quick else RESULTS)
    if args.before:
        sections = load_sections(args.only or list(SECTION_MODULES))
        compare.run_comparison(sections, options, args.before, results)
        return
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    revision = streamdata_revision()
    progress(f"streamdata {revision}")
    reports = []
    for section in load_sections(args.only or list(SECTION_MODULES)):
        before = load_average()
        report = section.run(options)
        report.notes.append(
            f"1-minute load average before / after this section: {before} / {load_average()} "
            f"on {os.cpu_count()} CPUs (other work on the machine disturbs the timings)."
        )
        reports.append(report)
        print_report(report)
    if results is not None:
        if _digest(streamdata_revision()) != _digest(revision):
            progress("warning: streamdata's sources changed during the run")
            revision += " (sources changed during the run)"
        update_results(results, reports, command, when, revision)
        print(f"\nwrote {results}")


if __name__ == "__main__":
    main()
