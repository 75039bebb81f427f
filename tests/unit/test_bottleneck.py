"""Active-period bottleneck, online: hand-drawn timelines (active periods as [start, end))."""

from __future__ import annotations

import msgspec
import pytest

from wipwatch.processors.metrics.bottleneck import ActivePeriods

pytestmark = pytest.mark.unit


def _run(periods: ActivePeriods, calls: list[tuple[float, str, bool]]) -> None:
    for t, station, active in calls:
        periods.set_active(t, station, active)


def _approx(shares: dict[str, tuple[float, float, float]]) -> dict[str, object]:
    return {s: pytest.approx(v) for s, v in shares.items()}


# t:  0    10   20   30   40   50   60
# A:  [=========)                          [0, 20)
# B:       [==================)            [10, 40)
# C:                      [=========.....)  [35, 60)
# bottleneck (online): A on [0, 20), B on [20, 40), C on [40, 60)
# shifting: A's tail [10, 20) (B already active), B's tail [35, 40) (C already active)
THREE = [
    (0, "A", True),
    (10, "B", True),
    (20, "A", False),
    (35, "C", True),
    (40, "B", False),
    (60, "C", False),
]


def test_shifting_bottleneck_across_three_stations() -> None:
    periods = ActivePeriods()
    _run(periods, THREE)
    assert periods.shares(60) == _approx(
        {
            "A": (20 / 60, 10 / 60, 10 / 60),  # [0, 20): sole [0, 10), shifting [10, 20)
            "B": (20 / 60, 15 / 60, 5 / 60),  # [20, 40): sole [20, 35), shifting [35, 40)
            "C": (20 / 60, 20 / 60, 0.0),  # [40, 60): nobody active after it, all sole
        }
    )


def test_momentary_bottleneck_and_period_lengths_along_the_timeline() -> None:
    periods = ActivePeriods()
    _run(periods, THREE[:2])
    assert periods.momentary(15) == "A"  # ongoing 15 s against B's 5 s
    assert periods.active_period_s(15, "A") == 15.0
    assert periods.active_period_s(15, "B") == 5.0
    assert periods.active_period_s(15, "C") == 0.0  # never active
    _run(periods, THREE[2:4])
    assert periods.momentary(38) == "B"  # 28 s against C's 3 s
    assert periods.active_period_s(38, "A") == 0.0
    # provisional: B's tenure [20, 38) is sole until its period ends with C already active
    assert periods.shares(38)["B"] == pytest.approx((18 / 38, 18 / 38, 0.0))
    _run(periods, THREE[4:])
    assert periods.momentary(60) is None


def test_shifting_is_clipped_to_the_outgoing_stations_tenure() -> None:
    # t:  0    10   20   30   40   50   60
    # A:  [==============)                     [0, 30)
    # B:       [===================)           [10, 50)
    # C:          [=====================)      [15, 60)
    # A on [0, 30), shifting from B's start 10; B on [30, 50), all of it shifting (C active since 15)
    periods = ActivePeriods()
    _run(
        periods,
        [
            (0, "A", True),
            (10, "B", True),
            (15, "C", True),
            (30, "A", False),
            (50, "B", False),
            (60, "C", False),
        ],
    )
    assert periods.shares(60) == _approx(
        {
            "A": (30 / 60, 10 / 60, 20 / 60),  # shifting [10, 30)
            "B": (20 / 60, 0.0, 20 / 60),  # shifting [30, 50): max(C's start 15, tenure start 30) = 30
            "C": (10 / 60, 10 / 60, 0.0),  # [50, 60)
        }
    )


def test_idle_gaps_belong_to_no_station() -> None:
    # t:  0    10   20   30   40
    # A:  [====)                     [0, 10)
    # B:            [====)           [20, 30)
    periods = ActivePeriods()
    _run(periods, [(0, "A", True), (10, "A", False), (20, "B", True), (30, "B", False)])
    shares = periods.shares(40)
    assert shares == _approx({"A": (0.25, 0.25, 0.0), "B": (0.25, 0.25, 0.0)})  # 10 / 40 each, no overlap
    assert periods.momentary(40) is None


def test_idle_and_active_again_within_one_instant_keeps_the_period() -> None:
    # A works part after part: at 10 and 20 it goes idle and starts the next part at the same instant.
    # t:  0    10   20   30
    # A:  [====|====|====)    one period [0, 30)
    # B:    [=============)   [5, 30)
    periods = ActivePeriods()
    _run(
        periods,
        [
            (0, "A", True),
            (5, "B", True),
            (10, "A", False),
            (10, "A", True),
            (20, "A", False),
            (20, "A", True),
        ],
    )
    assert periods.active_period_s(25, "A") == 25.0
    assert periods.momentary(25) == "A"
    assert periods.shares(30) == _approx({"A": (1.0, 1.0, 0.0), "B": (0.0, 0.0, 0.0)})


def test_a_new_period_at_a_later_instant_starts_over() -> None:
    periods = ActivePeriods()
    _run(periods, [(0, "A", True), (10, "A", False), (11, "A", True)])
    assert periods.active_period_s(15, "A") == 4.0  # 15 - 11


def test_ties_go_to_the_earlier_start_then_the_name() -> None:
    periods = ActivePeriods()
    _run(periods, [(0, "s2", True), (0, "s1", True), (3, "s0", True)])
    assert periods.momentary(5) == "s1"  # s1 and s2 started together; s0 later


def test_unchanged_calls_are_no_ops() -> None:
    periods = ActivePeriods()
    _run(periods, [(0, "A", True), (5, "A", True), (7, "B", False)])
    assert periods.active_period_s(10, "A") == 10.0  # still from 0
    assert periods.momentary(10) == "A"
    assert periods.shares(10) == _approx({"A": (1.0, 1.0, 0.0), "B": (0.0, 0.0, 0.0)})


def test_advance_accounts_time_without_changing_the_answer() -> None:
    with_advance, without = ActivePeriods(), ActivePeriods()
    for p in (with_advance, without):
        _run(p, THREE[:3])
    with_advance.advance(25)
    with_advance.advance(30)
    assert with_advance.bottleneck_s == {"A": 20.0, "B": 10.0}  # B since 20
    assert (
        with_advance.shares(30)
        == without.shares(30)
        == _approx({"A": (20 / 30, 10 / 30, 10 / 30), "B": (10 / 30, 10 / 30, 0.0)})
    )


def test_no_calls_or_no_elapsed_time() -> None:
    periods = ActivePeriods()
    assert periods.shares(10) == {}
    assert periods.momentary(10) is None
    periods.set_active(10, "A", True)
    assert periods.shares(10) == {"A": (0.0, 0.0, 0.0)}


def test_time_going_back_is_rejected() -> None:
    periods = ActivePeriods()
    periods.set_active(10, "A", True)
    with pytest.raises(ValueError, match="t=9"):
        periods.set_active(9, "B", True)


def test_round_trip_gives_an_equal_object_that_behaves_the_same() -> None:
    periods = ActivePeriods()
    _run(periods, [*THREE[:3], (35, "C", True), (40, "B", False)])  # B's end at 40 not judged yet
    restored = msgspec.msgpack.decode(msgspec.msgpack.encode(periods), type=ActivePeriods)
    assert restored == periods
    assert restored.ended == {"B": 10.0}
    for p in (periods, restored):
        p.set_active(60, "C", False)
    assert restored == periods
    assert (
        restored.shares(60)
        == periods.shares(60)
        == _approx(
            {"A": (20 / 60, 10 / 60, 10 / 60), "B": (20 / 60, 15 / 60, 5 / 60), "C": (20 / 60, 20 / 60, 0.0)}
        )
    )
