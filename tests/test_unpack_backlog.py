"""When one remote ``tar -x`` counts as slow: the decision behind adding more of them."""

from __future__ import annotations

import pytest

from streamdata.connectors.ssh import _unpack as unpack
from streamdata.connectors.ssh._unpack import Backlog


def _feed(backlog: Backlog, writes: int, seconds: float, members: int) -> tuple[float, int]:
    """``writes`` writes of ``seconds`` each, ``members`` more routed before each."""
    now, routed = 0.0, 0
    for _ in range(writes):
        routed += members
        backlog.wrote(now, now + seconds, routed)
        now += seconds
    return now, routed


def test_writes_that_never_wait_never_decide() -> None:
    """Writes costing 0.5 ms each (packets, encryption) are not waiting, however many."""
    backlog = Backlog(0.0)
    now, routed = _feed(backlog, 5000, 0.0005, 3)
    assert backlog.waited == 0.0
    assert backlog.slow(now, routed) is None


def test_a_tar_that_keeps_up_is_not_slow() -> None:
    """Waiting, but 100 members per 2 ms write (50,000 files/s): one tar keeps up."""
    backlog = Backlog(0.0)
    now, routed = _feed(backlog, 200, 0.002, 100)
    assert backlog.waited >= unpack.SPLIT_AFTER
    assert backlog.slow(now, routed) is False


def test_a_tar_that_falls_behind_is_slow() -> None:
    """Buffered members first, then 5 members per 10 ms write (500 files/s): slow."""
    backlog = Backlog(0.0)
    backlog.wrote(0.0, 0.0001, 900)  # the SSH window took the first MiBs at once
    first = _feed(backlog, 10, 0.01, 5)
    assert backlog.slow(*first) is None  # 0.1 s waited: too early to tell
    more = _feed(backlog, 40, 0.01, 5)
    assert backlog.slow(first[0] + more[0], 900 + first[1] + more[1]) is True


def test_the_split_can_be_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    """With SPLIT_AFTER = 0 and SLOW_FILES = inf, the first check says slow (no NaN)."""
    monkeypatch.setattr(unpack, "SPLIT_AFTER", 0.0)
    monkeypatch.setattr(unpack, "SLOW_FILES", float("inf"))
    backlog = Backlog(5.0)
    assert backlog.slow(5.0, 40) is True
