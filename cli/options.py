"""What every command shares: the consoles (the CLI is the only layer that prints), option types, parsers.

Parsers raise ``typer.BadParameter``, so a bad value is one line naming the option, exit code 2.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from wipwatch.recorder.replay import TimePoint

console = Console()
err_console = Console(stderr=True)

SiteOpt = Annotated[Path | None, typer.Option("--site", help="site file (default: WIPWATCH_SITE_FILE)")]
RunDirOpt = Annotated[Path | None, typer.Option("--run-dir", help="state, logs and server data")]


def parse_duration(text: str) -> float:
    """'8h', '90m', '1h30m', '45s' or plain seconds → seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    match = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", text)
    if not match or not any(match.groups()):
        raise typer.BadParameter(f"{text!r} is not a duration like 8h, 90m, 1h30m or 45s")
    h, m, s = (float(g) if g else 0.0 for g in match.groups())
    return h * 3600 + m * 60 + s


def parse_speed(text: str) -> float | None:
    """'max' → None (as fast as possible), else a positive factor of real time."""
    if text.lower() == "max":
        return None
    try:
        speed = float(text.lower().removesuffix("x"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a speed: a number like 1, 60 or 'max'") from None
    if speed <= 0:
        raise typer.BadParameter(f"speed must be > 0, got {text}")
    return speed


def parse_time_point(text: str) -> TimePoint:
    """A replay bound: ISO 8601 with timezone (absolute), or a duration after the recording's start."""
    from wipwatch.recorder.replay import TimePoint

    if "T" in text or "-" in text[1:]:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise typer.BadParameter(f"{text!r} is neither ISO 8601 nor a duration like 2h30m") from None
        if moment.tzinfo is None:
            raise typer.BadParameter(f"{text!r} needs a timezone, e.g. 2026-11-25T06:00:00+00:00")
        return TimePoint(moment.timestamp())
    return TimePoint(parse_duration(text), relative=True)
