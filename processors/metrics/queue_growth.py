"""Queue growth per location (DESIGN.md, Metrics: "Queue growth").

Growth rate over the sliding window ``[now - W, now]``, in parts per hour::

    growth = (N(now) - N(now - W)) / W * 3600

where N is the location's WIP as a right-continuous step function of event time. While less than W has
been observed since the first record at ``t0``, the window is the observed span:
``(N(now) - N(t0)) / (now - t0) * 3600`` (0.0 when ``now == t0``).

Also the time since the queue last shrank. Several records at one event time are one change, judged by
the value they settle on (docs/simulators.md: "apply all events with the same event time before
judging"): a part moving out and the next moving in at the same instant is no shrink.
"""

from __future__ import annotations

import msgspec

from ._step import StepSeries


class QueueGrowth(msgspec.Struct, kw_only=True):
    """WIP history of one location, kept only as far back as the window needs."""

    window_s: float
    wip: int = 0
    first: float | None = None
    last_shrink: float | None = None
    # The instant being recorded, the WIP settled before it and the last shrink before it: a later record
    # at the same instant revises the judgement "did the queue shrink at this instant".
    instant: float | None = None
    instant_base: int | None = None
    shrink_before_instant: float | None = None
    series: StepSeries = msgspec.field(default_factory=StepSeries)

    def __post_init__(self) -> None:
        if not 0 < self.window_s < float("inf"):
            raise ValueError(f"window_s must be a positive number of seconds, got {self.window_s!r}")

    def record(self, t: float, wip: int) -> None:
        """The location's WIP became ``wip`` at event time ``t`` (the first call starts the history)."""
        if self.instant is None:
            self.first = t
            self.instant = t
        elif t > self.instant:
            self.instant_base = self.wip
            self.shrink_before_instant = self.last_shrink
            self.instant = t
        elif t < self.instant:
            raise ValueError(f"t={t!r} is earlier than the last record at {self.instant!r}")
        base = self.instant_base
        self.last_shrink = t if base is not None and wip < base else self.shrink_before_instant
        self.wip = wip
        series = self.series
        series.set(t, wip)
        series.forget_before(t - self.window_s)

    def per_hour(self, now: float) -> float:
        """Growth of WIP over the window ending at ``now`` (at or after the last record), parts per hour."""
        first = self.first
        if first is None or now <= first:
            return 0.0
        start = now - self.window_s
        span = self.window_s
        if start < first:
            start, span = first, now - first
        series = self.series
        return (series.at(now, self.wip) - series.at(start, self.wip)) / span * 3600

    def since_shrink_s(self, now: float) -> float:
        """Seconds since WIP last decreased, or since the first record if it never did (0.0 if none)."""
        ref = self.last_shrink if self.last_shrink is not None else self.first
        return 0.0 if ref is None else now - ref


def new_queue_growth(window_s: float) -> QueueGrowth:
    """An empty queue-growth history.

    Args:
        window_s: Length of the sliding window in seconds, > 0.

    Raises:
        ValueError: ``window_s`` is not positive.
    """
    return QueueGrowth(window_s=window_s)
