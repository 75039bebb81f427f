"""The site file: loading, flow order, and errors that name the file and the field path."""

from pathlib import Path

import pytest

from wipwatch.errors import SiteFileError
from wipwatch.site import LocationKind, load_site, parse_site

pytestmark = pytest.mark.unit


def _site(**line_overrides: object) -> dict:
    line = {
        "id": "l1",
        "locations": [
            {"id": "raw", "kind": "store"},
            {"id": "s1", "kind": "station", "process_time": {"mean": 10}},
            {"id": "fg", "kind": "store"},
        ],
    }
    line.update(line_overrides)
    return {"site": "p1", "lines": [line]}


def test_example_site_loads_in_flow_order(tmp_path: Path) -> None:
    site = load_site(Path(__file__).parents[2] / "examples" / "lean-line.yaml")
    line = site.line("line1")
    assert [loc.id for loc in line.locations][:3] == ["raw", "cut", "b-cut"]
    assert line.location("b-cut").kind is LocationKind.BUFFER
    assert line.location("b-cut").cap == 20
    assert line.takt_seconds == pytest.approx(3600 / 55)
    assert line.successors("cut") == ["b-cut"]
    assert line.successors("fg") == []


def test_error_names_file_and_field_path(tmp_path: Path) -> None:
    bad = tmp_path / "site.yaml"
    bad.write_text("site: p1\nlines:\n  - id: l1\n    locations:\n      - {id: b1, kind: buffer, cap: 0}\n")
    with pytest.raises(SiteFileError) as info:
        load_site(bad)
    message = str(info.value)
    assert str(bad) in message
    assert "lines[0].locations[0].cap" in message
    assert "greater than or equal to 1" in message


def test_unknown_route_target_is_rejected() -> None:
    data = _site()
    data["lines"][0]["locations"][0]["next"] = ["nowhere"]
    with pytest.raises(SiteFileError, match="routes to unknown location 'nowhere'"):
        parse_site(data)


def test_station_needs_process_time_and_ids_must_be_topic_safe() -> None:
    data = _site()
    del data["lines"][0]["locations"][1]["process_time"]
    with pytest.raises(SiteFileError, match="station 's1' needs process_time"):
        parse_site(data)
    data = _site()
    data["lines"][0]["locations"][0]["id"] = "raw/store"
    with pytest.raises(SiteFileError, match=r"lines\[0\].locations\[0\].id"):
        parse_site(data)


def test_negative_time_duplicate_ids_and_reserved_site() -> None:
    data = _site()
    data["lines"][0]["locations"][1]["process_time"]["mean"] = -5
    with pytest.raises(SiteFileError, match=r"process_time\.mean"):
        parse_site(data)
    data = _site()
    data["lines"][0]["locations"][2]["id"] = "raw"
    with pytest.raises(SiteFileError, match="'raw' appears twice"):
        parse_site(data)
    data = _site()
    data["site"] = "alerts"
    with pytest.raises(SiteFileError, match="reserved"):
        parse_site(data)


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text("site: [unclosed\n")
    with pytest.raises(SiteFileError, match=r"line \d+, column \d+: not valid YAML"):
        load_site(bad)
    with pytest.raises(SiteFileError, match="cannot read"):
        load_site(tmp_path / "missing.yaml")
