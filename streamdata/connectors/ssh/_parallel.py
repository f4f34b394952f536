"""How many SSH channels one transfer gets, from the host's measured round-trip time.

A channel carries at most one window of data per round trip. Uploads are capped by the
window the *server* grants (OpenSSH: 2 MiB per session channel, whatever the client
asks: :data:`SERVER_WINDOW`); a download channel by what it keeps in flight (a split
read asks for :data:`~._ranges.READ_WINDOW` at a time, under this client's 16 MiB
window). On loopback or a LAN (well under a millisecond) one channel carries more than
this process can encrypt, so one is best: each extra channel costs an open and a command
start. Across a wide-area link it is the cap: 2 MiB per 40 ms is 52 MB/s, the ~42 MB/s
``scp`` gets there.

So a transfer of ``size`` bytes gets ``ceil(TARGET_RATE / (window / rtt))`` channels, at
most :data:`MAX_STREAMS` and at most one per block of the data; the extra ones only if a
channel slot is free at that moment (:meth:`~._pool.HostPool.spare_command`), so several
transfers at once share the host's ``max_sessions`` without waiting for each other.

The round-trip time is the shortest of the host's last few samples (:class:`RoundTrips`):
SFTP requests (a stat is one round trip) and channel opens (the server confirms a channel
at once: its command starts with the next request), so the first channel a new
connection opens has measured the link before any data flows. The shortest sample is
the link's, not a queue's. No sample yet, a round trip under
:data:`NEAR` (on a busy machine a loopback request can take a few milliseconds), or
:data:`TARGET_RATE` already reached by one channel: one channel, as before.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque

__all__ = [
    "MAX_STREAMS",
    "NEAR",
    "SERVER_WINDOW",
    "TARGET_RATE",
    "RoundTrips",
    "stream_count",
]

#: The receive window an OpenSSH server grants a session channel (and asyncssh's default).
SERVER_WINDOW = 2 << 20
#: Bytes per second one transfer aims at: about what this process moves on loopback. A
#: link whose single channel carries that gets one channel.
TARGET_RATE = 500e6
#: Channels for one transfer at most (the first, plus extra ones when slots are free).
MAX_STREAMS = 10
#: Round trips shorter than this (seconds) are a LAN or loopback, if a busy one: one
#: channel, whatever the rate formula says.
NEAR = 0.005
_SAMPLES = 16


class RoundTrips:
    """The round-trip times of the last few requests to a host; the shortest counts."""

    def __init__(self) -> None:
        self._samples: deque[float] = deque(maxlen=_SAMPLES)
        #: Set by the first sample.
        self.measured = asyncio.Event()

    def add(self, seconds: float) -> None:
        """Record how long one request took, answer included."""
        self._samples.append(seconds)
        self.measured.set()

    @property
    def best(self) -> float | None:
        """The shortest recent round trip in seconds (None: none measured yet)."""
        return min(self._samples, default=None)


def stream_count(size: int, block: int, window: int, rtt: float | None) -> int:
    """How many channels to move ``size`` bytes in blocks of ``block`` bytes.

    Args:
        size: Bytes to move (an estimate for a stream).
        block: The unit dealt to a channel: no more channels than blocks.
        window: The window that caps one channel (the receiver's).
        rtt: The host's round-trip time in seconds, None if unknown.

    Returns:
        At least 1, at most :data:`MAX_STREAMS`.
    """
    if rtt is None or rtt < NEAR:
        return 1
    per_channel = window / rtt
    wanted = math.ceil(TARGET_RATE / per_channel)
    return max(1, min(wanted, MAX_STREAMS, math.ceil(size / block)))
