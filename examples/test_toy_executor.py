"""A toy workflow executor, tested with nothing but streamdata's pytest plugin.

The executor runs one *step* on an SSH location: it stages the step's inputs there with
the DataManager, runs the step's shell command in a working directory over SSH, registers
the outputs it produced and copies them back to where the caller wants them.

The tests use only the plugin's fixtures (``data_manager``, ``ssh_location``; pytest's
``tmp_path``), against a real SSH server running in the test process.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from streamdata import DataManager, DataNotFoundError, ExecutionLocation, SSHHost
from streamdata.testing import LOCAL_LOCATION, SSHLocation


class StepFailedError(Exception):
    """The step's command exited with a non-zero status."""


@dataclass(frozen=True)
class Step:
    """A command run on a location with named input files and output files.

    Attributes:
        command: A shell command, run in the step's working directory.
        inputs: Input file name in the working directory -> the data's catalog path.
        outputs: File names the command writes in the working directory.
    """

    command: str
    inputs: Mapping[str, str]
    outputs: Sequence[str]


class ToyExecutor:
    """Runs steps on one SSH location; stages data with a DataManager.

    Args:
        manager: The data manager (knows every replica).
        location: Where steps run.
        host: How to reach that location to run commands.
        workdir: The directory the steps run in on that location.
    """

    def __init__(
        self, manager: DataManager, location: ExecutionLocation, host: SSHHost, workdir: str
    ) -> None:
        self.manager = manager
        self.location = location
        self.host = host
        self.workdir = workdir

    async def stage(self, step: Step) -> None:
        """Copy each input to the working directory, from the best known replica."""
        for name, path in step.inputs.items():
            source = self.manager.get_source_location(path, self.location.deployment)
            if source is None:
                raise DataNotFoundError(f"no replica of the input {path!r}")
            await self.manager.transfer_data(
                source.location, source.path, [self.location], posixpath.join(self.workdir, name)
            )

    async def execute(self, command: str) -> asyncssh.SSHCompletedProcess:
        """Run ``command`` in the working directory over SSH."""
        async with asyncssh.connect(
            self.host.host,
            port=self.host.port,
            username=self.host.username,
            client_keys=list(self.host.client_keys),
            known_hosts=self.host.known_hosts,
        ) as connection:
            return await connection.run(f"cd {shlex.quote(self.workdir)} && {command}")

    async def run(self, step: Step, collect_to: ExecutionLocation, collect_dir: str) -> list[str]:
        """Stage, execute, register the outputs, and copy them to ``collect_dir``.

        Returns:
            The paths of the collected outputs.

        Raises:
            StepFailedError: If the command fails; nothing is collected.
        """
        await self.stage(step)
        result = await self.execute(step.command)
        if result.exit_status != 0:
            raise StepFailedError(f"exit status {result.exit_status}: {result.stderr!r}")
        collected = []
        for name in step.outputs:
            produced = posixpath.join(self.workdir, name)
            self.manager.register_path(self.location, produced)
            target = posixpath.join(collect_dir, name)
            await self.manager.transfer_data(self.location, produced, [collect_to], target)
            collected.append(target)
        return collected


def _executor(manager: DataManager, where: SSHLocation) -> ToyExecutor:
    return ToyExecutor(manager, where.location, where.host, str(where.workdir))


async def test_step_stages_runs_and_collects(
    data_manager: DataManager, ssh_location: SSHLocation, tmp_path: Path
) -> None:
    """A word-count step runs over SSH on the staged input; its output comes back."""
    text = tmp_path / "text.txt"
    text.write_text("to be or not to be\n")
    data_manager.register_path(LOCAL_LOCATION, str(text))
    step = Step("wc -w < in.txt > count.txt", {"in.txt": str(text)}, ["count.txt"])
    results = tmp_path / "results"
    collected = await _executor(data_manager, ssh_location).run(step, LOCAL_LOCATION, str(results))
    assert collected == [str(results / "count.txt")]
    assert (results / "count.txt").read_text().strip() == "6"
    staged = data_manager.get_data_locations(str(text), deployment=ssh_location.deployment)
    assert [r.path for r in staged] == [ssh_location.path("in.txt")]


async def test_failing_step_collects_nothing(
    data_manager: DataManager, ssh_location: SSHLocation, tmp_path: Path
) -> None:
    """A command exiting non-zero raises StepFailedError with its stderr; nothing comes back."""
    step = Step("echo broken >&2; exit 3", {}, ["never.txt"])
    with pytest.raises(StepFailedError, match=r"exit status 3.*broken"):
        await _executor(data_manager, ssh_location).run(step, LOCAL_LOCATION, str(tmp_path))
    assert not (tmp_path / "never.txt").exists()


async def test_unknown_input_fails_before_running(
    data_manager: DataManager, ssh_location: SSHLocation, tmp_path: Path
) -> None:
    """An input the catalog does not know stops the step before its command runs."""
    marker = ssh_location.path("ran")
    step = Step(f"touch {shlex.quote(marker)}", {"in": str(tmp_path / "nowhere")}, [])
    with pytest.raises(DataNotFoundError):
        await _executor(data_manager, ssh_location).run(step, LOCAL_LOCATION, str(tmp_path))
    assert not Path(marker).exists()
