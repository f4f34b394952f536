"""The replica catalog: the in-memory graph, its lineage and the stores that keep it."""
