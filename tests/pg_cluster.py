"""The throwaway PostgreSQL cluster, kept for imports by this name: it lives in
:mod:`streamdata.testing._postgres`, shared by the tests and the benchmarks."""

from __future__ import annotations

from streamdata.testing._postgres import (
    TEST_SETTINGS,
    PostgresCluster,
    find_bindir,
    postgres_cluster,
)

__all__ = ["TEST_SETTINGS", "PostgresCluster", "find_bindir", "postgres_cluster"]
