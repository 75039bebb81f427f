"""InfluxDB line protocol: escaping of measurements, tags and strings, and field typing."""

import pytest

from wipwatch.influx import escape_tag, line

pytestmark = pytest.mark.unit


def test_line_protocol_escapes_tags_measurement_and_strings() -> None:
    got = line("wip rate", {"location": "b 1,a=x", "site": "s"}, {"parts": 3, "note": 'say "hi"'}, 1_000_000)
    assert got == r'wip\ rate,location=b\ 1\,a\=x,site=s parts=3i,note="say \"hi\"" 1000000'


def test_backslash_and_newline_cannot_break_a_line() -> None:
    assert escape_tag("a\\b\nc") == "a\\\\b\\nc"
    assert "\n" not in line("m", {"t": "x\ny"}, {"f": 1.5}, 1)


def test_empty_tag_values_are_left_out_and_bools_floats_typed() -> None:
    assert line("m", {"a": "", "b": "1"}, {"ok": True, "x": 0.25}, 5) == "m,b=1 ok=true,x=0.25 5"
