"""Exact copies within a replica set: what ``replicate`` fills and ``check`` repairs with.

Unlike ``transfer_data``, an exact copy applies no cp rules: the destination path is the
target itself, the destination is always a real copy (never a link), related to its
source, and the source is the one the policy picks among the set's PRIMARY replicas.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ._deployments import Deployments
from ._errors import StreamDataError, TransferError
from ._models import DataLocation, DataType, ExecutionLocation
from ._plan import TransferContext, TransferPlan, transfer_error
from ._policy import SourcePolicy
from ._run import stat_source
from ._transfer import Endpoint

__all__ = ["Replicator"]

_PRIMARY = DataType.PRIMARY


@dataclass(frozen=True, slots=True)
class Replicator:
    """Picks sources and makes exact copies, with its manager's state (passed in)."""

    context: TransferContext
    deployments: Deployments
    policy: SourcePolicy
    rng: random.Random
    verify: bool

    def pick_source(
        self, replicas: Sequence[DataLocation], dst_deployment: str
    ) -> DataLocation | None:
        """The PRIMARY replica among ``replicas`` the policy picks for ``dst_deployment``."""
        candidates = [r for r in replicas if r._data_type is _PRIMARY and not r._implied]
        return self.policy(
            candidates,
            dst_deployment=dst_deployment,
            is_local=self.deployments.is_local,
            rng=self.rng,
        )

    async def copy_exact(
        self, source: DataLocation, destination: ExecutionLocation, target: str
    ) -> None:
        """Copy ``source`` to exactly ``target`` on ``destination`` (no cp rules), related.

        Raises:
            ConfigurationError: If the manager is closed or a deployment is unknown.
            DataNotFoundError: If the source's data is gone.
            TransferError: If the copy failed.
        """
        connector = self.deployments.connector(source.location)
        entry = await stat_source(self.context.catalog, connector, source, [destination])
        endpoint = Endpoint(connector, source.location, source.path)
        transfer = TransferPlan(
            self.context, endpoint, source, entry, exact=True, verify=self.verify
        )
        failures = await transfer.run([destination], target)
        if failures:
            raise transfer_error(source.location, source.path, failures)

    async def fill(
        self,
        replicas: Sequence[DataLocation],
        destinations: Iterable[ExecutionLocation],
        target: str,
    ) -> tuple[dict[ExecutionLocation, DataLocation], dict[ExecutionLocation, BaseException]]:
        """Copy the data of ``replicas`` to ``target`` on each destination lacking it.

        Destinations already holding one of ``replicas`` at ``target`` are left alone; the
        others are copied to concurrently.

        Returns:
            The replica of each destination holding the data, and the cause of each
            destination that failed.
        """
        results: dict[ExecutionLocation, DataLocation] = {}
        failures: dict[ExecutionLocation, BaseException] = {}
        todo: list[ExecutionLocation] = []
        for destination in destinations:
            held = self.context.catalog.lookup(destination, target)
            if held is not None and held in replicas and not held._implied:
                results[destination] = held
            else:
                todo.append(destination)
        async with asyncio.TaskGroup() as group:
            for destination in todo:
                group.create_task(self._fill_one(replicas, destination, target, results, failures))
        return results, failures

    async def _fill_one(
        self,
        replicas: Sequence[DataLocation],
        destination: ExecutionLocation,
        target: str,
        results: dict[ExecutionLocation, DataLocation],
        failures: dict[ExecutionLocation, BaseException],
    ) -> None:
        source = self.pick_source(replicas, destination.deployment)
        assert source is not None
        try:
            await self.copy_exact(source, destination, target)
        except TransferError as exc:
            failures[destination] = exc.failures.get(destination, exc)
            return
        except StreamDataError as exc:
            failures[destination] = exc
            return
        replica = self.context.catalog.lookup(destination, target)
        assert replica is not None
        results[destination] = replica
