"""The board shares one snapshot per interval between all open pages."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from wipwatch.dashboards.board.app import CachedSnapshots

pytestmark = pytest.mark.unit


class CountingSource:
    def __init__(self) -> None:
        self.calls = 0

    def snapshot(self) -> dict[str, Any]:
        self.calls += 1
        return {"n": self.calls}


def test_many_clients_in_one_interval_cost_one_snapshot() -> None:
    source = CountingSource()
    cache = CachedSnapshots(source, interval=60)  # type: ignore[arg-type]

    async def ten_clients() -> list[dict[str, Any]]:
        return await asyncio.gather(*(cache.get() for _ in range(10)))

    assert asyncio.run(ten_clients()) == [{"n": 1}] * 10
    assert source.calls == 1


def test_a_new_interval_takes_a_new_snapshot() -> None:
    source = CountingSource()
    now = {"t": 100.0}
    cache = CachedSnapshots(source, interval=1.0, clock=lambda: now["t"])  # type: ignore[arg-type]

    async def over_time() -> list[dict[str, Any]]:
        seen = [await cache.get()]
        now["t"] += 0.5  # within the interval: the same snapshot
        seen.append(await cache.get())
        now["t"] += 0.5  # one interval later: a fresh one
        seen.append(await cache.get())
        return seen

    assert asyncio.run(over_time()) == [{"n": 1}, {"n": 1}, {"n": 2}]


def test_a_stream_asking_once_an_interval_gets_a_fresh_snapshot_however_long_one_takes() -> None:
    """A snapshot's age counts from its start: a slow one (0.3 s of queries) is no reason to serve the
    previous one to the next tick of a live-update stream (bench/latency.py measured the board a second
    late that way)."""
    now = {"t": 100.0}

    class SlowSource(CountingSource):
        def snapshot(self) -> dict[str, Any]:
            now["t"] += 0.3
            return super().snapshot()

    source = SlowSource()
    cache = CachedSnapshots(source, interval=1.0, clock=lambda: now["t"])  # type: ignore[arg-type]

    async def ticks() -> list[dict[str, Any]]:
        seen = []
        for tick in range(3):
            now["t"] = 100.0 + tick  # the stream's ticks, one interval apart
            seen.append(await cache.get())
        return seen

    assert asyncio.run(ticks()) == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval must be > 0, got 0"):
        CachedSnapshots(CountingSource(), interval=0)  # type: ignore[arg-type]
