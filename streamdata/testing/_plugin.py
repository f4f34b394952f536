"""The pytest plugin that installing streamdata registers (``pytest11`` entry point).

It defines the fixtures documented in :mod:`streamdata.testing` and nothing else: no
hooks, options or markers. Loading it imports only pytest, pytest-asyncio (already loaded
by pytest when installed) and this module; the library, asyncssh and the SSH server are
imported when a test first asks for one of the fixtures. So a project that has
streamdata installed but does not use the fixtures pays nothing at start-up and sees no
warning from streamdata's dependencies, however strict its ``filterwarnings``.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from streamdata import DataManager

    from ._kit import SSHLocation
    from ._servers import AsyncSSHTestServer

__all__ = ["data_manager", "ssh_location", "ssh_server"]


def _async_fixture(function: Callable[..., Any]) -> Any:
    """``pytest_asyncio.fixture``; without pytest-asyncio, a fixture that says it is needed.

    Loading the plugin never breaks a pytest run that does not use these fixtures.
    """
    try:
        pytest_asyncio = importlib.import_module("pytest_asyncio")
    except ImportError:

        @pytest.fixture(name=function.__name__)
        def missing() -> None:
            pytest.fail("the streamdata fixtures need pytest-asyncio: pip install pytest-asyncio")

        return missing
    function.__module__ = "streamdata.testing"  # the fixtures' public home
    return pytest_asyncio.fixture(function)


@_async_fixture
async def ssh_server() -> AsyncIterator[AsyncSSHTestServer]:
    """An in-process SSH server on ``127.0.0.1`` and a free port, with generated keys.

    Yields:
        The running server; it stops after the test.
    """
    from ._servers import open_ssh_server

    async with open_ssh_server() as server:
        yield server


@_async_fixture
async def ssh_location(
    ssh_server: AsyncSSHTestServer, tmp_path: Path
) -> AsyncIterator[SSHLocation]:
    """A location on ``ssh_server`` with its connector and an empty working directory.

    Yields:
        The location; its connector is closed after the test.
    """
    from ._kit import open_ssh_location

    workdir = tmp_path / "ssh-workdir"
    workdir.mkdir()
    async with open_ssh_location(ssh_server, workdir) as location:
        yield location


@_async_fixture
async def data_manager(ssh_location: SSHLocation) -> AsyncIterator[DataManager]:
    """A DataManager with the local deployment and the SSH deployment of ``ssh_location``.

    Yields:
        The manager (in-memory catalog); closed after the test.
    """
    from ._kit import open_data_manager

    async with open_data_manager(ssh_location) as manager:
        yield manager
