"""``wipwatch alerts``: the active alerts (retained MQTT state), live changes, and backtests of the rules.

A command group of its own, added to the app in ``main.py``; errors propagate to its one-line error handler.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from wipwatch.alert_feed import AlertFeed, AlertUpdate, active_alerts
from wipwatch.errors import RecordingError
from wipwatch.settings import load_settings
from wipwatch.site import load_site

alerts_app = typer.Typer(
    help="Alerts: list the active ones (retained MQTT state), follow them live, backtest the rules.",
    invoke_without_command=True,
)
# a table piped to a file or a pager keeps its columns whole
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


def _when(iso: str) -> str:
    return iso.replace("T", " ").removesuffix("Z")


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _table(updates: list[AlertUpdate]) -> Table:
    table = Table(title="active alerts")
    for name in ("severity", "rule", "line", "location", "since", "value", "threshold", "summary"):
        table.add_column(name)
    for update in updates:
        a = update.alert
        if a is None:
            continue
        table.add_row(
            a.severity,
            a.rule,
            a.line,
            a.location,
            _when(a.since),
            f"{a.value:g}",
            f"{a.threshold:g}",
            a.summary,
        )
    return table


@alerts_app.callback()
def alerts(
    ctx: typer.Context,
    site: Annotated[
        Path | None, typer.Option("--site", help="site file (default: WIPWATCH_SITE_FILE)")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print JSON (one object per line with --follow)")
    ] = False,
    follow: Annotated[bool, typer.Option("--follow", help="then print every change until Ctrl-C")] = False,
    mqtt_port: Annotated[int | None, typer.Option(help="MQTT broker port")] = None,
) -> None:
    """List the site's active alerts, as the floor sees them (retained MQTT state)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings(site_file=site, mqtt_port=mqtt_port)
    site_id = load_site(settings.site_file).site
    if not follow:
        updates = active_alerts(settings.mqtt_host, settings.mqtt_port, site_id)
        if as_json:
            console.print_json(json.dumps([msgspec.to_builtins(u.alert) for u in updates if u.alert]))
        elif updates:
            console.print(_table(updates))
        else:
            console.print(f"no active alerts for site {site_id}")
        return
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def show(update: AlertUpdate) -> None:
        if update.problem:
            err_console.print(f"{update.topic}: {update.problem}", markup=False, highlight=False)
            return
        a = update.alert
        if as_json:
            body: dict[str, Any] = {"topic": update.topic, "retained": update.retained}
            body["alert"] = msgspec.to_builtins(a) if a else None
            print(json.dumps(body), flush=True)
        elif a is None:
            console.print(f"resolved  {update.topic}", markup=False, highlight=False)
        else:
            console.print(
                f"{'active' if update.retained else 'firing'}    {a.severity:<8} {a.rule} "
                f"{a.line}/{a.location} since {_when(a.since)} value {a.value:g} "
                f"(threshold {a.threshold:g}) seq {a.seq}",
                markup=False,
                highlight=False,
            )

    feed = AlertFeed(settings.mqtt_host, settings.mqtt_port, site_id, show)
    try:
        stop.wait()
    finally:
        feed.close()


@alerts_app.command("backtest")
def backtest(
    recording: Annotated[Path, typer.Option("--recording", help="recording file (any format replay reads)")],
    site: Annotated[Path, typer.Option("--site", help="site file whose alert rules to run")],
    as_json: Annotated[bool, typer.Option("--json", help="print the alerts as JSON")] = False,
) -> None:
    """Run the site's alert rules on a recording and print what would have fired, when and for how long."""
    from wipwatch.errors import EventError
    from wipwatch.events import Event, validate_message
    from wipwatch.processors.alert_backtest import run_backtest
    from wipwatch.recorder.formats import read_recording

    if not recording.is_file():
        raise typer.BadParameter(f"--recording {recording}: no such file")
    site_def = load_site(site)
    reader = read_recording(recording)
    rejected: dict[str, int] = {}

    def events() -> Any:
        for message in reader:
            if message.topic.startswith("wipwatch/alerts/"):
                continue
            try:
                event: Event = validate_message(message.topic, message.payload, site_def)
            except EventError as exc:
                reason = exc.reason.split(":")[0]
                rejected[reason] = rejected.get(reason, 0) + 1
                continue
            yield event

    result = run_backtest(site_def, events())
    if result.events == 0:
        raise RecordingError(f"{recording}: no event of site {site_def.site!r} in it")
    last = result.last or 0.0

    def iso(t: float | None) -> str | None:
        return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()

    if as_json:
        body = [
            {
                "rule": e.rule,
                "line": e.line,
                "location": e.location,
                "severity": e.severity,
                "identity": e.identity,
                "fired": iso(e.start),
                "resolved": iso(e.end),
                "duration_s": e.duration_s(last),
                "value": e.value,
            }
            for e in result.episodes
        ]
        console.print_json(json.dumps(body))
    else:
        table = Table(title=f"alerts that would have fired: {recording.name}, site {site_def.site}")
        for name in ("fired", "resolved", "for", "severity", "rule", "line", "location", "value"):
            table.add_column(name)
        for e in result.episodes:
            table.add_row(
                _when(iso(e.start) or ""),
                _when(iso(e.end) or "") if e.end is not None else "(still firing)",
                _duration(e.duration_s(last)),
                e.severity,
                e.rule,
                e.line,
                e.location,
                f"{e.value:g}",
            )
        console.print(table)
    still = sum(1 for e in result.episodes if e.end is None)
    skipped = sum(rejected.values()) + len(reader.skipped)
    err_console.print(
        f"{result.events} events from {iso(result.first)} to {iso(result.last)}; "
        f"{len(result.episodes)} alerts, {still} still firing at the end; {skipped} messages skipped",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
