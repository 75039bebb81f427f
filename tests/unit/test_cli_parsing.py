"""The CLI's duration and speed arguments: accepted forms and clear errors."""

import pytest
import typer

from wipwatch.cli.options import parse_duration, parse_speed

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "seconds"), [("8h", 28800), ("90m", 5400), ("1h30m", 5400), ("45s", 45), ("12.5", 12.5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "8 hours", "-3"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_duration(text)


def test_speeds() -> None:
    assert parse_speed("max") is None
    assert parse_speed("60") == 60.0
    assert parse_speed("10x") == 10.0
    for bad in ("0", "-1", "fast"):
        with pytest.raises(typer.BadParameter):
            parse_speed(bad)
