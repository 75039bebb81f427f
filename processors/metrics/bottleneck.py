"""Bottleneck shares by the active-period method, and the live "longest running" signal (DESIGN.md,
Metrics: "Bottleneck"; docs/metrics.md, "Bottleneck"; C. Roser, M. Nakano, M. Tanaka, "Shifting bottleneck
detection", Winter Simulation Conference 2002).

A station is *active* while working, in changeover or down, inactive otherwise. An *active period* is a
maximal stretch of activity; a station that goes inactive and active again within one instant keeps its
period (all calls at one time are applied before anything is judged).

The method (Roser), as a walk through time with a cursor ``t`` starting at the first call:

1. Among the periods containing ``t`` (``start <= t < end``), the one with the longest *whole* duration
   ``end - start`` is a *bottleneck period*: its station is the bottleneck for that whole period. Ties
   (equal durations, compared at the µs resolution of event times) all become bottleneck periods, taken
   in order of start; periods with equal starts and durations are the same interval, so the order among
   them changes nothing and no station name decides anything.
2. ``t`` moves to the end of the bottleneck period (the latest end of a tie); with no period containing
   ``t``, to the next start. Repeat.
3. Consecutive bottleneck periods overlap (the next one contains the end of the current one). The overlap
   is *shifting* bottleneck time, credited to both stations; the rest of a bottleneck period is *sole*.

Shares are credited seconds divided by the observed time; with shifting time credited twice they need
not add up to 1.

Online, the length of a period still running is unknown. A choice at ``t`` is final once every period
containing ``t`` has ended, i.e. while ``t`` is before the earliest start of a running period (the
*frontier*); the walk stops there and keeps only what later choices can need: the last bottleneck period
(its tail credit waits for its successor) and the ended periods that can still be chosen (those ending
after ``t``; one starting after the frontier is dropped once it is shorter than the running period at
the frontier has already lasted, because that period contains it and will be longer). The state stays a
few periods per station. ``shares`` and ``window_shares`` finish the walk on a copy with every running
period cut at ``now``: the method applied to the data up to ``now``. Before the frontier the figures are
final; after it they are provisional, and a running period that goes on can change them.

``longest_running`` is a different, live signal: the stations whose running period started first (the
longest so far). It can differ from the method's bottleneck (docs/metrics.md says how).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

import msgspec

#: (start, end, station) of an active period; ``end`` is exclusive.
Period = tuple[float, float, str]
#: (start, end, station, shifting) of bottleneck time credited to a station.
Credit = tuple[float, float, str, bool]
#: (share, sole share, shifting share) of a station; ``share = sole + shifting``.
Shares = tuple[float, float, float]


def _us(seconds: float) -> int:
    """A duration at the µs resolution of event times, so equal durations compare equal."""
    return round(seconds * 1_000_000)


class ActivePeriods(msgspec.Struct, kw_only=True):
    """Active periods of one line's stations and the bottleneck walk over them (msgpack-serialisable)."""

    #: length of the rolling window of ``window_shares`` (``EngineConfig.bottleneck_window_s``)
    window_s: float = 3600.0
    first: float | None = None
    last: float | None = None
    # station -> start of its running active period
    running: dict[str, float] = {}
    # stations that turned inactive at the instant ``last`` -> their period's start, resumed if they turn
    # active again within the same instant
    ended: dict[str, float] = {}
    # ended periods the walk may still choose, sorted by start
    pool: list[Period] = []
    # the walk: next decision time, last bottleneck period and the end of its overlap with its predecessor
    cursor: float | None = None
    head: Period | None = None
    head_from: float = 0.0
    # final credited seconds per station seen (the head's are not final until its successor is known)
    sole_s: dict[str, float] = {}
    shifting_s: dict[str, float] = {}
    # final credits in time order that end inside the rolling window
    credits: list[Credit] = []

    def __post_init__(self) -> None:
        if not 0 < self.window_s < math.inf:
            raise ValueError(f"window_s must be a positive number of seconds, got {self.window_s!r}")
        if self.cursor is None and self.last is not None:
            self.cursor = self.last  # a state stored before the walk existed: walk from where it was

    def set_active(self, t: float, station: str, active: bool) -> None:
        """``station`` became active (working, changeover, down) or inactive at ``t``; no-op if unchanged."""
        self._settle(t)
        if station not in self.sole_s:
            self.sole_s[station] = 0.0
            self.shifting_s[station] = 0.0
        running = self.running
        if active:
            if station not in running:
                running[station] = self.ended.pop(station, t)
        else:
            start = running.pop(station, None)
            if start is not None:
                self.ended[station] = start

    def advance(self, now: float) -> None:
        """Close the instants before ``now`` and walk on (the engine calls this once per batch)."""
        self._settle(now)

    def longest_running(self, now: float) -> frozenset[str]:
        """Live signal: the stations whose running active period is the longest at ``now`` (all of a tie).

        Not the method's bottleneck: that needs whole periods (see the module docstring).
        """
        if not self.running:
            return frozenset()
        earliest = min(_us(s) for s in self.running.values())
        return frozenset(s for s, start in self.running.items() if _us(start) == earliest)

    def active_period_s(self, now: float, station: str) -> float:
        """How long ``station``'s running active period has lasted at ``now`` (0.0 if inactive)."""
        start = self.running.get(station)
        return 0.0 if start is None else now - start

    def shares(self, now: float) -> dict[str, Shares]:
        """Per station seen: (share, sole, shifting) of the observed time ``[first call, now]``.

        Running periods count as ending at ``now``; all zero before time passes.
        """
        return self._shares(now, self._finish(now))

    def window_shares(self, now: float) -> dict[str, Shares]:
        """Like ``shares``, over the rolling window ``[max(first call, now - window_s), now]``."""
        return self._window_shares(now, self._finish(now))

    def shares_and_window_shares(self, now: float) -> tuple[dict[str, Shares], dict[str, Shares]]:
        """``(shares(now), window_shares(now))``, finishing the walk once for both (the points need both)."""
        tail = self._finish(now)
        return self._shares(now, tail), self._window_shares(now, tail)

    def _shares(self, now: float, tail: ActivePeriods) -> dict[str, Shares]:
        observed = 0.0 if self.first is None else now - self.first
        out: dict[str, Shares] = {}
        for station in self.sole_s:
            sole = self.sole_s[station] + tail.sole_s.get(station, 0.0)
            shifting = self.shifting_s[station] + tail.shifting_s.get(station, 0.0)
            out[station] = _fractions(sole, shifting, observed)
        return out

    def _window_shares(self, now: float, tail: ActivePeriods) -> dict[str, Shares]:
        begin = now - self.window_s if self.first is None else max(self.first, now - self.window_s)
        sole = dict.fromkeys(self.sole_s, 0.0)
        shifting = dict.fromkeys(self.sole_s, 0.0)
        for start, end, station, is_shifting in [*self.credits, *tail.credits]:
            inside = min(end, now) - max(start, begin)
            if inside > 0:
                (shifting if is_shifting else sole)[station] += inside
        observed = now - begin
        return {s: _fractions(sole[s], shifting[s], observed) for s in sole}

    def timeline(self, now: float) -> list[Credit]:
        """The method's bottleneck time as (start, end, station, shifting), in time order, from the start
        of the rolling window (or a little before) to ``now``; running periods cut at ``now``."""
        return [*self.credits, *self._finish(now).credits]

    def _settle(self, t: float) -> None:
        """Once time moves past the instant ``last``: end the periods that ended at it, walk, forget."""
        if not math.isfinite(t):
            raise ValueError(f"t must be a finite event time, got {t!r}")
        last = self.last
        if last is None:
            self.first = self.last = self.cursor = t
            return
        if t <= last:
            if t < last:
                raise ValueError(f"t={t!r} is earlier than the last call at {last!r}")
            return
        for station, start in self.ended.items():
            bisect.insort(self.pool, (start, last, station))
        self.ended.clear()
        frontier = min(self.running.values(), default=math.inf)
        self._walk(frontier)
        self._forget(last, frontier)
        self.last = t

    def _walk(self, frontier: float) -> None:
        """Make every bottleneck choice at cursor times before ``frontier`` (step 1 and 2 of the method)."""
        pool = self.pool
        while self.cursor is not None and self.cursor < frontier:
            t = self.cursor
            begun = bisect.bisect_right(pool, t, key=lambda p: p[0])
            containing = [p for p in pool[:begun] if p[1] > t]
            pool[:begun] = containing  # the others ended at or before t: no later choice can take them
            if not containing:
                later = pool[0][0] if pool else math.inf
                if min(later, frontier) == math.inf:
                    return  # nothing known starts later: the next start moves the cursor
                self.cursor = min(later, frontier)
                continue
            longest = max(_us(end - start) for start, end, _ in containing)
            chosen = [p for p in containing if _us(p[1] - p[0]) == longest]
            for period in chosen:
                pool.remove(period)
                self._push(period)
            self.cursor = max(end for _, end, _ in chosen)

    def _push(self, period: Period) -> None:
        """``period`` is the next bottleneck period: credit its predecessor, whose successor is now known."""
        start, end, _ = period
        head = self.head
        if head is None:
            self.head_from = start
        else:
            h_start, h_end, _ = head
            overlaps = start < h_end
            self._credit(head, self.head_from, max(start, h_start) if overlaps else h_end)
            self.head_from = min(h_end, end) if overlaps else start
        self.head = period

    def _credit(self, period: Period, shifting_until: float, shifting_from: float) -> None:
        """Credit a bottleneck period: shifting before ``shifting_until`` and from ``shifting_from``."""
        start, end, station = period
        if shifting_until >= shifting_from:
            parts = [(start, end, True)]
        else:
            parts = [(start, shifting_until, True), (shifting_until, shifting_from, False)]
            parts.append((shifting_from, end, True))
        for a, b, is_shifting in parts:
            if b > a:
                totals = self.shifting_s if is_shifting else self.sole_s
                totals[station] = totals.get(station, 0.0) + (b - a)
                self.credits.append((a, b, station, is_shifting))

    def _forget(self, now: float, frontier: float) -> None:
        """Drop what no later answer can need (bounded state)."""
        pool = self.pool
        if pool and pool[-1][0] >= frontier:  # sorted by start: only then is there anything to drop
            lasted = _us(now - frontier)
            self.pool = [p for p in pool if p[0] < frontier or _us(p[1] - p[0]) >= lasted]
        horizon = now - self.window_s
        credits = self.credits
        if credits and credits[0][1] <= horizon:
            keep = bisect.bisect_right(credits, horizon, key=lambda c: c[1])
            del credits[:keep]

    def _finish(self, now: float) -> ActivePeriods:
        """The walk finished on a copy as if every running period ended at ``now``; only new credits."""
        if self.last is not None and now < self.last:
            raise ValueError(f"now={now!r} is earlier than the last call at {self.last!r}")
        tail = ActivePeriods(
            window_s=self.window_s,
            pool=list(self.pool),
            cursor=self.cursor,
            head=self.head,
            head_from=self.head_from,
        )
        if self.last is not None:
            for station, start in self.ended.items():
                bisect.insort(tail.pool, (start, self.last, station))
        for station, start in self.running.items():
            if now > start:
                bisect.insort(tail.pool, (start, now, station))
        tail._walk(math.inf)
        if tail.head is not None:
            tail._credit(tail.head, tail.head_from, tail.head[1])
        return tail


def _fractions(sole: float, shifting: float, observed: float) -> Shares:
    if observed <= 0:
        return (0.0, 0.0, 0.0)
    return ((sole + shifting) / observed, sole / observed, shifting / observed)


def method_shares(periods: Iterable[Period], start: float, end: float) -> dict[str, Shares]:
    """Bottleneck shares of whole-run data: the same walk as the processors, over ``[start, end]``.

    For ground truth and tests: ``periods`` are (start, end, station) active periods, clipped to
    ``[start, end]``. Periods touching (one ends where the next starts) are one period, as in the
    processors.

    Raises:
        ValueError: ``end`` before ``start``, or two periods of one station overlapping.
    """
    if end < start:
        raise ValueError(f"end={end!r} is before start={start!r}")
    clipped = sorted(
        (station, max(p_start, start), min(p_end, end))
        for p_start, p_end, station in periods
        if min(p_end, end) > max(p_start, start)
    )
    calls: list[tuple[float, int, str]] = []
    for i, (station, a, b) in enumerate(clipped):
        if i and clipped[i - 1][0] == station and clipped[i - 1][2] > a:
            raise ValueError(f"active periods of {station!r} overlap: {clipped[i - 1][1:]} and {(a, b)}")
        calls += [(a, 1, station), (b, 0, station)]
    calls.sort()
    walk = ActivePeriods()
    walk.advance(start)
    for t, active, station in calls:
        walk.set_active(t, station, bool(active))
    return walk.shares(end)
