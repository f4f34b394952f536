"""Before / after: the chosen sections on two streamdata trees in one run, alternated.

``python benchmarks/run.py --before REF [--only SECTION ...] [--repeats K]`` checks REF
out into a temporary detached git worktree (removed at the end) and runs each section in
``K`` rounds. In a round the section runs once on each tree (``--repeats 1`` inside), the
two runs side by side in two threads whose worker processes take turns, one at a time:
before, after, after, before, ... (odd rounds start with the after tree). So every
measurement of one tree runs right next to the same measurement of the other, whether a
section makes one worker per measurement (catalog, durable) or one for all (local_copy,
ssh_transfer: there the alternation is per round). Both trees run the same benchmark
scripts, this checkout's; only the workers' ``PYTHONPATH`` points at one tree or the
other (the workers import streamdata by its public names, so they run on either layout).

Every number in the section's tables is a *quantity* (``row: column``); the comparison
table shows its median over the rounds of each tree, after / before, and after / before
round by round. Each target of the section is judged in every round, for both trees.
``run.py`` prints the tables and writes them into RESULTS.md between the markers of
:data:`KEY`, so a re-run replaces them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from _comparison import (
    KEY,
    TREES,
    Comparison,
    Round,
    Tree,
    notable,
    print_comparison,
    quantities,
    results_markdown,
)
from _harness import (
    REPO_ROOT,
    WORKER_GATE,
    Options,
    Section,
    SectionReport,
    git,
    load_average,
    progress,
    replace_block,
    streamdata_revision,
)

# -- running ------------------------------------------------------------------------------------


@contextlib.contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """``ref`` checked out (detached) in a temporary git worktree, removed on exit.

    Raises:
        subprocess.CalledProcessError: If git cannot check ``ref`` out.
    """
    path = Path(tempfile.mkdtemp(prefix="streamdata-before-"))
    path.rmdir()
    git(REPO_ROOT, "worktree", "add", "--detach", str(path), ref)
    try:
        yield path
    finally:
        with contextlib.suppress(Exception):
            git(REPO_ROOT, "worktree", "remove", "--force", str(path))
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(Exception):
            git(REPO_ROOT, "worktree", "prune")


class Turnstile:
    """Two section runs in lockstep: one worker process at a time, the trees taking turns.

    The k-th workers of the two runs go one right after the other, ``first``'s first for
    even k and second for odd k (first, second, second, first, ...). Both runs make the
    same workers in the same order, so each measurement of one tree runs next to the same
    measurement of the other. A run that has finished no longer holds the other up.
    """

    def __init__(self, first: str, second: str) -> None:
        self._cycle = (first, second, second, first)
        self._turn = 0
        self._finished: set[str] = set()
        self._condition = threading.Condition()

    @contextlib.contextmanager
    def turn(self, tree: str) -> Iterator[None]:
        """Wait for ``tree``'s turn; the next turn starts when the block exits."""
        with self._condition:
            while (owner := self._cycle[self._turn % 4]) != tree:
                if owner in self._finished:
                    self._turn += 1
                else:
                    self._condition.wait()
        progress(f"   worker {self._turn + 1}: {tree} tree")
        try:
            yield
        finally:
            with self._condition:
                self._turn += 1
                self._condition.notify_all()

    def finish(self, tree: str) -> None:
        """``tree``'s run makes no more workers."""
        with self._condition:
            self._finished.add(tree)
            self._condition.notify_all()


def run_in_turn(
    section: Section, options: Options, tree: Tree, turnstile: Turnstile
) -> SectionReport:
    """One run of ``section`` on ``tree`` (``--repeats 1``, no profiling), workers in turn."""
    WORKER_GATE.set(lambda: turnstile.turn(tree.label))
    try:
        return section.run(dataclasses.replace(options, tree=tree.path, repeats=1, profile=False))
    finally:
        turnstile.finish(tree.label)


def run_round(
    section: Section, options: Options, trees: dict[str, Tree], index: int
) -> list[Round]:
    """Round ``index``: the section on both trees side by side, workers alternating.

    Even rounds start with the before tree, odd ones with the after tree.
    """
    labels = TREES if index % 2 == 0 else TREES[::-1]
    turnstile = Turnstile(*labels)
    load, start = load_average(), time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            label: pool.submit(run_in_turn, section, options, trees[label], turnstile)
            for label in labels
        }
        reports = {label: future.result() for label, future in futures.items()}
    seconds, load_after = time.perf_counter() - start, load_average()
    return [
        Round(
            tree=label,
            index=index,
            quantities=quantities(reports[label]),
            targets=[(t.text, t.met, t.detail) for t in reports[label].targets],
            notes=notable(reports[label].notes),
            load=(load, load_after),
            seconds=seconds,
            first=labels[0],
        )
        for label in TREES
    ]


def compare_section(
    section: Section, options: Options, trees: dict[str, Tree], rounds: int
) -> Comparison:
    """Every round of ``section`` on both trees."""
    comparison = Comparison(section.key, section.title)
    for index in range(rounds):
        progress(f"== {section.key}: round {index + 1}/{rounds} ==")
        comparison.rounds.extend(run_round(section, options, trees, index))
    return comparison


def digest(revision: str) -> str:
    """The sources' digest in a revision string (the commit may move during a run)."""
    return revision.rsplit("sha256 ", 1)[-1]


def run_comparison(
    sections: list[Section], options: Options, ref: str, results: Path | None
) -> list[Comparison]:
    """Check ``ref`` out, run every section on both trees, print, write ``results``.

    Raises:
        SystemExit: If git cannot resolve ``ref`` to a commit.
        subprocess.CalledProcessError: If git cannot check it out.
    """
    rounds = options.repeats
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    try:
        commit = git(REPO_ROOT, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"--before {ref}: not a commit of {REPO_ROOT}") from exc
    with worktree(commit) as path:
        trees = {
            "before": Tree("before", path, f"{ref} = {streamdata_revision(path)}"),
            "after": Tree("after", REPO_ROOT, streamdata_revision(REPO_ROOT)),
        }
        for tree in trees.values():
            progress(f"{tree.label}: {tree.revision} ({tree.path})")
        comparisons = []
        for section in sections:
            comparison = compare_section(section, options, trees, rounds)
            print_comparison(comparison)
            comparisons.append(comparison)
    if digest(streamdata_revision(REPO_ROOT)) != digest(trees["after"].revision):
        progress("warning: streamdata's sources changed during the run")
        after = trees["after"]
        trees["after"] = Tree("after", after.path, f"{after.revision} (changed during the run)")
    if results is not None:
        block = results_markdown(comparisons, options.command, when, trees, rounds)
        document = results.read_text(encoding="utf-8") if results.exists() else ""
        document = replace_block(document, KEY, block).strip("\n") + "\n"
        results.write_text(document, encoding="utf-8")
        print(f"\nwrote {results}")
    return comparisons
