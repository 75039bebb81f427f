"""Site-file fields the simulator reads: bad values are rejected naming the field path, never a traceback."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from wipwatch.errors import SiteFileError
from wipwatch.site import load_site, parse_site

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).parents[2] / "examples"


def _site() -> dict[str, Any]:
    return {
        "site": "p1",
        "lines": [
            {
                "id": "l1",
                "demand_per_hour": 10,
                "supply": {"interval": 60},
                "locations": [
                    {"id": "raw", "kind": "store"},
                    {"id": "s1", "kind": "station", "process_time": {"mean": 10}},
                    {"id": "b1", "kind": "buffer", "cap": 2},
                    {"id": "fg", "kind": "store"},
                ],
            }
        ],
    }


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(SiteFileError) as info:
        parse_site(data, "plant.yaml")
    message = str(info.value)
    assert message.startswith("plant.yaml: ")
    return message


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("supply", "interval"), -5, r"lines\[0\]\.supply\.interval: Input should be greater than 0"),
        (
            ("supply", "lead_time"),
            -1,
            r"lines\[0\]\.supply\.lead_time: Input should be greater than or equal",
        ),
        (("supply", "kanbans"), 2, r"lines\[0\]\.supply: give exactly one of interval, at, kanbans"),
        (("supply", "lot_size"), 0, r"lines\[0\]\.supply\.lot_size"),
        (("release",), {"policy": "conwip"}, r"lines\[0\]\.release: policy conwip needs wip_cap"),
        (("release",), {"policy": "kanban", "wip_cap": 3}, r"wip_cap only applies to policy conwip"),
        (("release",), {"policy": "fifo"}, r"lines\[0\]\.release\.policy: Input should be 'push', 'kanban'"),
        (("demand_per_hour",), 0, r"lines\[0\]\.demand_per_hour: Input should be greater than 0"),
        (("demand_profile",), [{"from_hour": 1, "factor": 2}], r"demand_profile must start with a step at"),
        (("skus",), [{"id": "A"}, {"id": "A"}], r"lines\[0\]: sku ids appear twice"),
    ],
)
def test_bad_line_fields(path: tuple[str, ...], value: Any, expected: str) -> None:
    data = _site()
    target = data["lines"][0]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    message = _error(data)
    assert re.search(expected, message), message


@pytest.mark.parametrize(
    ("index", "field", "value", "expected"),
    [
        (1, "machines", 0, r"locations\[1\]\.machines: Input should be greater than or equal to 1"),
        (
            1,
            "breakdowns",
            {"mtbf": 0, "mttr": 5},
            r"locations\[1\]\.breakdowns\.mtbf: Input should be greater",
        ),
        (1, "changeover", {"mean": -1}, r"locations\[1\]\.changeover\.mean"),
        (2, "cap", 0, r"locations\[2\]\.cap: Input should be greater than or equal to 1"),
        (2, "breakdowns", {"mtbf": 60, "mttr": 5}, r"buffer 'b1' cannot have breakdowns \(stations only\)"),
        (2, "machines", 2, r"buffer 'b1' cannot have machines"),
        (0, "next", ["nowhere"], r"routes to unknown location 'nowhere'"),
    ],
)
def test_bad_location_fields(index: int, field: str, value: Any, expected: str) -> None:
    data = _site()
    data["lines"][0]["locations"][index][field] = value
    message = _error(data)
    assert re.search(expected, message), message


def test_route_loops_are_rejected() -> None:
    data = _site()
    data["lines"][0]["locations"][2]["next"] = ["s1"]
    assert "lines[0]: route loops back: s1 -> b1 -> s1" in _error(data)


def test_bad_shift_and_scenarios() -> None:
    data = _site()
    data["shift"] = {"hours": 8, "breaks": [{"at_hour": 7.9, "minutes": 30}]}
    assert "shift: break at hour 7.9 ends after the shift" in _error(data)
    data["shift"] = {"hours": 8, "breaks": [{"at_hour": 2, "minutes": 30}, {"at_hour": 2.25, "minutes": 5}]}
    assert "overlaps the break before it" in _error(data)
    data["shift"] = {"hours": 25}
    assert "shift: hours 25.0 is longer than repeat_hours 24.0" in _error(data)
    data = _site()
    data["scenarios"] = {"big": {"lines": ["l9"]}}
    assert "scenario 'big' names unknown lines: l9" in _error(data)


def test_scenario_replaces_release_and_supply_and_unknown_name_is_clear() -> None:
    data = _site()
    data["scenarios"] = {"pull": {"release": {"policy": "conwip", "wip_cap": 4}, "supply": {"kanbans": 2}}}
    site = parse_site(data)
    pulled = site.with_scenario("pull", "plant.yaml")
    assert pulled.lines[0].release.wip_cap == 4
    assert pulled.lines[0].supply is not None and pulled.lines[0].supply.kanbans == 2
    assert site.lines[0].release.policy == "kanban", "the original site is unchanged"
    with pytest.raises(SiteFileError, match=r"plant.yaml: scenarios\.push: no such scenario \(known: pull\)"):
        site.with_scenario("push", "plant.yaml")


def test_shipped_scenarios_are_the_same_line_with_another_release_and_supply() -> None:
    push = load_site(EXAMPLES / "mass-production.yaml")
    pull = load_site(EXAMPLES / "lean-pull.yaml")
    assert push.lines[0].release.policy == "push"
    assert pull.lines[0].release.policy == "kanban"
    same = {"release", "supply"}
    assert push.lines[0].model_dump(exclude=same) == pull.lines[0].model_dump(exclude=same)
    assert push.shift == pull.shift
    multi = load_site(EXAMPLES / "multi-line-site.yaml")
    assert len(multi.lines) == 3
    assert sum(len(line.locations) for line in multi.lines) == 30
