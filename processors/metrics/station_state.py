"""Starved and blocked time per station (DESIGN.md, Metrics: "Starved / blocked time per station").

The rule of docs/simulators.md ("Station states, starved and blocked"): a station's category is its last
reported state while that is ``working``, ``changeover`` or ``down``; while ``idle`` it is ``blocked`` if
it holds parts (WIP > 0), else ``starved`` on shift, else ``off_shift``. Seconds are accumulated into the
category in force at every change, so the categories partition the observed time::

    seconds[c] = total length of the intervals during which the category was c

Several changes at one event time leave zero-length intervals, so the transient categories in between
get no time: the simulator's "apply all events with the same event time before judging" comes free.
"""

from __future__ import annotations

import msgspec

from wipwatch.events import STATION_CATEGORIES, STATION_STATES

#: The categories, as the event schema's module defines them (shared with the simulator's ground truth).
CATEGORIES = STATION_CATEGORIES
_STATES = frozenset(STATION_STATES)


def _zero_seconds() -> dict[str, float]:
    return dict.fromkeys(CATEGORIES, 0.0)


class StationClock(msgspec.Struct, kw_only=True):
    """Time per category of one station, from its state, its WIP and the shift calendar."""

    state: str = "idle"
    wip: int = 0
    on_shift: bool = True
    category: str = "starved"
    since: float | None = None
    seconds: dict[str, float] = msgspec.field(default_factory=_zero_seconds)

    def __post_init__(self) -> None:
        if self.state not in _STATES:
            raise ValueError(f"state must be one of {sorted(_STATES)}, got {self.state!r}")
        if self.wip < 0:
            raise ValueError(f"wip must be >= 0, got {self.wip!r}")
        self.category = self._judge()

    def set_state(self, t: float, state: str) -> None:
        """The station reported ``state`` (working, down, changeover or idle) at ``t``."""
        if state not in _STATES:
            raise ValueError(f"state must be one of {sorted(_STATES)}, got {state!r}")
        self._advance(t)
        self.state = state
        self.category = self._judge()

    def set_wip(self, t: float, wip: int) -> None:
        """The station's WIP (parts it holds) became ``wip`` at ``t``."""
        if wip < 0:
            raise ValueError(f"wip must be >= 0, got {wip!r}")
        self._advance(t)
        self.wip = wip
        self.category = self._judge()

    def set_on_shift(self, t: float, on: bool) -> None:
        """The shift calendar turned on (shift) or off (break, between shifts) at ``t``."""
        self._advance(t)
        self.on_shift = on
        self.category = self._judge()

    def totals(self, now: float) -> dict[str, float]:
        """Seconds per category (all of ``CATEGORIES``) from the first call up to ``now``."""
        out = dict(self.seconds)
        if self.since is not None:
            if now < self.since:
                raise ValueError(f"now={now!r} is earlier than the last change at {self.since!r}")
            out[self.category] += now - self.since
        return out

    def _advance(self, t: float) -> None:
        since = self.since
        if since is not None:
            if t < since:
                raise ValueError(f"t={t!r} is earlier than the last change at {since!r}")
            self.seconds[self.category] += t - since
        self.since = t

    def _judge(self) -> str:
        if self.state != "idle":
            return self.state
        if self.wip > 0:
            return "blocked"
        return "starved" if self.on_shift else "off_shift"
