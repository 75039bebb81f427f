"""Flow (dwell) time per location and end to end, and the age of the oldest part (DESIGN.md, Metrics:
"Flow (dwell) time").

``FlowTimeSketch`` keeps percentiles of durations in bounded memory with the DDSketch idea (Masson, Rim,
Lee, VLDB 2019): with ``gamma = (1 + alpha) / (1 - alpha)``, a duration ``x > 0`` is counted in bucket
``i = ceil(log_gamma(x))``, i.e. ``gamma**(i-1) < x <= gamma**i``, whose representative value
``2 * gamma**i / (gamma + 1)`` is within relative error ``alpha`` of every value in the bucket. Quantiles
use nearest rank, the definition of ``wipwatch.simulators.truth.percentile``: the smallest value with at
least q % of the values at or below it, rank ``max(1, ceil(q / 100 * n))``. The reported value is within
``alpha`` (relative) of the exact nearest-rank value. Memory grows with ``log(max / min) / log(gamma)``
buckets, about 1,040 buckets from 1 ms to 11 days at alpha 0.01, not with the number of durations.
Zero durations have their own counter (log 0 is undefined).

``Residents`` keeps the parts present at a location and their arrival time, so the dwell time of a
departing part and the age of the oldest part (``now - min(arrival)``) are exact.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from collections.abc import Sequence
from functools import lru_cache
from itertools import accumulate

import msgspec


@lru_cache(maxsize=16)
def _log_gamma(alpha: float) -> float:
    return math.log((1 + alpha) / (1 - alpha))


class _Ranked:
    """A sketch's running counts (``seen[j]``: zeros and the first j sorted buckets) and the quantiles
    answered from them, per tuple of percentages."""

    __slots__ = ("answers", "seen")

    def __init__(self, seen: list[int]) -> None:
        self.seen = seen
        self.answers: dict[tuple[float, ...], list[float | None]] = {}


class FlowTimeSketch(msgspec.Struct, kw_only=True, dict=True):
    """Durations in seconds, as counts per logarithmic bucket with relative accuracy ``alpha``.

    ``quantiles`` keeps what it computed in the instance ``__dict__`` (not fields: never encoded): the
    sorted bucket indexes in ``_keys`` until a duration falls in a new bucket, and the running counts and
    its last answer in ``_ranked`` until the next ``add`` or ``merge``. Points render every location's
    percentiles once a period: an unchanged sketch answers from the cache, a changed one sums its counts
    without sorting again (sorting ~250 bucket indexes was most of it; issue #16).
    """

    alpha: float = 0.01
    buckets: dict[int, int] = {}
    zeros: int = 0
    count: int = 0
    total_s: float = 0.0
    min_s: float | None = None
    max_s: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1 (exclusive), got {self.alpha!r}")

    def add(self, seconds: float, count: int = 1) -> None:
        """Count ``count`` parts that spent ``seconds`` (>= 0)."""
        if not 0.0 <= seconds < math.inf:
            raise ValueError(f"seconds must be a finite duration >= 0, got {seconds!r}")
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count!r}")
        cache = self.__dict__
        cache.pop("_ranked", None)
        if seconds == 0.0:
            self.zeros += count
        else:
            i = math.ceil(math.log(seconds) / _log_gamma(self.alpha))
            buckets = self.buckets
            if i in buckets:
                buckets[i] += count
            else:
                buckets[i] = count
                cache.pop("_keys", None)
        self.count += count
        self.total_s += seconds * count
        if self.min_s is None or seconds < self.min_s:
            self.min_s = seconds
        if self.max_s is None or seconds > self.max_s:
            self.max_s = seconds

    def quantile(self, q: float) -> float | None:
        """The nearest-rank ``q``-th percentile (q in [0, 100]) within ``alpha``, or None if empty."""
        if not 0 <= q <= 100:
            raise ValueError(f"q must be a percentage in [0, 100], got {q!r}")
        if self.count == 0 or self.min_s is None or self.max_s is None:
            return None
        rank = max(1, math.ceil(q / 100 * self.count))
        seen = self.zeros
        if rank <= seen:
            return 0.0
        log_gamma = _log_gamma(self.alpha)
        gamma = math.exp(log_gamma)
        for i in sorted(self.buckets):
            seen += self.buckets[i]
            if seen >= rank:
                value = 2 * math.exp(i * log_gamma) / (gamma + 1)
                # the exact value lies in [min, max] too, so clamping only brings the estimate closer
                return min(max(value, self.min_s), self.max_s)
        return self.max_s  # not reached: the buckets and zeros add up to count

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """``quantile(q)`` for each of ``qs``, from one sorted pass over the buckets (points need several).

        The running counts are summed in C (``accumulate``) and each rank is found by bisection: every
        point of a period renders a location's percentiles, so this was the processors' hottest function.
        """
        for q in qs:
            if not 0 <= q <= 100:
                raise ValueError(f"q must be a percentage in [0, 100], got {q!r}")
        if self.count == 0 or self.min_s is None or self.max_s is None:
            return [None] * len(qs)
        low, high = self.min_s, self.max_s
        cache = self.__dict__
        ranked: _Ranked | None = cache.get("_ranked")
        if ranked is None:
            buckets = self.buckets
            keys: list[int] | None = cache.get("_keys")
            if keys is None:
                keys = cache["_keys"] = sorted(buckets)
            # seen[j]: durations in the zero counter and the first j buckets
            ranked = _Ranked(list(accumulate(map(buckets.__getitem__, keys), initial=self.zeros)))
            cache["_ranked"] = ranked
        answer = ranked.answers.get(tuple(qs))
        if answer is None:
            answer = ranked.answers[tuple(qs)] = self._ranks(qs, cache["_keys"], ranked.seen, low, high)
        return list(answer)

    def _ranks(
        self, qs: Sequence[float], keys: list[int], seen: list[int], low: float, high: float
    ) -> list[float | None]:
        log_gamma = _log_gamma(self.alpha)
        gamma = math.exp(log_gamma)
        out: list[float | None] = []
        for q in qs:
            rank = max(1, math.ceil(q / 100 * self.count))
            j = bisect_left(seen, rank)
            if j == 0:
                out.append(0.0)
            elif j == len(seen):
                out.append(high)  # not reached: the buckets and zeros add up to count
            else:
                value = 2 * math.exp(keys[j - 1] * log_gamma) / (gamma + 1)
                out.append(min(max(value, low), high))
        return out

    def mean(self) -> float | None:
        """Mean duration (exact sum / count), or None if empty."""
        return self.total_s / self.count if self.count else None

    def merge(self, other: FlowTimeSketch) -> None:
        """Add all durations of ``other`` (same ``alpha``) to this sketch."""
        if other.alpha != self.alpha:
            raise ValueError(f"other.alpha must equal alpha={self.alpha!r}, got {other.alpha!r}")
        self.__dict__.pop("_ranked", None)
        self.__dict__.pop("_keys", None)
        buckets = self.buckets
        for i, n in other.buckets.items():
            buckets[i] = buckets.get(i, 0) + n
        self.zeros += other.zeros
        self.count += other.count
        self.total_s += other.total_s
        if other.min_s is not None and (self.min_s is None or other.min_s < self.min_s):
            self.min_s = other.min_s
        if other.max_s is not None and (self.max_s is None or other.max_s > self.max_s):
            self.max_s = other.max_s


class Residents(msgspec.Struct, kw_only=True):
    """Parts present at one location, with their arrival times and quantities.

    Storage: ``arrivals`` (part -> arrival time) answers ``has``/``leave`` in O(1); ``heap`` is a binary
    min-heap of ``(arrival, part)`` with lazy deletion for the oldest. A departed (or re-arrived) part's
    entry stays in the heap until it reaches the top, where ``oldest_age_s`` drops it, and the heap is
    rebuilt from ``arrivals`` once stale entries outnumber live ones, so it never holds more than about
    twice the parts present. Arrivals in time order push in O(1) (no sift), pops cost O(log n): amortised
    O(log n) per part for any arrival and departure order. An insertion-ordered dict with a head pointer
    was rejected: a dict cannot be indexed by position, ``next(iter(d))`` slows down with every deletion
    at its front in CPython, and out-of-order arrivals would break "first inserted = oldest".
    Quantities other than 1 are kept in the sparse ``batch_qty`` so the common case costs nothing.
    """

    arrivals: dict[str, float] = {}
    batch_qty: dict[str, int] = {}
    parts: int = 0
    heap: list[tuple[float, str]] = []

    def arrive(self, part: str, t: float, qty: int = 1) -> None:
        """``qty`` units of ``part`` arrived at ``t``; a part already here starts its stay again."""
        if qty < 1:
            raise ValueError(f"qty must be >= 1, got {qty!r}")
        arrivals = self.arrivals
        if part in arrivals:
            self.parts -= self.batch_qty.pop(part, 1)
        arrivals[part] = t
        if qty != 1:
            self.batch_qty[part] = qty
        self.parts += qty
        heapq.heappush(self.heap, (t, part))
        self._compact()

    def leave(self, part: str) -> float | None:
        """Remove ``part``; returns its arrival time, or None if it is not here."""
        t = self.arrivals.pop(part, None)
        if t is None:
            return None
        self.parts -= self.batch_qty.pop(part, 1)
        self._compact()
        return t

    def has(self, part: str) -> bool:
        """Whether ``part`` is here."""
        return part in self.arrivals

    def oldest_age_s(self, now: float) -> float | None:
        """Seconds the longest-present part has been here at ``now``, or None if empty."""
        heap = self.heap
        arrivals = self.arrivals
        while heap:
            t, part = heap[0]
            if arrivals.get(part) == t:
                return now - t
            heapq.heappop(heap)
        return None

    def count(self) -> int:
        """Parts present, counting each arrival's quantity."""
        return self.parts

    def _compact(self) -> None:
        if len(self.heap) > 2 * len(self.arrivals) + 64:
            self.heap = [(t, part) for part, t in self.arrivals.items()]
            heapq.heapify(self.heap)
