"""Little's Law lead time and value-added ratio, hand-computed."""

from __future__ import annotations

import pytest

from wipwatch.processors.metrics.lead_time import littles_law_s, value_added_ratio

pytestmark = pytest.mark.unit


def test_littles_law() -> None:
    assert littles_law_s(12.0, 30.0) == pytest.approx(1440.0)  # 12 / 30 * 3600
    assert littles_law_s(0.0, 30.0) == 0.0
    assert littles_law_s(5.0, 0.0) is None  # nothing leaves: no lead time


def test_value_added_ratio() -> None:
    assert value_added_ratio(90.0, 1440.0) == pytest.approx(0.0625)  # 90 / 1440
    assert value_added_ratio(90.0, None) is None
    assert value_added_ratio(90.0, 0.0) is None


def test_bad_arguments_name_the_parameter() -> None:
    with pytest.raises(ValueError, match="avg_wip"):
        littles_law_s(-1.0, 30.0)
    with pytest.raises(ValueError, match="throughput_per_hour"):
        littles_law_s(1.0, -30.0)
    with pytest.raises(ValueError, match="value_added_s"):
        value_added_ratio(-1.0, 10.0)
    with pytest.raises(ValueError, match="lead_time_s"):
        value_added_ratio(1.0, -10.0)
