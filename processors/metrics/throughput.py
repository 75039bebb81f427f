"""Throughput per station and line versus customer demand (DESIGN.md, Metrics: "Throughput").

Departures over the sliding window ``(now - W, now]``, in parts per hour::

    throughput = parts departed in (now - W, now] * 3600 / W

While less than W has passed since the observation start ``t0`` (the line's first event, or the first
departure), the divisor is the elapsed time ``now - t0`` instead of W (0.0 when nothing has elapsed).

Against demand (takt): ``production_ratio = throughput / demand`` and
``surplus = produced - demand * elapsed / 3600`` parts, positive for over-production (producing with no
customer order for it), negative for under-production.
"""

from __future__ import annotations

import math

import msgspec

from ._step import StepSeries


class Throughput(msgspec.Struct, kw_only=True):
    """Departures of one station or line: a running total and the window's cumulative counts."""

    window_s: float
    total: int = 0
    started: float | None = None
    # cumulative departures (``total``) as a step function of time: parts in (a, b] = C(b) - C(a)
    cumulative: StepSeries = msgspec.field(default_factory=StepSeries)

    def __post_init__(self) -> None:
        if not 0 < self.window_s < math.inf:
            raise ValueError(f"window_s must be a positive number of seconds, got {self.window_s!r}")

    def start(self, t: float) -> None:
        """Start observing at ``t`` (the earliest of all calls and the first departure wins)."""
        if self.started is None or t < self.started:
            self.started = t

    def record(self, t: float, qty: int = 1) -> None:
        """``qty`` parts departed at event time ``t``."""
        if qty < 1:
            raise ValueError(f"qty must be >= 1, got {qty!r}")
        if self.started is None:
            self.started = t
        self.total += qty
        cumulative = self.cumulative
        cumulative.set(t, self.total)
        cumulative.forget_before(t - self.window_s)

    def per_hour(self, now: float) -> float:
        """Parts per hour over the window ending at ``now`` (at or after the last record)."""
        if self.started is None:
            return 0.0
        elapsed = now - self.started
        if elapsed <= 0:
            return 0.0
        cumulative = self.cumulative
        parts = cumulative.at(now, 0) - cumulative.at(now - self.window_s, 0)
        return parts * 3600 / min(elapsed, self.window_s)


def production_ratio(parts_per_hour: float, demand_per_hour: float | None) -> float | None:
    """Throughput as a fraction of customer demand (1.0 = producing exactly to takt).

    Args:
        parts_per_hour: Measured throughput.
        demand_per_hour: Customer demand, or None where the site file gives none.

    Returns:
        The ratio, or None when there is no demand (None or 0).
    """
    if demand_per_hour is None or demand_per_hour == 0:
        return None
    if demand_per_hour < 0:
        raise ValueError(f"demand_per_hour must be >= 0, got {demand_per_hour!r}")
    return parts_per_hour / demand_per_hour


def surplus_parts(produced: int, demand_per_hour: float | None, elapsed_s: float) -> float | None:
    """Parts produced beyond demand over ``elapsed_s``: positive = over-, negative = under-production.

    Args:
        produced: Parts produced in the elapsed time.
        demand_per_hour: Customer demand, or None where the site file gives none.
        elapsed_s: Seconds of observation.

    Returns:
        ``produced - demand_per_hour * elapsed_s / 3600``, or None when there is no demand.
    """
    if demand_per_hour is None:
        return None
    if demand_per_hour < 0:
        raise ValueError(f"demand_per_hour must be >= 0, got {demand_per_hour!r}")
    return produced - demand_per_hour * elapsed_s / 3600
