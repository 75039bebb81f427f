"""Active-period method (Roser): hand-drawn timelines, active periods as [start, end), seconds from 0."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest

from wipwatch.processors.metrics.bottleneck import ActivePeriods, method_shares

pytestmark = pytest.mark.unit


def _run(periods: ActivePeriods, calls: Sequence[tuple[float, str, bool]]) -> ActivePeriods:
    for t, station, active in calls:
        periods.set_active(t, station, active)
    return periods


def _seconds(shares: dict[str, tuple[float, float, float]], observed: float) -> dict[str, tuple[float, ...]]:
    """Shares as (total, sole, shifting) seconds, so the expected values read like the drawings."""
    return {s: tuple(x * observed for x in v) for s, v in shares.items()}


# t:  0    10   20   30   40   50   60
# A:  [=========)                          [0, 20)
# B:       [==================)            [10, 40)
# C:                      [=========)      [35, 60)
# walk: at 0 only A -> A; at A's end 20 only B -> B; at B's end 40 only C -> C
# shifting: A/B overlap [10, 20) for both, B/C overlap [35, 40) for both
THREE = [
    (0, "A", True),
    (10, "B", True),
    (20, "A", False),
    (35, "C", True),
    (40, "B", False),
    (60, "C", False),
]


def test_overlaps_of_consecutive_bottlenecks_are_shifting_for_both() -> None:
    periods = _run(ActivePeriods(), THREE)
    assert _seconds(periods.shares(60), 60) == {
        "A": pytest.approx((20, 10, 10)),  # sole [0, 10), shifting [10, 20)
        "B": pytest.approx((30, 15, 15)),  # shifting [10, 20) and [35, 40), sole [20, 35)
        "C": pytest.approx((25, 20, 5)),  # shifting [35, 40), sole [40, 60)
    }


def test_the_whole_period_decides_not_the_part_elapsed() -> None:
    # t:  0    8 10   14             40
    # X:  [=======)                           [0, 10)
    # Y:    [===========)                     [2, 14): 12 s, started first of the two
    # Z:          [=====================)     [8, 40): 32 s
    # at X's end (10) Y and Z are active: Z is longer as a whole, though Y has run longer so far
    periods = _run(ActivePeriods(), [(0, "X", True), (2, "Y", True), (8, "Z", True), (10, "X", False)])
    assert periods.longest_running(11) == {"Y"}  # the live signal: started at 2, Z at 8
    _run(periods, [(14, "Y", False), (40, "Z", False)])
    assert _seconds(periods.shares(40), 40) == {
        "X": pytest.approx((10, 8, 2)),  # shifting with Z on [8, 10)
        "Y": pytest.approx((0, 0, 0)),  # never the longest at a decision time
        "Z": pytest.approx((32, 30, 2)),
    }


def test_a_longer_period_starting_inside_the_bottleneck_period_waits_for_its_end() -> None:
    # t:  0    10   20   30            200          300
    # A:  [==============)                                 [0, 30): the only period at 0
    # B:       [================================)          [10, 200): longer than A, starts inside it
    # C:            [==========================================)  [20, 300)
    # A stays the bottleneck to its end; at 30, C (280 s) beats B (190 s): B is never a bottleneck
    calls = [(0, "A", True), (10, "B", True), (20, "C", True), (30, "A", False), (200, "B", False)]
    periods = _run(ActivePeriods(), [*calls, (300, "C", False)])
    assert _seconds(periods.shares(300), 300) == {
        "A": pytest.approx((30, 20, 10)),  # shifting with C on [20, 30)
        "B": pytest.approx((0, 0, 0)),
        "C": pytest.approx((280, 270, 10)),
    }


def test_equal_periods_are_all_bottlenecks_whatever_their_names() -> None:
    # t:  0   2   4   6        12  14
    # H:  [=======)                        [0, 6)
    # A:      [===============)            [2, 12): 10 s
    # B:          [===============)        [4, 14): 10 s
    # at H's end (6) A and B tie: both are bottleneck periods, in order of start; shifting where they
    # overlap each other or H
    calls = [(0, "H", True), (2, "A", True), (4, "B", True), (6, "H", False), (12, "A", False)]
    calls.append((14, "B", False))
    expected = {
        "H": pytest.approx((6, 2, 4)),  # sole [0, 2), shifting with A [2, 6)
        "A": pytest.approx((10, 0, 10)),  # [2, 6) with H, [4, 12) with B
        "B": pytest.approx((10, 2, 8)),  # shifting with A [4, 12), sole [12, 14)
    }
    assert _seconds(_run(ActivePeriods(), calls).shares(14), 14) == expected
    renamed = {"H": "zz", "A": "b", "B": "a"}  # B's new name sorts first: nothing may change
    swapped = _run(ActivePeriods(), [(t, renamed[s], a) for t, s, a in calls]).shares(14)
    assert _seconds(swapped, 14) == {renamed[s]: v for s, v in expected.items()}


def test_identical_periods_share_all_their_time() -> None:
    periods = _run(ActivePeriods(), [(0, "P", True), (0, "Q", True), (10, "P", False), (10, "Q", False)])
    assert _seconds(periods.shares(20), 20) == {
        "P": pytest.approx((10, 0, 10)),
        "Q": pytest.approx((10, 0, 10)),
    }
    assert periods.longest_running(10) == set()


def test_idle_gaps_belong_to_no_station_and_separate_bottlenecks_are_sole() -> None:
    # A: [0, 10), B: [20, 30); observed [0, 40]
    periods = _run(ActivePeriods(), [(0, "A", True), (10, "A", False), (20, "B", True), (30, "B", False)])
    assert _seconds(periods.shares(40), 40) == {
        "A": pytest.approx((10, 10, 0)),
        "B": pytest.approx((10, 10, 0)),
    }
    assert periods.longest_running(40) == set()


def test_running_periods_count_as_ending_now_and_are_provisional() -> None:
    periods = _run(ActivePeriods(), THREE[:4])  # at 38: B running since 10, C since 35
    # as if B [10, 38) and C [35, 38): at A's end (20) B is chosen and nothing follows it yet
    assert _seconds(periods.shares(38), 38) == {
        "A": pytest.approx((20, 10, 10)),
        "B": pytest.approx((28, 18, 10)),
        "C": pytest.approx((0, 0, 0)),
    }
    assert periods.longest_running(38) == {"B"}
    assert periods.active_period_s(38, "B") == 28.0
    assert periods.active_period_s(38, "A") == 0.0


def test_only_choices_before_the_earliest_running_start_are_final() -> None:
    periods = _run(ActivePeriods(), [*THREE[:3], (25, "C", True)])
    periods.advance(30)  # B runs since 10: A was chosen at 0; the choice at 20 waits for B's end
    assert periods.head == (0, 20, "A")
    assert periods.cursor == 20
    assert periods.sole_s == {"A": 0.0, "B": 0.0, "C": 0.0}  # A's tail credit waits for its successor


def test_a_station_idle_and_active_again_within_one_instant_keeps_its_period() -> None:
    # A: one period [0, 30) though it reports idle and working at 10 and 20; B: [5, 30)
    calls = [(0, "A", True), (5, "B", True), (10, "A", False), (10, "A", True)]
    calls += [(20, "A", False), (20, "A", True)]
    periods = _run(ActivePeriods(), calls)
    assert periods.active_period_s(25, "A") == 25.0
    assert periods.longest_running(25) == {"A"}
    assert _seconds(periods.shares(30), 30) == {
        "A": pytest.approx((30, 30, 0)),
        "B": pytest.approx((0, 0, 0)),
    }


def test_a_new_period_at_a_later_instant_starts_over() -> None:
    periods = _run(ActivePeriods(), [(0, "A", True), (10, "A", False), (11, "A", True)])
    assert periods.active_period_s(15, "A") == 4.0


def test_unchanged_calls_are_no_ops() -> None:
    periods = _run(ActivePeriods(), [(0, "A", True), (5, "A", True), (7, "B", False)])
    assert periods.active_period_s(10, "A") == 10.0
    assert _seconds(periods.shares(10), 10) == {
        "A": pytest.approx((10, 10, 0)),
        "B": pytest.approx((0, 0, 0)),
    }


def test_rolling_window_counts_the_method_s_time_inside_it() -> None:
    periods = _run(ActivePeriods(window_s=20), THREE[:5])
    periods.advance(45)  # C runs since 35: chain A, B, C with C cut at 45
    assert _seconds(periods.window_shares(45), 20) == {  # window [25, 45]
        "A": pytest.approx((0, 0, 0)),
        "B": pytest.approx((15, 10, 5)),  # sole [25, 35), shifting [35, 40)
        "C": pytest.approx((10, 5, 5)),  # shifting [35, 40), sole [40, 45)
    }
    periods.set_active(60, "C", False)
    assert _seconds(periods.window_shares(60), 20) == {  # window [40, 60]
        "A": pytest.approx((0, 0, 0)),
        "B": pytest.approx((0, 0, 0)),
        "C": pytest.approx((20, 20, 0)),
    }
    assert periods.window_shares(60)["C"] == pytest.approx((1.0, 1.0, 0.0))
    # shorter than the window so far: divided by the time observed
    early = _run(ActivePeriods(window_s=100), THREE)
    assert _seconds(early.window_shares(60), 60) == {
        s: pytest.approx(v) for s, v in _seconds(early.shares(60), 60).items()
    }


def test_both_shares_at_once_equal_each_asked_alone_and_change_nothing() -> None:
    periods = _run(ActivePeriods(window_s=20), THREE[:5])
    for now in (40, 45, 52.5):  # C still running: its period is cut at now on the copy
        periods.advance(now)
        before = msgspec.msgpack.encode(periods)
        both = periods.shares_and_window_shares(now)
        assert msgspec.msgpack.encode(periods) == before  # finished on a copy
        assert both == (periods.shares(now), periods.window_shares(now))
        assert both[0]["B"] != (0.0, 0.0, 0.0) and any(v != (0.0, 0.0, 0.0) for v in both[1].values())


def test_state_stays_bounded_over_a_long_run() -> None:
    # 20 000 cycles of three stations, one of them down the whole time: the walk stops at the down
    # station's start, so without forgetting, every period since would be kept
    periods = ActivePeriods(window_s=600)
    periods.set_active(0, "down", True)
    t = 1.0
    for _ in range(20_000):
        periods.set_active(t, "a", True)
        periods.set_active(t + 3, "b", True)
        periods.set_active(t + 5, "a", False)
        periods.set_active(t + 7, "b", False)
        t += 10
    assert periods.cursor == 0
    assert len(periods.pool) <= 2 * 3
    assert len(periods.credits) == 0
    assert periods.shares(t)["down"] == pytest.approx((1.0, 1.0, 0.0))
    # the down station recovers: the walk catches up and keeps only the window's credits
    periods.set_active(t, "down", False)
    for _ in range(20_000):
        periods.set_active(t, "a", True)
        periods.set_active(t + 3, "b", True)
        periods.set_active(t + 5, "a", False)
        periods.set_active(t + 7, "b", False)
        t += 10
    assert len(periods.pool) <= 2 * 3
    assert len(periods.credits) <= 4 * (600 / 10 + 1)  # a sole, a shifting, b shifting, b sole a cycle
    assert len(msgspec.msgpack.encode(periods)) < 10_000


def test_method_shares_of_whole_run_periods_equal_the_online_walk() -> None:
    assert method_shares([(0, 20, "A"), (10, 40, "B"), (35, 60, "C")], 0, 60) == _run(
        ActivePeriods(), THREE
    ).shares(60)
    # clipped to the observed span; periods touching end to end are one
    clipped = method_shares([(-5, 10, "A"), (10, 20, "A"), (15, 90, "B")], 0, 30)
    assert _seconds(clipped, 30) == {"A": pytest.approx((20, 15, 5)), "B": pytest.approx((15, 10, 5))}


def test_no_calls_or_no_elapsed_time() -> None:
    periods = ActivePeriods()
    assert periods.shares(10) == {}
    assert periods.window_shares(10) == {}
    assert periods.longest_running(10) == set()
    periods.set_active(10, "A", True)
    assert periods.shares(10) == {"A": (0.0, 0.0, 0.0)}


def test_hostile_calls_are_rejected_with_the_offending_value() -> None:
    periods = ActivePeriods()
    periods.set_active(10, "A", True)
    with pytest.raises(ValueError, match="t=9"):
        periods.set_active(9, "B", True)
    with pytest.raises(ValueError, match="now=9"):
        periods.shares(9)
    with pytest.raises(ValueError, match="t must be a finite"):
        periods.set_active(float("nan"), "A", False)
    with pytest.raises(ValueError, match="window_s"):
        ActivePeriods(window_s=0)
    with pytest.raises(ValueError, match="end=1"):
        method_shares([], 2, 1)
    with pytest.raises(ValueError, match="periods of 'A' overlap"):
        method_shares([(0, 10, "A"), (5, 20, "A"), (0, 30, "B")], 0, 30)


def test_round_trip_gives_an_equal_object_that_behaves_the_same() -> None:
    periods = _run(ActivePeriods(window_s=30), [*THREE[:3], (35, "C", True), (40, "B", False)])
    restored = msgspec.msgpack.decode(msgspec.msgpack.encode(periods), type=ActivePeriods)
    assert restored == periods
    assert restored.ended == {"B": 10.0}  # B's end at 40 is not settled yet
    for p in (periods, restored):
        p.set_active(60, "C", False)
    assert restored == periods
    assert restored.shares(60) == periods.shares(60)
    assert restored.window_shares(60) == periods.window_shares(60)


def test_a_state_stored_before_the_walk_existed_walks_on_from_its_last_call() -> None:
    old = msgspec.msgpack.encode({"first": 0.0, "last": 10.0, "starts": {"A": 5.0}, "current": "A"})
    periods = msgspec.msgpack.decode(old, type=ActivePeriods)
    assert periods.cursor == 10.0
    _run(periods, [(12, "B", True), (20, "B", False)])
    assert _seconds(periods.shares(20), 20) == {"B": pytest.approx((8, 8, 0))}
