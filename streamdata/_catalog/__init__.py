"""The replica catalog: the in-memory graph, its lineage and the stores that keep it.

Layers, lowest first: ``store`` (the interface: rows in, rows out) with its SQLite
implementation (``sqlite``, ``sqlite_schema``, ``sqlite_load``, ``sqlite_feed``,
``owners``), which knows nothing of the catalog; ``sets``, ``lineage`` and ``core`` (the
in-memory state and its queries); ``restore`` and ``writers`` (the catalog restoring
itself from rows, and watching other processes' writes); ``mapper`` (the catalog's
changes, ``RemotePathMapper``); ``sync`` and ``batch`` (used by the manager).
"""
