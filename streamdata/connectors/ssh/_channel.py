"""One remote command on one SSH channel, with bounded buffers in both directions.

:class:`RemoteCommand` wraps an asyncssh channel running a command. Reading is bounded
by the SSH window, which asyncssh reopens (to its full size) whenever it hands data to
the session, even while older data waits, undelivered, in the channel. So the session
stops the channel once it holds ``read_limit`` bytes and starts it again only when the
consumer has taken them all: the channel then hands over everything it queued (at most
one window, which must be smaller than ``read_limit``) without stopping midway, and the
memory held stays below ``read_limit`` plus one window, however slow the consumer.

Writes wait while the channel's send buffer is full. Standard error is kept (its first
and last few KiB, :mod:`.._stderr`) for error messages, and the exit status is checked by
:meth:`RemoteCommand.finish`. A lost connection wakes every waiter at once, so a broken
transfer fails promptly instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from collections.abc import Callable
from typing import cast

from ..._errors import ConnectorError
from .._stderr import StderrBuffer, summarize
from ._asyncssh import asyncssh
from ._errors import SSH_ERRORS
from ._host import PoolSettings

__all__ = ["CommandSession", "RemoteCommand", "close_session", "open_session"]

_JOIN_LIMIT = 1 << 20
_CLOSE_TIMEOUT = 10.0


class CommandSession(asyncssh.SSHClientSession[bytes]):
    """The asyncssh session behind a :class:`RemoteCommand`: buffers and events only."""

    def __init__(
        self, read_limit: int, on_round_trip: Callable[[float], None] | None = None
    ) -> None:
        self.read_limit = read_limit
        self._on_round_trip = on_round_trip
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.paused = False
        self.stderr = StderrBuffer()
        self.eof = False
        self.closed = False
        self.error: Exception | None = None
        self.exit_status: int | None = None
        self.exit_signal: str | None = None
        self.readable = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()
        self.done = asyncio.Event()
        self.channel: asyncssh.SSHClientChannel[bytes] | None = None
        #: When the channel was asked for (:func:`open_session`).
        self.requested: float | None = None

    def connection_made(self, chan: asyncssh.SSHClientChannel[bytes]) -> None:
        """The server confirmed the channel: a round trip after the request (the open is
        confirmed at once: no process starts before the command's request)."""
        self.channel = chan
        if self.requested is not None and self._on_round_trip is not None:
            self._on_round_trip(time.monotonic() - self.requested)

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self.stderr.feed(data)
            return
        self.chunks.append(data)
        self.buffered += len(data)
        self.readable.set()
        if self.buffered >= self.read_limit and not self.paused and self.channel is not None:
            self.paused = True
            self.channel.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        self.readable.set()
        return False

    def exit_status_received(self, status: int) -> None:
        self.exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.exit_signal = signal

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        for event in (self.readable, self.writable, self.done):
            event.set()

    def take(self, limit: int = _JOIN_LIMIT) -> bytes:
        """Remove and return queued output (about ``limit`` bytes at most, one chunk at
        least, split only if it holds more than ``limit``), reopening the flow."""
        first = self.chunks.popleft()
        if len(first) > limit:
            self.chunks.appendleft(first[limit:])
            first = first[:limit]
        parts, size = [first], len(first)
        while self.chunks and size + len(self.chunks[0]) <= limit:
            parts.append(self.chunks.popleft())
            size += len(parts[-1])
        self.buffered -= size
        if not self.chunks and not self.eof and not self.closed:
            self.readable.clear()
        if self.paused and not self.chunks and self.channel is not None:
            self.paused = False
            self.channel.resume_reading()
        return parts[0] if len(parts) == 1 else b"".join(parts)


class RemoteCommand:
    """A command running on a remote host, seen as byte streams and an exit status.

    Args:
        channel: The channel the command runs on.
        session: Its session.
        what: What the command does, for error messages (e.g. ``"archive '/d' on h"``).
        host: The host name put on errors.
    """

    def __init__(
        self,
        channel: asyncssh.SSHClientChannel[bytes],
        session: CommandSession,
        what: str,
        host: str,
    ) -> None:
        self._channel = channel
        self._session = session
        self._what = what
        self._host = host

    async def read(self, limit: int = _JOIN_LIMIT) -> bytes:
        """Return the next part of standard output (at most ``limit`` bytes), or ``b""``
        at its end.

        Raises:
            ConnectorError: If the connection is lost before the end of the output.
        """
        session = self._session
        await session.readable.wait()
        if session.chunks:
            return session.take(limit)
        if session.closed and not session.eof and session.error is not None:
            raise self._error("the connection was lost", session.error)
        return b""

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the command's standard input, waiting while the buffer is full.

        Raises:
            ConnectorError: If the command ended or the connection was lost.
        """
        session = self._session
        if not session.writable.is_set():
            await session.writable.wait()
        if session.closed:
            await self._fail_closed()
        try:
            self._channel.write(data)
        except SSH_ERRORS.handled as exc:
            raise self._error("cannot send data", exc) from exc

    @property
    def backlog(self) -> int:
        """Bytes written to standard input and not sent yet (waiting for the window)."""
        return self._channel.get_write_buffer_size()

    def buffer_writes(self, size: int) -> None:
        """Let :meth:`write` return at once until ``size`` bytes wait to be sent.

        For a channel fed together with others by one producer: with the default limit
        (64 KiB) each write waits for the previous one to be sent, while the other
        channels may run dry.
        """
        self._channel.set_write_buffer_limits(high=size)

    def write_eof(self) -> None:
        """Close the command's standard input."""
        if not self._session.closed:
            self._channel.write_eof()

    async def finish(self) -> None:
        """Wait for the command to end and check how it ended.

        Raises:
            ConnectorError: If it exited with a non-zero status, was killed by a signal,
                or the connection was lost first.
        """
        await self._session.done.wait()
        self._check()

    def _check(self) -> None:
        session = self._session
        if session.exit_status == 0:
            return
        if session.exit_status is not None:
            raise self._error(f"exit status {session.exit_status}", None)
        if session.exit_signal is not None:
            raise self._error(f"killed by signal {session.exit_signal}", None)
        raise self._error("the connection was lost", session.error)

    async def _fail_closed(self) -> None:
        self._check()
        raise self._error("the command stopped reading its input", None)

    def _error(self, reason: str, cause: BaseException | None) -> ConnectorError:
        stderr = self._session.stderr.text()
        summary = summarize(stderr)
        detail = f": {summary}" if summary else ""
        cause_text = f" ({cause})" if cause is not None else ""
        error = ConnectorError(
            f"cannot {self._what}: {reason}{cause_text}{detail}",
            host=self._host,
            transient=SSH_ERRORS.is_transient(cause),  # e.g. the connection was lost
            details=stderr or None,
        )
        error.__cause__ = cause
        return error


async def open_session(
    conn: asyncssh.SSHClientConnection,
    session: CommandSession,
    command: str,
    settings: PoolSettings,
) -> asyncssh.SSHClientChannel[bytes]:
    """Open a channel on ``conn`` running ``command`` for ``session``.

    If cancelled meanwhile, the channel is closed once open, so none leaks.

    Raises:
        asyncssh.Error: If the server refuses the channel (translated by the caller).
        OSError: If the connection fails.
    """
    session.requested = time.monotonic()
    opening = asyncio.ensure_future(
        conn.create_session(
            functools.partial(_same, session),
            _encode(command),
            encoding=None,
            window=settings.window,
            max_pktsize=settings.max_pktsize,
        )
    )
    try:
        channel, _ = await asyncio.shield(opening)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            channel, _ = await opening  # a round trip at most
            channel.close()
        raise
    return channel


async def close_session(
    conn: asyncssh.SSHClientConnection,
    channel: asyncssh.SSHClientChannel[bytes],
    session: CommandSession,
) -> None:
    """Close the channel and wait for the server to confirm, so the slot is really free.

    A server that does not answer within ten seconds has its connection dropped.
    """
    channel.close()
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await asyncio.shield(session.done.wait())
    except TimeoutError:
        conn.abort()


def _same(session: CommandSession) -> CommandSession:
    return session


def _encode(command: str) -> str:
    """Encode a command line, keeping undecodable file-name bytes as they were."""
    return cast(str, command.encode("utf-8", "surrogateescape"))
