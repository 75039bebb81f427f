"""Inventory cost per buffer (DESIGN.md, Metrics: "Inventory cost").

Money tied up now and holding cost accrued so far, from the location's WIP N(t) as a step function::

    tied_up        = N(now) * unit_value
    wip_hours(now) = integral of N(t) dt from the first record to now / 3600      (part-hours)
    accrued(now)   = wip_hours(now) * cost_per_part_hour

``wip_hours / elapsed hours`` is the time-average WIP that Little's Law needs (``lead_time``).
"""

from __future__ import annotations

import math

import msgspec


class HoldingCost(msgspec.Struct, kw_only=True):
    """WIP of one location integrated over event time, priced per part and per part-hour."""

    unit_value: float
    cost_per_part_hour: float
    wip: int = 0
    since: float | None = None
    part_seconds: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.unit_value < math.inf:
            raise ValueError(f"unit_value must be a finite amount >= 0, got {self.unit_value!r}")
        if not 0 <= self.cost_per_part_hour < math.inf:
            raise ValueError(
                f"cost_per_part_hour must be a finite amount >= 0, got {self.cost_per_part_hour!r}"
            )

    def record(self, t: float, wip: int) -> None:
        """The location's WIP became ``wip`` at ``t`` (the first call starts the integral)."""
        since = self.since
        if since is not None:
            if t < since:
                raise ValueError(f"t={t!r} is earlier than the last record at {since!r}")
            self.part_seconds += self.wip * (t - since)
        self.since = t
        self.wip = wip

    def tied_up(self) -> float:
        """Value of the parts here now: ``wip * unit_value``."""
        return self.wip * self.unit_value

    def wip_hours(self, now: float) -> float:
        """Part-hours spent here from the first record to ``now``."""
        if self.since is None:
            return 0.0
        if now < self.since:
            raise ValueError(f"now={now!r} is earlier than the last record at {self.since!r}")
        return (self.part_seconds + self.wip * (now - self.since)) / 3600

    def accrued(self, now: float) -> float:
        """Holding cost accrued up to ``now``: ``wip_hours(now) * cost_per_part_hour``."""
        return self.wip_hours(now) * self.cost_per_part_hour
