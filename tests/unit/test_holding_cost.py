"""Money tied up in WIP and accrued holding cost, hand-computed."""

from __future__ import annotations

import math

import msgspec
import pytest

from wipwatch.processors.metrics.holding_cost import HoldingCost

pytestmark = pytest.mark.unit


def test_integral_of_a_step_function() -> None:
    # t:   0      1800     5400    7200
    # wip: 2 ..... 5 ...... 0 ......
    cost = HoldingCost(unit_value=120.0, cost_per_part_hour=0.5)
    cost.record(0, 2)
    cost.record(1800, 5)
    assert cost.tied_up() == 600.0  # 5 * 120
    cost.record(5400, 0)
    assert cost.tied_up() == 0.0
    # (2 * 1800 + 5 * 3600 + 0 * 1800) / 3600 = (3600 + 18000) / 3600 = 6 part-hours
    assert cost.wip_hours(7200) == pytest.approx(6.0)
    assert cost.accrued(7200) == pytest.approx(3.0)  # 6 * 0.5


def test_running_interval_counts_up_to_now() -> None:
    cost = HoldingCost(unit_value=10.0, cost_per_part_hour=2.0)
    cost.record(100, 3)
    assert cost.wip_hours(100) == 0.0
    assert cost.wip_hours(1900) == pytest.approx(1.5)  # 3 * 1800 / 3600
    assert cost.accrued(1900) == pytest.approx(3.0)  # 1.5 * 2
    assert cost.wip_hours(1900) == pytest.approx(1.5), "queries do not accumulate"


def test_nothing_recorded() -> None:
    cost = HoldingCost(unit_value=10.0, cost_per_part_hour=2.0)
    assert cost.tied_up() == 0.0
    assert cost.wip_hours(1000) == 0.0
    assert cost.accrued(1000) == 0.0


def test_same_instant_records_cost_nothing_in_between() -> None:
    cost = HoldingCost(unit_value=1.0, cost_per_part_hour=1.0)
    cost.record(0, 1)
    cost.record(3600, 0)
    cost.record(3600, 50)  # transient: zero-length
    cost.record(3600, 1)
    assert cost.wip_hours(7200) == pytest.approx(2.0)  # 1 * 3600 + 1 * 3600 part-seconds


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("unit_value", {"unit_value": -1.0, "cost_per_part_hour": 1.0}),
        ("unit_value", {"unit_value": math.nan, "cost_per_part_hour": 1.0}),
        ("cost_per_part_hour", {"unit_value": 1.0, "cost_per_part_hour": -0.1}),
        ("cost_per_part_hour", {"unit_value": 1.0, "cost_per_part_hour": math.inf}),
    ],
)
def test_bad_arguments_name_the_parameter(field: str, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=field):
        HoldingCost(**kwargs)


def test_time_going_back_is_rejected() -> None:
    cost = HoldingCost(unit_value=1.0, cost_per_part_hour=1.0)
    cost.record(10, 1)
    with pytest.raises(ValueError, match="t=9"):
        cost.record(9, 2)
    with pytest.raises(ValueError, match="now=9"):
        cost.wip_hours(9)


def test_round_trip_gives_an_equal_object_that_behaves_the_same() -> None:
    cost = HoldingCost(unit_value=25.0, cost_per_part_hour=0.25)
    cost.record(0, 4)
    cost.record(900, 6)
    restored = msgspec.msgpack.decode(msgspec.msgpack.encode(cost), type=HoldingCost)
    assert restored == cost
    for c in (cost, restored):
        c.record(1800, 2)
    assert restored == cost
    # (4 * 900 + 6 * 900 + 2 * 1800) / 3600 = (3600 + 5400 + 3600) / 3600 = 3.5 part-hours
    assert restored.wip_hours(3600) == cost.wip_hours(3600) == pytest.approx(3.5)
    assert restored.tied_up() == 50.0  # 2 * 25
