"""streamdata: a replica catalog and fast, safe data movement for workflow engines.

Where is this data? The :class:`DataManager` keeps a catalog of every replica of every
path on every location. How does it get there? :meth:`DataManager.transfer_data` picks
the best source and copies over a local or SSH connector, atomically.
"""

from ._check import CheckReport
from ._errors import (
    ConfigurationError,
    ConnectorError,
    ConsistencyError,
    DataNotFoundError,
    StreamDataError,
    TransferError,
)
from ._events import EventKind, ReplicaEvent, TransferEvent
from ._manager import DataManager
from ._models import DataLocation, DataType, ExecutionLocation
from ._policy import SourcePolicy, default_source_policy
from .connectors import Connector, LocalConnector
from .connectors.ssh import SSHConnector, SSHHost

__version__ = "0.1.0"

__all__ = [
    "CheckReport",
    "ConfigurationError",
    "Connector",
    "ConnectorError",
    "ConsistencyError",
    "DataLocation",
    "DataManager",
    "DataNotFoundError",
    "DataType",
    "EventKind",
    "ExecutionLocation",
    "LocalConnector",
    "ReplicaEvent",
    "SSHConnector",
    "SSHHost",
    "SourcePolicy",
    "StreamDataError",
    "TransferError",
    "TransferEvent",
    "__version__",
    "default_source_policy",
]
