"""Source selection: which replica a transfer reads from.

The policy is a plain callable, so an engine can pass its own to the
:class:`~streamdata.DataManager`. The default follows the contract's tiers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Protocol

from ._models import DataLocation, ExecutionLocation

__all__ = ["SourcePolicy", "default_source_policy"]


class SourcePolicy(Protocol):
    """Chooses the replica to read from among valid, complete-or-pending PRIMARY candidates."""

    def __call__(
        self,
        candidates: Sequence[DataLocation],
        *,
        dst_deployment: str,
        is_local: Callable[[ExecutionLocation], bool],
        rng: random.Random,
    ) -> DataLocation | None:
        """Return the chosen candidate, or None to decline."""


def default_source_policy(
    candidates: Sequence[DataLocation],
    *,
    dst_deployment: str,
    is_local: Callable[[ExecutionLocation], bool],
    rng: random.Random,
) -> DataLocation | None:
    """Pick a source by the contract's tiers.

    (1) a replica on ``dst_deployment``; else (2) one on a local location; else (3) one
    chosen at random with ``rng``. Within a tier, replicas whose data is available win
    over ones still being written; the first such candidate wins in tiers 1 and 2.

    Args:
        candidates: Valid PRIMARY replicas of the data.
        dst_deployment: The deployment the data is going to.
        is_local: Tells whether a location sees this process's filesystem.
        rng: The random generator used by tier 3.

    Returns:
        The chosen replica, or None when there are no candidates.
    """
    tiers = (
        [c for c in candidates if c.deployment == dst_deployment],
        [c for c in candidates if is_local(c.location)],
        list(candidates),
    )
    for rank, tier in enumerate(tiers):
        if tier:
            ready = [c for c in tier if c.is_available] or tier
            return rng.choice(ready) if rank == 2 else ready[0]
    return None
