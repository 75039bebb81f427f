"""A right-continuous integer step function over event time, trimmed to a sliding window.

Private helper of ``queue_growth`` (WIP N(t)) and ``throughput`` (cumulative departures): both answer
"what was the value at time x" for x inside a sliding window, and must stay O(1) amortised per record.
"""

from __future__ import annotations

from bisect import bisect_right

import msgspec

# Trimmed samples are dropped from the lists only once they are both this many and more than half of
# them, so each `del` costs O(n) after at least n/2 cheap trims: O(1) amortised.
_COMPACT_MIN = 256


class StepSeries(msgspec.Struct, kw_only=True):
    """Samples (time, value), oldest first; samples before ``head`` are trimmed and await compaction."""

    times: list[float] = []
    values: list[int] = []
    head: int = 0

    def set(self, t: float, value: int) -> None:
        """The function takes ``value`` from ``t`` on; a later sample at the same ``t`` overwrites it."""
        times = self.times
        if times and t <= times[-1]:
            if t < times[-1]:
                raise ValueError(f"t={t!r} is earlier than the last sample at {times[-1]!r}")
            self.values[-1] = value
            return
        times.append(t)
        self.values.append(value)

    def at(self, t: float, before: int) -> int:
        """The value at ``t``, or ``before`` when ``t`` precedes every sample.

        ``t`` must not precede the last ``forget_before`` time: older samples may be gone.
        """
        i = bisect_right(self.times, t, self.head) - 1
        return self.values[i] if i >= self.head else before

    def forget_before(self, t: float) -> None:
        """Trim samples not needed to answer ``at(x)`` for any ``x >= t`` (keeps one at or before ``t``)."""
        times = self.times
        head = self.head
        last = len(times) - 1
        while head < last and times[head + 1] <= t:
            head += 1
        if head > _COMPACT_MIN and 2 * head > len(times):
            del times[:head]
            del self.values[:head]
            head = 0
        self.head = head
