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


#: Buckets per block of ``_Index``: a rank is found among ~n/16 block sums, then within one block.
_BLOCK = 16


class _Index:
    """A sketch's buckets in index order, with their counts and the sums of each ``_BLOCK`` of them, kept
    up to date by ``add``: a rank is found without summing every bucket (~250 of them per location;
    summing them for every period's percentiles was most of the points' cost, issue #16)."""

    __slots__ = ("blocks", "counts", "keys")

    def __init__(self, buckets: dict[int, int]) -> None:
        self.keys = sorted(buckets)
        self.counts = [buckets[i] for i in self.keys]
        self.blocks = self._sums()

    def _sums(self) -> list[int]:
        counts = self.counts
        return [sum(counts[j : j + _BLOCK]) for j in range(0, len(counts), _BLOCK)]

    def add(self, i: int, count: int, new: bool) -> None:
        """``count`` more durations in bucket ``i`` (``new``: the sketch had no bucket ``i``)."""
        j = bisect_left(self.keys, i)
        if new:
            self.keys.insert(j, i)
            self.counts.insert(j, count)
            self.blocks = self._sums()
        else:
            self.counts[j] += count
            self.blocks[j // _BLOCK] += count

    def position(self, need: int, ends: list[int]) -> int:
        """The smallest j with ``sum(counts[:j]) >= need`` (``need`` >= 1), or ``len(keys) + 1`` if none:
        ``bisect_left`` over the running counts, as ``quantiles`` defines the rank's bucket. ``ends``: the
        running sums of the blocks (``accumulate(blocks)``)."""
        b = bisect_left(ends, need)
        if b == len(ends):
            return len(self.keys) + 1
        seen = ends[b - 1] if b else 0
        j = b * _BLOCK
        counts = self.counts
        while True:
            seen += counts[j]
            j += 1
            if seen >= need:
                return j


class FlowTimeSketch(msgspec.Struct, kw_only=True, dict=True):
    """Durations in seconds, as counts per logarithmic bucket with relative accuracy ``alpha``.

    ``quantiles`` keeps what it computed in the instance ``__dict__`` (not fields: never encoded): the
    buckets sorted, with block sums, in ``_index`` (``_Index``, kept up to date by ``add``) and its answers
    in ``_answers`` until the next ``add``; ``merge`` drops both. Points render every location's
    percentiles once a period: an unchanged sketch answers from the cache, a changed one finds each rank
    among the block sums.
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
        cache.pop("_answers", None)
        if seconds == 0.0:
            self.zeros += count
        else:
            i = math.ceil(math.log(seconds) / _log_gamma(self.alpha))
            buckets = self.buckets
            new = i not in buckets
            buckets[i] = count if new else buckets[i] + count
            index: _Index | None = cache.get("_index")
            if index is not None:
                index.add(i, count, new)
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

        Each rank is found among the block sums of ``_Index`` and then within one block, and the answer is
        kept until the next ``add``: every period renders every location's percentiles.
        """
        for q in qs:
            if not 0 <= q <= 100:
                raise ValueError(f"q must be a percentage in [0, 100], got {q!r}")
        if self.count == 0 or self.min_s is None or self.max_s is None:
            return [None] * len(qs)
        cache = self.__dict__
        answers: dict[tuple[float, ...], list[float | None]] | None = cache.get("_answers")
        if answers is None:
            answers = cache["_answers"] = {}
        answer = answers.get(tuple(qs))
        if answer is None:
            answer = answers[tuple(qs)] = self._ranks(qs)
        return list(answer)

    def _ranks(self, qs: Sequence[float]) -> list[float | None]:
        low, high = self.min_s, self.max_s
        assert low is not None and high is not None
        index: _Index | None = self.__dict__.get("_index")
        if index is None:
            index = self.__dict__["_index"] = _Index(self.buckets)
        log_gamma = _log_gamma(self.alpha)
        gamma = math.exp(log_gamma)
        keys = index.keys
        ends = list(accumulate(index.blocks))
        out: list[float | None] = []
        for q in qs:
            rank = max(1, math.ceil(q / 100 * self.count))
            # j: the rank's bucket is the j-th (1-based) in index order; 0: among the zeros
            j = 0 if rank <= self.zeros else index.position(rank - self.zeros, ends)
            if j == 0:
                out.append(0.0)
            elif j > len(keys):
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
        self.__dict__.pop("_answers", None)
        self.__dict__.pop("_index", None)
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
