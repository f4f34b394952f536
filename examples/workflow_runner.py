"""A tiny workflow runner that embeds the DataManager to stage step inputs.

Each step declares the paths it reads and writes and the location it runs on. Before a
step runs, the runner asks the catalog where each input is and transfers it to the step's
location (a link when it is already there); after the step, it registers the outputs.

    python examples/workflow_runner.py
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from streamdata import DataManager, ExecutionLocation, LocalConnector


@dataclass(frozen=True)
class Step:
    """A unit of work: reads ``inputs`` and writes ``outputs`` (logical names) on ``location``."""

    name: str
    location: ExecutionLocation
    inputs: Sequence[str]
    outputs: Sequence[str]
    run: Callable[[Path, Sequence[Path], Sequence[Path]], None]


class Runner:
    """Runs steps in order, staging inputs with a DataManager.

    Steps name their data by logical names; the runner remembers where each name was
    first produced, and the catalog knows every replica of that path.
    """

    def __init__(self, manager: DataManager, workdirs: dict[str, Path]) -> None:
        self.manager = manager
        self.workdirs = workdirs
        self.produced: dict[str, str] = {}

    def provide(self, name: str, location: ExecutionLocation, path: Path) -> None:
        """Declare an initial input ``name`` present at ``path`` on ``location``."""
        self.manager.register_path(location, str(path))
        self.produced[name] = str(path)

    async def stage(self, step: Step) -> list[Path]:
        """Bring every input of ``step`` to its location; return the paths there."""
        workdir = self.workdirs[step.location.deployment]
        staged = []
        for name in step.inputs:
            path = self.produced[name]
            source = self.manager.get_source_location(path, step.location.deployment)
            if source is None:
                raise RuntimeError(f"step {step.name}: no replica of {name}")
            target = workdir / Path(path).name
            if source.location != step.location or source.path != str(target):
                await self.manager.transfer_data(
                    source.location, source.path, [step.location], str(target)
                )
            staged.append(target)
        return staged

    async def run(self, steps: Sequence[Step]) -> None:
        """Stage, run and register the outputs of each step."""
        for step in steps:
            inputs = await self.stage(step)
            workdir = self.workdirs[step.location.deployment]
            outputs = [workdir / name for name in step.outputs]
            step.run(workdir, inputs, outputs)
            for name, produced in zip(step.outputs, outputs, strict=True):
                self.provide(name, step.location, produced)
            print(f"step {step.name} on {step.location.deployment}: done")


def count_words(workdir: Path, inputs: Sequence[Path], outputs: Sequence[Path]) -> None:
    """Count the words of the input file."""
    words = inputs[0].read_text().split()
    outputs[0].write_text(f"{len(words)}\n")


def report(workdir: Path, inputs: Sequence[Path], outputs: Sequence[Path]) -> None:
    """Write a report from the count."""
    outputs[0].write_text(f"the text has {inputs[0].read_text().strip()} words\n")


async def main(root: Path) -> str:
    """Run a two-step workflow across two sites and return the final report."""
    sites = {name: ExecutionLocation(name, name) for name in ("laptop", "hpc")}
    workdirs = {name: root / name for name in sites}
    for directory in workdirs.values():
        directory.mkdir()
    (workdirs["laptop"] / "text.txt").write_text("to be or not to be\n")
    async with DataManager({name: LocalConnector() for name in sites}) as manager:
        runner = Runner(manager, workdirs)
        runner.provide("text.txt", sites["laptop"], workdirs["laptop"] / "text.txt")
        await runner.run(
            [
                Step("count", sites["hpc"], ["text.txt"], ["count.txt"], count_words),
                Step("report", sites["laptop"], ["count.txt"], ["report.txt"], report),
            ]
        )
        return (workdirs["laptop"] / "report.txt").read_text()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="streamdata-workflow-") as directory:
        print(asyncio.run(main(Path(directory))), end="")
