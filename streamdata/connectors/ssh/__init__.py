"""The SSH connector: locations reached over SSH with asyncssh."""

from ._connector import SSHConnector, SSHHost

__all__ = ["SSHConnector", "SSHHost"]
