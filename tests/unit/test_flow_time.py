"""Dwell-time percentiles (DDSketch) against exact nearest rank, and the age of the oldest part."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import msgspec
import pytest

from wipwatch.processors.metrics.flow_time import FlowTimeSketch, Residents
from wipwatch.simulators.truth import percentile

pytestmark = pytest.mark.unit

QS = [0, 0.1, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 100]


def test_small_sample_by_hand() -> None:
    sketch = FlowTimeSketch()
    for seconds in [0, 0, 0, 10, 10, 100]:
        sketch.add(seconds)
    assert sketch.count == 6
    assert sketch.mean() == pytest.approx(20.0)  # (0 * 3 + 10 * 2 + 100) / 6
    assert sketch.quantile(0) == 0.0  # rank max(1, 0) = 1: a zero
    assert sketch.quantile(50) == 0.0  # rank ceil(0.5 * 6) = 3: the third zero
    # rank ceil(0.51 * 6) = 4: the first 10, reported as its bucket's value
    # i = ceil(ln 10 / ln(1.01 / 0.99)) = ceil(115.13) = 116; 2 * gamma**116 / (gamma + 1) = 10.0747
    assert sketch.quantile(51) == pytest.approx(10.0747, abs=1e-4)
    assert sketch.quantile(100) == pytest.approx(100, rel=0.01)  # rank 6


def test_one_value_is_reported_exactly() -> None:
    sketch = FlowTimeSketch()
    sketch.add(42.0, count=3)
    assert sketch.count == 3
    assert sketch.mean() == 42.0
    # the bucket value is clamped to [min, max] = [42, 42]
    assert [sketch.quantile(q) for q in (0, 50, 100)] == [42.0, 42.0, 42.0]


def test_empty_sketch_has_no_quantile_or_mean() -> None:
    sketch = FlowTimeSketch()
    assert sketch.quantile(50) is None
    assert sketch.mean() is None
    assert sketch.count == 0


_DISTRIBUTIONS: dict[str, Callable[[random.Random], float]] = {
    "exponential": lambda rng: rng.expovariate(1 / 300),
    "lognormal": lambda rng: rng.lognormvariate(5, 1.5),
    "uniform": lambda rng: rng.uniform(0, 3600),
    "pareto": lambda rng: 10 * rng.paretovariate(1.2),
    "milliseconds": lambda rng: rng.uniform(0.001, 0.01),
    "zeros_and_exponential": lambda rng: 0.0 if rng.random() < 0.2 else rng.expovariate(1 / 60),
    "deterministic_steps": lambda rng: float(rng.choice([30, 60, 90, 120])),
}


@pytest.mark.parametrize("alpha", [0.01, 0.05])
@pytest.mark.parametrize("name", sorted(_DISTRIBUTIONS))
def test_quantiles_are_within_alpha_of_exact_nearest_rank(name: str, alpha: float) -> None:
    rng = random.Random(f"{name}-{alpha}")
    values = [_DISTRIBUTIONS[name](rng) for _ in range(10_000)]
    sketch = FlowTimeSketch(alpha=alpha)
    for v in values:
        sketch.add(v)
    for q in QS:
        exact = percentile(values, q)
        got = sketch.quantile(q)
        assert exact is not None and got is not None
        if exact == 0:
            assert got == 0.0, f"q={q}"
        else:
            # the bound is exact in real arithmetic; allow floating-point noise at bucket edges
            assert abs(got - exact) / exact <= alpha * (1 + 1e-9), f"q={q}: {got} vs exact {exact}"
    assert sketch.mean() == pytest.approx(sum(values) / len(values), rel=1e-9)
    # bounded memory: one bucket per factor gamma between the smallest and largest positive value
    positive = [v for v in values if v > 0]
    gamma = (1 + alpha) / (1 - alpha)
    assert len(sketch.buckets) <= math.log(max(positive) / min(positive)) / math.log(gamma) + 2


def test_merge_equals_adding_everything_to_one_sketch() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(4, 1) for _ in range(2000)] + [0.0] * 10
    whole, left, right = FlowTimeSketch(), FlowTimeSketch(), FlowTimeSketch()
    for i, v in enumerate(values):
        whole.add(v)
        (left if i % 2 else right).add(v)
    left.merge(right)
    assert left.buckets == whole.buckets
    assert (left.zeros, left.count, left.min_s, left.max_s) == (whole.zeros, whole.count, 0.0, whole.max_s)
    assert [left.quantile(q) for q in QS] == [whole.quantile(q) for q in QS]
    assert left.mean() == pytest.approx(whole.mean())
    left.merge(FlowTimeSketch())  # an empty sketch changes nothing
    assert left.count == whole.count


def test_bad_arguments_name_the_parameter() -> None:
    sketch = FlowTimeSketch()
    for seconds in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="seconds"):
            sketch.add(seconds)
    with pytest.raises(ValueError, match="count"):
        sketch.add(1.0, count=0)
    for q in (-1, 100.5):
        with pytest.raises(ValueError, match="q must"):
            sketch.quantile(q)
    for alpha in (0.0, 1.0, math.nan):
        with pytest.raises(ValueError, match="alpha"):
            FlowTimeSketch(alpha=alpha)
    with pytest.raises(ValueError, match="alpha"):
        sketch.merge(FlowTimeSketch(alpha=0.02))


def test_sketch_round_trip_gives_an_equal_object_that_behaves_the_same() -> None:
    sketch = FlowTimeSketch(alpha=0.02)
    for v in [0.0, 0.5, 3.0, 3.1, 700.0, 1e5]:
        sketch.add(v)
    restored = msgspec.msgpack.decode(msgspec.msgpack.encode(sketch), type=FlowTimeSketch)
    assert restored == sketch
    for s in (sketch, restored):
        s.add(42.0, 2)
    assert restored == sketch
    assert [restored.quantile(q) for q in QS] == [sketch.quantile(q) for q in QS]


def test_oldest_part_with_fifo_departures() -> None:
    here = Residents()
    for part, t in [("a", 0.0), ("b", 10.0), ("c", 20.0)]:
        here.arrive(part, t)
    assert here.count() == 3
    assert here.oldest_age_s(30) == 30.0  # 30 - a's 0
    assert here.leave("a") == 0.0
    assert here.oldest_age_s(30) == 20.0  # 30 - b's 10
    assert here.leave("b") == 10.0
    assert here.leave("c") == 20.0
    assert here.oldest_age_s(30) is None
    assert here.count() == 0


def test_oldest_part_when_a_middle_or_late_part_leaves_first() -> None:
    here = Residents()
    for part, t in [("a", 0.0), ("b", 10.0), ("c", 20.0)]:
        here.arrive(part, t)
    assert here.leave("b") == 10.0
    assert here.oldest_age_s(30) == 30.0  # still a
    assert here.leave("c") == 20.0
    assert here.oldest_age_s(40) == 40.0  # the oldest leaves last
    here.arrive("d", 45.0)
    assert here.leave("a") == 0.0
    assert here.oldest_age_s(50) == 5.0  # 50 - d's 45


def test_out_of_order_arrivals() -> None:
    here = Residents()
    here.arrive("x", 50.0)
    here.arrive("y", 40.0)
    assert here.oldest_age_s(60) == 20.0  # 60 - y's 40


def test_unknown_parts_quantities_and_re_arrival() -> None:
    here = Residents()
    assert here.leave("ghost") is None
    here.arrive("lot", 0.0, qty=5)
    here.arrive("p", 1.0)
    assert here.has("lot") and here.has("p") and not here.has("ghost")
    assert here.count() == 6  # 5 + 1
    here.arrive("p", 10.0)  # arrived again without leaving: one stay, from 10
    assert here.count() == 6
    assert here.leave("lot") == 0.0
    assert here.count() == 1
    assert here.oldest_age_s(20) == 10.0  # 20 - p's second arrival at 10
    assert here.leave("p") == 10.0
    assert here.oldest_age_s(20) is None
    with pytest.raises(ValueError, match="qty"):
        here.arrive("q", 1.0, qty=0)


def test_stale_heap_entries_stay_bounded_while_the_oldest_never_leaves() -> None:
    here = Residents()
    here.arrive("stuck", 0.0)
    for i in range(10_000):
        here.arrive(f"p{i}", float(i + 1))
        here.leave(f"p{i}")
    assert len(here.heap) <= 2 * 1 + 64 + 1
    assert here.oldest_age_s(20_000) == 20_000.0


def test_random_arrivals_and_departures_against_a_plain_minimum() -> None:
    rng = random.Random(11)
    here = Residents()
    present: dict[str, float] = {}
    now = 0.0
    for i in range(20_000):
        now += rng.expovariate(1.0)
        if present and rng.random() < 0.5:
            # mostly FIFO, sometimes any part
            part = next(iter(present)) if rng.random() < 0.8 else rng.choice(list(present))
            assert here.leave(part) == present.pop(part)
        else:
            t = now - rng.uniform(0, 5) if rng.random() < 0.1 else now  # some arrive late
            here.arrive(f"p{i}", t)
            present[f"p{i}"] = t
        if i % 97 == 0:
            oldest = min(present.values()) if present else None
            assert here.oldest_age_s(now) == (None if oldest is None else now - oldest)
            assert here.count() == len(present)


def test_hundred_thousand_residents_round_trip() -> None:
    here = Residents()
    t0 = 1_790_000_000.0
    for i in range(100_000):
        here.arrive(f"P{i:06d}", t0 + i * 0.5)
    encoded = msgspec.msgpack.encode(here)
    # measured: 3,500,047 bytes, 35 bytes a part (arrivals entry 17 B + heap entry 18 B for 7-char ids);
    # about 180 bytes a part in Python objects (tracemalloc)
    restored = msgspec.msgpack.decode(encoded, type=Residents)
    assert restored == here
    for r in (here, restored):
        assert r.leave("P000000") == t0
        assert r.leave("P050000") == t0 + 25_000
    assert restored.oldest_age_s(t0 + 60_000) == here.oldest_age_s(t0 + 60_000) == 59_999.5  # P000001
    assert restored.count() == 99_998
    assert restored == here


def test_quantiles_in_one_pass_equal_quantile_one_by_one() -> None:
    rng = random.Random(5)
    for n in (0, 1, 3, 50, 2000):
        sketch = FlowTimeSketch()
        for _ in range(n):
            sketch.add(rng.choice([0.0, rng.expovariate(1 / 300)]), rng.randint(1, 3))
        qs = (99, 0, 50, 90, 100, 37.5)
        assert sketch.quantiles(qs) == [sketch.quantile(q) for q in qs]
    with pytest.raises(ValueError, match="q must be"):
        FlowTimeSketch().quantiles((50, 101))


def test_quantiles_kept_between_calls_follow_every_add_and_merge_and_are_never_encoded() -> None:
    rng = random.Random(11)
    sketch = FlowTimeSketch()
    qs = (50, 90, 99)
    for step in range(400):
        if step % 50 == 49:
            other = FlowTimeSketch()
            other.add(rng.expovariate(1 / 60), 2)
            sketch.merge(other)
        else:
            sketch.add(rng.choice([0.0, rng.expovariate(1 / 300)]), rng.randint(1, 3))
        # asked again and again between durations, as a point per period asks: never a stale answer
        assert sketch.quantiles(qs) == [sketch.quantile(q) for q in qs]
    blob = msgspec.msgpack.encode(sketch)
    again = msgspec.msgpack.decode(blob, type=FlowTimeSketch)
    assert msgspec.msgpack.encode(again) == blob  # what quantiles keeps is not part of the state
    assert again == sketch and again.quantiles(qs) == sketch.quantiles(qs)
