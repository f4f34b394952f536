"""The delay line of the test kit: latency added, throughput kept, bytes counted, cuts."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from streamdata.testing import DelayLine, Direction


class EchoServer:
    """A loopback TCP server that sends back what it receives; counts what it got."""

    def __init__(self) -> None:
        self.received = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1 << 16):
                self.received += len(data)
                writer.write(data)
                await writer.drain()
            writer.write_eof()
        except ConnectionError:
            pass
        finally:
            writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port


@pytest_asyncio.fixture
async def echo() -> AsyncIterator[EchoServer]:
    """An echo server on a free loopback port."""
    echo = EchoServer()
    echo.server = await asyncio.start_server(echo.handle, "127.0.0.1", 0)
    async with echo.server:
        yield echo


async def read_to_the_end(reader: asyncio.StreamReader) -> None:
    """Read until the connection ends; an orderly end is a ``ConnectionAbortedError``
    here, so that only a reset (a cut) raises ``ConnectionResetError``."""
    while await reader.read(1 << 16):
        pass
    raise ConnectionAbortedError("the connection ended in order, it was not reset")


async def round_trip(port: int, data: bytes) -> tuple[float, bytes]:
    """Seconds to send ``data`` and read it back, and what came back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    writer.write(data)
    back = await reader.readexactly(len(data))
    seconds = time.monotonic() - start
    writer.close()
    await writer.wait_closed()
    return seconds, back


@pytest.mark.timing  # wall-clock bounds of a few tenths of a second
async def test_the_line_adds_its_delay_each_way(echo: EchoServer) -> None:
    """A message and its echo each wait the one-way delay: the round trip takes the RTT."""
    async with DelayLine("127.0.0.1", echo.port, delay=0.05) as line:
        seconds, back = await round_trip(line.port, b"ping")
    assert back == b"ping"
    assert line.rtt == pytest.approx(0.1)
    assert 0.1 <= seconds < 0.3


@pytest.mark.timing  # wall-clock bounds of a few tenths of a second
async def test_data_in_flight_is_not_delayed_piece_by_piece(echo: EchoServer) -> None:
    """Many pieces sent one after the other arrive one delay later, not one delay each."""
    pieces = 40
    async with DelayLine("127.0.0.1", echo.port, delay=0.05) as line:
        reader, writer = await asyncio.open_connection("127.0.0.1", line.port)
        start = time.monotonic()
        for index in range(pieces):
            writer.write(bytes([index]) * 65536)
            await writer.drain()
            await asyncio.sleep(0.002)
        back = await reader.readexactly(pieces * 65536)
        seconds = time.monotonic() - start
        writer.close()
    assert back == b"".join(bytes([index]) * 65536 for index in range(pieces))
    assert seconds < 0.1 + pieces * 0.002 + 0.3  # piece by piece would be 4 s


async def test_the_line_counts_the_bytes_of_each_direction(echo: EchoServer) -> None:
    """Bytes carried up (to the target) and down (back) are counted separately."""
    async with DelayLine("127.0.0.1", echo.port) as line:
        await round_trip(line.port, b"x" * 1000)
        reader, writer = await asyncio.open_connection("127.0.0.1", line.port)
        writer.write(b"y" * 500)
        writer.write_eof()
        assert await reader.read() == b"y" * 500
        writer.close()
    assert line.carried(Direction.UP) == 1500
    assert line.carried(Direction.DOWN) == 1500
    assert line.carried() == 3000
    assert line.accepted == 2


async def test_cut_after_delivers_that_many_bytes_then_resets(echo: EchoServer) -> None:
    """cut_after(N, UP) passes exactly N bytes on to the target, then resets every
    connection; a new connection works again."""
    async with DelayLine("127.0.0.1", echo.port, delay=0.01) as line:
        line.cut_after(100_000, Direction.UP)
        reader, writer = await asyncio.open_connection("127.0.0.1", line.port)
        writer.write(b"z" * 300_000)
        with pytest.raises(ConnectionResetError):
            await read_to_the_end(reader)
        writer.close()
        assert 0 < echo.received <= 100_000  # a reset drops what the target had not read
        assert line.carried(Direction.UP) == 100_000
        assert line.cuts == 1
        _, back = await round_trip(line.port, b"again")
        assert back == b"again"


async def test_cut_after_then_refuse_leaves_the_host_down(echo: EchoServer) -> None:
    """cut_after(..., then_refuse=True): after the cut, each new connection is reset too."""
    async with DelayLine("127.0.0.1", echo.port) as line:
        line.cut_after(10, Direction.UP, then_refuse=True)
        assert not line.refusing  # not before the cut
        reader, writer = await asyncio.open_connection("127.0.0.1", line.port)
        writer.write(b"z" * 100)
        with pytest.raises(ConnectionResetError):
            await read_to_the_end(reader)
        writer.close()
        assert line.refusing and line.cuts == 1
        reader, writer = await asyncio.open_connection("127.0.0.1", line.port)
        with pytest.raises(ConnectionResetError):
            await read_to_the_end(reader)
        writer.close()
        assert line.carried(Direction.UP) == 10


async def test_cut_resets_every_open_connection(echo: EchoServer) -> None:
    """cut() resets the connections open now and says how many."""
    async with DelayLine("127.0.0.1", echo.port) as line:
        streams = [await asyncio.open_connection("127.0.0.1", line.port) for _ in range(3)]
        for reader, writer in streams:
            writer.write(b"hello")
            assert await reader.readexactly(5) == b"hello"
        assert line.connections == 3
        assert line.cut() == 3
        for reader, writer in streams:
            with pytest.raises(ConnectionResetError):
                await read_to_the_end(reader)
            writer.close()


async def test_a_limit_already_reached_is_refused(echo: EchoServer) -> None:
    """cut_after with a count the line has already carried is a ValueError."""
    async with DelayLine("127.0.0.1", echo.port) as line:
        await round_trip(line.port, b"abc")
        with pytest.raises(ValueError, match="already carried"):
            line.cut_after(3, Direction.UP)


def test_bad_settings_are_refused() -> None:
    """A negative delay or an empty buffer is a ValueError; the port needs a start."""
    with pytest.raises(ValueError, match="delay must not be negative"):
        DelayLine("127.0.0.1", 1, delay=-1)
    with pytest.raises(ValueError, match="buffer must be positive"):
        DelayLine("127.0.0.1", 1, buffer=0)
    with pytest.raises(RuntimeError, match="not started"):
        _ = DelayLine("127.0.0.1", 1).port


async def test_the_line_runs_as_a_process_of_its_own(echo: EchoServer) -> None:
    """Run as a script, the line prints its port, relays, and prints its counts when its
    standard input ends."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamdata.testing._delayline",
        "127.0.0.1",
        str(echo.port),
        "--delay",
        "0.01",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    port = json.loads(await process.stdout.readline())["port"]
    _, back = await round_trip(port, b"through")
    assert back == b"through"
    process.stdin.close()
    counts = json.loads(await process.stdout.readline())
    assert await process.wait() == 0
    assert counts == {"up": 7, "down": 7, "cuts": 0}


async def test_a_refusing_line_resets_new_connections_only(echo: EchoServer) -> None:
    """With refusing set, a new connection is reset at once; an open one keeps working."""
    async with DelayLine("127.0.0.1", echo.port) as line:
        reader, writer = await asyncio.open_connection("127.0.0.1", line.port)
        line.refusing = True
        late_reader, late_writer = await asyncio.open_connection("127.0.0.1", line.port)
        with pytest.raises(ConnectionResetError):
            await read_to_the_end(late_reader)
        late_writer.close()
        writer.write(b"still")
        assert await reader.readexactly(5) == b"still"
        writer.close()
