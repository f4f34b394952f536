"""Connectors: how streamdata reaches the storage of each kind of deployment."""

from ._base import Connector, Entry, EntryKind
from .local import LocalConnector

__all__ = ["Connector", "Entry", "EntryKind", "LocalConnector"]
