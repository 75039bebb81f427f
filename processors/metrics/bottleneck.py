"""Momentary bottleneck and bottleneck shares by the active-period method (DESIGN.md, Metrics:
"Bottleneck"; C. Roser, M. Nakano, M. Tanaka, "Shifting bottleneck detection", Winter Simulation
Conference 2002).

A station is *active* while working, in changeover or down (``station_state`` categories), inactive while
starved, blocked or off shift. At time t the *momentary bottleneck* is the station whose active period
is the longest; the share of time each station is the momentary bottleneck, split into *sole* and
*shifting*, says which station limits the line and how often the limit moves.

Online adaptation. Roser's method is offline: it knows where every active period ends, so at time t it
compares the *whole* periods containing t, and a bottleneck changes as soon as a station with a longer
period overlaps the current one; the overlap of consecutive bottleneck periods is *shifting* time for
both stations, the rest *sole*. Online, only the ongoing length ``now - start`` is known. Every active
station's ongoing length grows at the same rate and a new period is always the shortest, so the
momentary bottleneck (longest ongoing period; ties to the earlier start, then the station name) changes
only when its own period ends. Hence here:

- the bottleneck is judged from settled instants: all calls at one event time are applied before the
  judgement (as docs/simulators.md asks for starved/blocked), so a station going idle and working again
  within one instant keeps its period;
- a change happens when the current bottleneck's period ends, so the previous bottleneck's period is never
  still running after a change. The overlap between the outgoing bottleneck's period and its successor's
  lies *before* the change: when the change happens, ``[max(successor start, outgoing since), change]``
  is reclassified from sole to *shifting* time of the outgoing station. Until then it counts as sole, so
  shares of the ongoing tenure are provisional;
- only the station that was the momentary bottleneck gets the time (Roser counts the overlap as
  shifting for both stations), so shares add up to the fraction of time any station was active;
- the observed time runs from the first call; time with no active station belongs to no station.
"""

from __future__ import annotations

import msgspec


class ActivePeriods(msgspec.Struct, kw_only=True):
    """Active periods of the stations of one line and the time each was the momentary bottleneck."""

    # active stations -> start of their ongoing period
    starts: dict[str, float] = {}
    # stations that turned inactive at the instant ``last`` -> their period's start, resumed if they turn
    # active again within the same instant
    ended: dict[str, float] = {}
    first: float | None = None
    last: float | None = None
    # momentary bottleneck judged at the last settled instant, since when, and its period's start
    current: str | None = None
    current_since: float = 0.0
    current_start: float = 0.0
    bottleneck_s: dict[str, float] = {}
    shifting_s: dict[str, float] = {}

    def set_active(self, t: float, station: str, active: bool) -> None:
        """``station`` became active (working, changeover, down) or inactive at ``t``; no-op if unchanged."""
        self._settle(t)
        if station not in self.bottleneck_s:
            self.bottleneck_s[station] = 0.0
            self.shifting_s[station] = 0.0
        starts = self.starts
        if active:
            if station not in starts:
                starts[station] = self.ended.pop(station, t)
        else:
            start = starts.pop(station, None)
            if start is not None:
                self.ended[station] = start

    def advance(self, now: float) -> None:
        """Account the time up to ``now`` (the engine calls this once per batch)."""
        self._settle(now)

    def momentary(self, now: float) -> str | None:
        """The station with the longest ongoing active period at ``now``, or None if none is active."""
        return self._choose()

    def active_period_s(self, now: float, station: str) -> float:
        """Length of ``station``'s ongoing active period at ``now`` (0.0 if inactive)."""
        start = self.starts.get(station)
        return 0.0 if start is None else now - start

    def shares(self, now: float) -> dict[str, tuple[float, float, float]]:
        """Per station seen: (share, sole share, shifting share) of the time observed up to ``now``.

        Returns:
            Fractions of ``now - first call``; ``share = sole + shifting``. All zero before time passes.
        """
        clone = msgspec.structs.replace(
            self,
            ended=dict(self.ended),
            bottleneck_s=dict(self.bottleneck_s),
            shifting_s=dict(self.shifting_s),
        )
        clone._settle(now)
        clone._judge()
        observed = 0.0 if self.first is None else now - self.first
        if observed <= 0:
            return {s: (0.0, 0.0, 0.0) for s in clone.bottleneck_s}
        out: dict[str, tuple[float, float, float]] = {}
        for station, total in clone.bottleneck_s.items():
            shifting = clone.shifting_s[station]
            out[station] = (total / observed, (total - shifting) / observed, shifting / observed)
        return out

    def _settle(self, t: float) -> None:
        """Close the instant ``last`` once time moves on: judge it, then give [last, t) to its bottleneck."""
        last = self.last
        if last is None:
            self.first = self.last = t
            return
        if t <= last:
            if t < last:
                raise ValueError(f"t={t!r} is earlier than the last call at {last!r}")
            return
        self._judge()
        if self.current is not None:
            self.bottleneck_s[self.current] += t - last
        self.last = t
        if self.ended:
            self.ended.clear()

    def _judge(self) -> None:
        """Make the momentary bottleneck of the settled instant ``last`` current."""
        new = self._choose()
        old = self.current
        last = self.last
        if new == old or last is None:
            return
        if old is not None and new is not None and old not in self.starts:
            overlap = last - max(self.starts[new], self.current_since)
            if overlap > 0:
                self.shifting_s[old] += overlap
        self.current = new
        self.current_since = last
        self.current_start = self.starts[new] if new is not None else 0.0

    def _choose(self) -> str | None:
        current = self.current
        starts = self.starts
        # a period started later can never be longer, so the bottleneck stays while its period runs
        if current is not None and starts.get(current) == self.current_start:
            return current
        if not starts:
            return None
        return min(starts, key=lambda s: (starts[s], s))
