"""Throughput over a sliding window and against demand, hand-computed."""

from __future__ import annotations

import math

import msgspec
import pytest

from wipwatch.processors.metrics.throughput import Throughput, production_ratio, surplus_parts

pytestmark = pytest.mark.unit


def test_parts_in_a_full_window() -> None:
    tp = Throughput(window_s=600)
    tp.start(0)
    for t, qty in [(100, 1), (200, 2), (650, 1), (900, 3)]:
        tp.record(t, qty)
    assert tp.total == 7  # 1 + 2 + 1 + 3
    assert tp.per_hour(900) == pytest.approx(24.0)  # (300, 900]: 1 + 3 = 4 parts * 3600 / 600
    assert tp.per_hour(1000) == pytest.approx(24.0)  # (400, 1000]: 4 parts
    assert tp.per_hour(1250) == pytest.approx(18.0)  # (650, 1250]: 3 parts; the one at 650 is out


def test_window_is_half_open_at_its_start() -> None:
    tp = Throughput(window_s=60)
    tp.start(0)
    tp.record(100)
    tp.record(130)
    assert tp.per_hour(160) == pytest.approx(60.0)  # (100, 160]: only the part at 130 -> 1 * 3600 / 60
    assert tp.per_hour(159) == pytest.approx(120.0)  # (99, 159]: 2 * 3600 / 60


def test_before_a_full_window_divides_by_the_elapsed_time() -> None:
    tp = Throughput(window_s=3600)
    tp.start(1000)
    tp.record(1100, 2)
    tp.record(1400)
    assert tp.per_hour(1600) == pytest.approx(18.0)  # 3 parts in 600 s since start -> 3 * 3600 / 600


def test_without_start_the_first_departure_starts_the_observation() -> None:
    tp = Throughput(window_s=3600)
    tp.record(50, 2)
    assert tp.per_hour(50) == 0.0  # no time elapsed
    assert tp.per_hour(110) == pytest.approx(120.0)  # 2 parts in 60 s -> 2 * 3600 / 60
    tp.start(20)  # the line's first event came earlier: the earliest start wins
    assert tp.per_hour(110) == pytest.approx(80.0)  # 2 parts in 90 s -> 2 * 3600 / 90


def test_nothing_recorded_is_zero() -> None:
    tp = Throughput(window_s=600)
    assert tp.per_hour(100) == 0.0
    tp.start(0)
    assert tp.per_hour(100) == 0.0  # started, no departures: 0 parts / 100 s


def test_memory_stays_bounded_by_the_window() -> None:
    tp = Throughput(window_s=60)
    for i in range(10_000):
        tp.record(float(i))
    assert tp.total == 10_000
    assert tp.per_hour(9999) == pytest.approx(3600.0)  # (9939, 9999]: 60 parts * 3600 / 60
    assert len(tp.cumulative.times) <= 61 + 2 * 256 + 1


def test_same_instant_departures_add_up() -> None:
    tp = Throughput(window_s=60)
    tp.start(0)
    tp.record(30)
    tp.record(30, 2)
    assert len(tp.cumulative.times) == 1
    assert tp.per_hour(60) == pytest.approx(180.0)  # 3 parts * 3600 / 60


def test_bad_arguments_name_the_parameter() -> None:
    with pytest.raises(ValueError, match="window_s"):
        Throughput(window_s=0)
    with pytest.raises(ValueError, match="window_s"):
        Throughput(window_s=math.nan)
    with pytest.raises(ValueError, match="qty"):
        Throughput(window_s=60).record(1, 0)
    late = Throughput(window_s=60)
    late.record(10)
    with pytest.raises(ValueError, match="t=9"):
        late.record(9)
    with pytest.raises(ValueError, match="demand_per_hour"):
        production_ratio(10, -1)
    with pytest.raises(ValueError, match="demand_per_hour"):
        surplus_parts(10, -1, 60)


def test_production_ratio_against_demand() -> None:
    assert production_ratio(45.0, 60.0) == pytest.approx(0.75)  # 45 / 60
    assert production_ratio(45.0, None) is None
    assert production_ratio(45.0, 0.0) is None


def test_surplus_is_over_production_positive_under_production_negative() -> None:
    assert surplus_parts(70, 60.0, 3600) == pytest.approx(10.0)  # 70 - 60 * 3600 / 3600
    assert surplus_parts(20, 60.0, 1800) == pytest.approx(-10.0)  # 20 - 60 * 1800 / 3600
    assert surplus_parts(20, 0.0, 1800) == pytest.approx(20.0)  # no demand at all: everything is surplus
    assert surplus_parts(20, None, 1800) is None


def test_round_trip_gives_an_equal_object_that_behaves_the_same() -> None:
    tp = Throughput(window_s=60)
    tp.start(0)
    for i in range(700):
        tp.record(i * 0.5, 1 + i % 3)
    restored = msgspec.msgpack.decode(msgspec.msgpack.encode(tp), type=Throughput)
    assert restored == tp
    for x in (tp, restored):
        x.record(400, 2)
    assert restored == tp
    # (350, 410]: the one record at 400 with 2 parts -> 2 * 3600 / 60
    assert restored.per_hour(410) == tp.per_hour(410) == pytest.approx(120.0)
