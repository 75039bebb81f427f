"""Queue growth dN/dt over a sliding window and time since the queue last shrank, hand-computed."""

from __future__ import annotations

import math

import msgspec
import pytest

from wipwatch.processors.metrics.queue_growth import QueueGrowth, new_queue_growth

pytestmark = pytest.mark.unit


def _history() -> QueueGrowth:
    # N(t): 0 from t=0, 2 from 100, 5 from 400, 3 from 700, 9 from 1000; window 600 s
    growth = new_queue_growth(600)
    for t, wip in [(0, 0), (100, 2), (400, 5), (700, 3), (1000, 9)]:
        growth.record(t, wip)
    return growth


def test_growth_over_a_full_window() -> None:
    growth = _history()
    assert growth.per_hour(1000) == pytest.approx(24.0)  # (N(1000)=9 - N(400)=5) / 600 * 3600
    assert growth.per_hour(1100) == pytest.approx(24.0)  # (N(1100)=9 - N(500)=5) / 600 * 3600
    assert growth.per_hour(1300) == pytest.approx(36.0)  # (N(1300)=9 - N(700)=3) / 600 * 3600
    assert growth.per_hour(1600) == pytest.approx(0.0)  # (N(1600)=9 - N(1000)=9) / 600 * 3600


def test_shrinking_queue_grows_negatively() -> None:
    growth = new_queue_growth(60)
    growth.record(0, 10)
    growth.record(30, 4)
    assert growth.per_hour(89) == pytest.approx(-360.0)  # (N(89)=4 - N(29)=10) / 60 * 3600
    # N is right-continuous: N(30) is already 4, so the window [30, 90] saw no change
    assert growth.per_hour(90) == 0.0


def test_history_shorter_than_the_window_uses_the_observed_span() -> None:
    growth = new_queue_growth(600)
    growth.record(0, 0)
    growth.record(100, 2)
    assert growth.per_hour(250) == pytest.approx(28.8)  # (N(250)=2 - N(0)=0) / 250 * 3600
    growth.record(400, 5)
    assert growth.per_hour(600) == pytest.approx(30.0)  # exactly one window: (5 - N(0)=0) / 600 * 3600


def test_first_record_with_parts_already_there_is_the_baseline() -> None:
    growth = new_queue_growth(3600)
    growth.record(1000, 7)
    growth.record(1900, 10)
    assert growth.per_hour(1900) == pytest.approx(12.0)  # (10 - 7) / 900 * 3600


def test_nothing_recorded_or_no_elapsed_time_is_zero() -> None:
    growth = new_queue_growth(600)
    assert growth.per_hour(50) == 0.0
    assert growth.since_shrink_s(50) == 0.0
    growth.record(50, 3)
    assert growth.per_hour(50) == 0.0  # now == first: no span to divide by


def test_since_shrink_counts_from_the_last_decrease_or_the_first_record() -> None:
    growth = new_queue_growth(600)
    growth.record(0, 0)
    growth.record(100, 2)
    assert growth.since_shrink_s(150) == pytest.approx(150.0)  # never shrank: 150 - first 0
    growth.record(400, 5)
    growth.record(700, 3)
    growth.record(1000, 9)
    assert growth.since_shrink_s(1000) == pytest.approx(300.0)  # shrank 5 -> 3 at 700: 1000 - 700


def test_changes_at_one_instant_are_judged_by_the_value_they_settle_on() -> None:
    growth = new_queue_growth(600)
    growth.record(0, 3)
    growth.record(5, 2)  # shrank at 5
    growth.record(10, 1)  # out at 10 ...
    growth.record(10, 2)  # ... and in at 10: settled 2 == 2 before the instant, no shrink at 10
    assert growth.since_shrink_s(20) == pytest.approx(15.0)  # 20 - 5
    growth.record(12, 3)
    growth.record(12, 1)  # in and out at 12, settled 1 < 2: a shrink at 12
    assert growth.since_shrink_s(20) == pytest.approx(8.0)  # 20 - 12
    assert growth.per_hour(20) == pytest.approx(-360.0)  # (N(20)=1 - N(0)=3) / 20 * 3600


def test_changes_at_the_first_instant_are_no_shrink() -> None:
    growth = new_queue_growth(600)
    growth.record(0, 3)
    growth.record(0, 1)
    assert growth.since_shrink_s(30) == pytest.approx(30.0)  # nothing before the first instant
    assert growth.per_hour(30) == 0.0  # N(0) settled on 1, N(30) = 1


def test_memory_stays_bounded_by_the_window() -> None:
    growth = new_queue_growth(60)
    for i in range(10_000):
        growth.record(float(i), i)
    assert growth.per_hour(9999) == pytest.approx(3600.0)  # (9999 - N(9939)=9939) / 60 * 3600
    # one sample a second: 61 in the window plus at most twice the compaction threshold trimmed
    assert len(growth.series.times) <= 61 + 2 * 256 + 1
    assert len(growth.series.times) == len(growth.series.values)


def test_records_going_back_in_time_are_rejected() -> None:
    growth = new_queue_growth(60)
    growth.record(10, 1)
    with pytest.raises(ValueError, match="t=9"):
        growth.record(9, 2)


@pytest.mark.parametrize("window_s", [0, -1.0, math.nan, math.inf])
def test_window_must_be_positive(window_s: float) -> None:
    with pytest.raises(ValueError, match="window_s"):
        new_queue_growth(window_s)
    with pytest.raises(ValueError, match="window_s"):
        QueueGrowth(window_s=window_s)


def test_round_trip_gives_an_equal_object_that_behaves_the_same() -> None:
    growth = new_queue_growth(60)
    for i in range(600):
        growth.record(i * 0.5, (i * 7) % 11)
    growth.record(299.5, 4)
    restored = msgspec.msgpack.decode(msgspec.msgpack.encode(growth), type=QueueGrowth)
    assert restored == growth
    for q in (growth, restored):
        q.record(300.0, 2)
        q.record(300.0, 5)
        q.record(320.0, 1)
    assert restored == growth
    assert restored.per_hour(330) == growth.per_hour(330)
    assert restored.since_shrink_s(330) == growth.since_shrink_s(330) == pytest.approx(10.0)  # 330 - 320
