"""The before / after comparison's values and tables (for ``compare.py``).

A section's run on one tree becomes a :class:`Round`: every number of its tables as a
*quantity* (``row: column`` -> value and unit, parsed from the cells), its targets and
the notes that report a failure. :class:`Comparison` holds the rounds of both trees and
this module turns them into the tables ``run.py --before`` prints and writes.
"""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from _harness import (
    SectionReport,
    machine_info,
    markdown_table,
)

KEY = "issue13-before-after"
TITLE = "Issue 13 (one engine, catalog owns its state): before / after"
TREES = ("before", "after")
_NUMBER = re.compile(r"^\s*(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)\s*([^\s(]*)")


@dataclass(frozen=True)
class Tree:
    """One streamdata tree under comparison."""

    label: str  # "before" or "after"
    path: Path
    revision: str


@dataclass(frozen=True)
class Round:
    """One tree's run of a section in one round: its numbers, targets and notes."""

    tree: str
    index: int
    quantities: dict[str, tuple[float, str]]  # name -> (value, unit)
    targets: list[tuple[str, bool | None, str]]  # (text, met, detail)
    notes: list[str]
    load: tuple[str, str]  # of the round (both trees), before / after
    seconds: float  # of the round (both trees)
    first: str  # the tree whose worker went first


@dataclass
class Comparison:
    """All rounds of one section on both trees."""

    key: str
    title: str
    rounds: list[Round] = field(default_factory=list)

    def of(self, tree: str) -> list[Round]:
        """The rounds of ``tree``, in the order they ran."""
        return [one for one in self.rounds if one.tree == tree]


# -- numbers out of a section's tables ---------------------------------------------------------


def parse_number(cell: str) -> tuple[float, str] | None:
    """The leading number of a table cell and the unit right after it, if it starts with one.

    ``"2,222 MB/s (0.483 s)"`` -> ``(2222.0, "MB/s")``; ``"1.46x"`` -> ``(1.46, "x")``.
    """
    match = _NUMBER.match(str(cell).replace("\\|", "|"))
    if match is None:
        return None
    return float(match.group(1).replace(",", "")), match.group(2)


def key_columns(header: list[str], rows: list[list[str]]) -> int:
    """How many leading columns name a row: the first, then every column holding text."""
    count = 1
    while count < len(header) and any(
        str(row[count]).strip() and parse_number(row[count]) is None for row in rows
    ):
        count += 1
    return count


def quantities(report: SectionReport) -> dict[str, tuple[float, str]]:
    """Every number in the section's tables, named ``row label: column``."""
    found: dict[str, tuple[float, str]] = {}
    for header, rows in report.tables:
        keys = key_columns(header, rows)
        for row in rows:
            label = " · ".join(str(cell) for cell in row[:keys])
            for column, cell in zip(header[keys:], row[keys:], strict=True):
                parsed = parse_number(cell)
                if parsed is not None:
                    found[f"{label}: {column}"] = parsed
    return found


def notable(notes: list[str]) -> list[str]:
    """The notes worth repeating in the comparison: failures and skipped measurements."""
    words = ("failed", "skipped", "not found", "not measured", "exited", "differs", "timed out")
    return [note for note in notes if any(word in note.lower() for word in words)]


# -- tables ---------------------------------------------------------------------------------------


def format_value(value: float, unit: str) -> str:
    """A number the way the section tables write it, with its unit."""
    if unit == "x":
        return f"{value:.2f}x"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}" if value else "0"
    return f"{text} {unit}".strip()


def quantity_rows(comparison: Comparison) -> list[list[str]]:
    """One row per quantity: medians per tree, after / before, and per round."""
    before, after = comparison.of("before"), comparison.of("after")
    names = list(dict.fromkeys(name for one in comparison.rounds for name in one.quantities))
    rows = []
    for name in names:
        medians: list[float | None] = []
        unit = ""
        for rounds in (before, after):
            values = [one.quantities[name][0] for one in rounds if name in one.quantities]
            unit = next((one.quantities[name][1] for one in rounds if name in one.quantities), unit)
            medians.append(statistics.median(values) if values else None)
        pairs = [
            b.quantities[name][0] and a.quantities[name][0] / b.quantities[name][0]
            for b, a in zip(before, after, strict=False)
            if name in b.quantities and name in a.quantities
        ]
        low, high = medians
        rows.append(
            [
                name,
                "n/a" if low is None else format_value(low, unit),
                "n/a" if high is None else format_value(high, unit),
                f"{high / low:.2f}x" if low and high is not None else "n/a",
                ", ".join(f"{pair:.2f}" for pair in pairs) if len(pairs) > 1 else "",
            ]
        )
    return rows


def verdict(results: list[tuple[bool | None, str]]) -> str:
    """PASS / MISS / n/a over the rounds (with a count when they disagree) and the details."""
    judged = [met for met, _ in results if met is not None]
    if not judged:
        word = "n/a"
    elif all(judged):
        word = "PASS"
    elif not any(judged):
        word = "MISS"
    else:
        word = f"PASS {sum(judged)}/{len(judged)}"
    details = "; ".join(detail.split(" (")[0] for _, detail in results if detail)
    return f"{word} ({details})" if details else word


def target_rows(comparison: Comparison) -> list[list[str]]:
    """One row per target: its verdict on each tree over the rounds."""
    texts = list(dict.fromkeys(text for one in comparison.rounds for text, _, _ in one.targets))
    rows = []
    for text in texts:
        cells = [text]
        for tree in TREES:
            results = [
                (met, detail)
                for one in comparison.of(tree)
                for target, met, detail in one.targets
                if target == text
            ]
            cells.append(verdict(results))
        rows.append(cells)
    return rows


QUANTITY_HEADER = ["quantity", "before (median)", "after (median)", "after / before", "per round"]
TARGET_HEADER = ["target (RESULTS.md)", "before", "after"]


def round_rows(comparison: Comparison) -> list[list[str]]:
    """How each round ran: which tree went first, load average before / after, duration."""
    return [
        [f"{one.index + 1}", one.first, f"{one.load[0]} / {one.load[1]}", f"{one.seconds:.0f} s"]
        for one in comparison.of("before")
    ]


ROUND_HEADER = ["round", "first", "1-min load before / after", "duration (both trees)"]


def print_comparison(comparison: Comparison) -> None:
    """The section's comparison on stdout."""
    print(f"\n== before / after: {comparison.title} ==")
    print(markdown_table(QUANTITY_HEADER, quantity_rows(comparison)))
    if any(one.targets for one in comparison.rounds):
        print()
        print(markdown_table(TARGET_HEADER, target_rows(comparison)))
    print()
    print(markdown_table(ROUND_HEADER, round_rows(comparison)))
    for one in comparison.rounds:
        for note in one.notes:
            print(f"  note ({one.tree}, round {one.index + 1}): {note}")


# -- RESULTS.md -------------------------------------------------------------------------------


METHOD = (
    "Each section ran in {rounds} round(s). In a round the section ran once on each tree "
    "(`--repeats 1` inside, no cProfile of misses), the two runs side by side with their "
    "worker processes taking turns one at a time: before, after, after, before, ... (odd "
    "rounds start with after). catalog and durable make one worker per measurement, so "
    "each measurement ran next to its twin; local_copy and ssh_transfer make one worker "
    "for the whole section, alternated per round. Both trees ran this checkout's benchmark "
    "scripts; only the workers' `PYTHONPATH` differed (the before tree is a temporary "
    "`git worktree add --detach`). "
    "A quantity is one number of the section's tables (row: column); its median over the "
    "rounds of each tree is shown, then after / before of the medians, then after / before "
    "of each pair of rounds that ran side by side. A target shows PASS or MISS over every "
    "round of that tree (PASS k/n when rounds disagree) and what each round measured. "
    "The baselines' rows (StreamFlow, `cp -a`, `scp`, `find`, `sha256sum`, ...) run the "
    "same code for both trees: their after / before shows how noisy the run was."
)


def comparison_markdown(comparison: Comparison) -> str:
    """One section's before / after tables for RESULTS.md."""
    parts = [
        f"### {comparison.title}",
        markdown_table(QUANTITY_HEADER, quantity_rows(comparison)),
    ]
    if any(one.targets for one in comparison.rounds):
        parts.append(markdown_table(TARGET_HEADER, target_rows(comparison)))
    parts.append(markdown_table(ROUND_HEADER, round_rows(comparison)))
    notes = [
        f"- {one.tree}, round {one.index + 1}: {note}"
        for one in comparison.rounds
        for note in one.notes
    ]
    if notes:
        parts.append("\n".join(notes))
    return "\n\n".join(parts)


def results_markdown(
    comparisons: list[Comparison], command: str, when: str, trees: dict[str, Tree], rounds: int
) -> str:
    """The whole before / after block: provenance, method, one part per section, raw."""
    machine = ", ".join(f"{key}: {value}" for key, value in machine_info().items())
    parts = [
        f"## {TITLE}",
        f"Command: `{command}`  \nDate: {when}  \n"
        f"before: {trees['before'].revision}  \nafter: {trees['after'].revision}  \n"
        f"Machine: {machine}",
        METHOD.format(rounds=rounds),
        *(comparison_markdown(comparison) for comparison in comparisons),
    ]
    records = [
        {"section": comparison.key, **dataclasses.asdict(one)}
        for comparison in comparisons
        for one in comparison.rounds
    ]
    raw = "\n".join(json.dumps(record, sort_keys=True) for record in records)
    parts.append(f"<details><summary>raw rounds</summary>\n\n```json\n{raw}\n```\n</details>")
    return "\n\n".join(parts)
