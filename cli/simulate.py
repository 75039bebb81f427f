"""``wipwatch simulate``: the site's lines as a SimPy model, published over MQTT or written to a recording."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from wipwatch.cli.options import SiteOpt, console, err_console, parse_duration, parse_speed
from wipwatch.errors import WipwatchError
from wipwatch.settings import load_settings
from wipwatch.site import load_site

#: The live simulator's warm-up pace: the processors write a point per batch (about every 0.2 s), so
#: 300x puts about one point per simulated minute on the dashboards; two hours take 24 s.
WARMUP_SPEED = "300"


def simulate(
    site: SiteOpt = None,
    scenario: Annotated[
        str | None, typer.Option(help="apply this named scenario of the site file's 'scenarios' section")
    ] = None,
    speed: Annotated[str, typer.Option(help="simulated seconds per real second, or 'max'")] = "1",
    duration: Annotated[str | None, typer.Option(help="simulated time, e.g. 8h (default: forever)")] = None,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same events")] = 1,
    start: Annotated[
        str | None, typer.Option(help="event time of the start, ISO 8601 (default: now minus --warmup)")
    ] = None,
    warmup: Annotated[
        str,
        typer.Option(
            help="first simulate this much of the past shift (e.g. 2h) quickly, then run at --speed"
        ),
    ] = "0",
    warmup_speed: Annotated[str, typer.Option(help="speed of the --warmup part, or max")] = WARMUP_SPEED,
    truth: Annotated[Path | None, typer.Option(help="write the ground truth here as JSON")] = None,
    dry_run: Annotated[
        Path | None,
        typer.Option("--dry-run", help="write events to this recording file (see --format), not MQTT"),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", help="--dry-run file format: jsonl (default; mosquitto_sub -F %j), native (gzip), csv"
        ),
    ] = None,
    mqtt_port: Annotated[int | None, typer.Option(help="MQTT broker port")] = None,
) -> None:
    """Drive parts through the site's lines and publish their movements over MQTT (or to a file)."""
    from wipwatch.simulators.line import simulate_site

    settings = load_settings(site_file=site, mqtt_port=mqtt_port)
    site_model = load_site(settings.site_file)
    if scenario is not None:
        site_model = site_model.with_scenario(scenario, str(settings.site_file))
    try:
        start_time = datetime.fromisoformat(start) if start else None
    except ValueError:
        raise typer.BadParameter(
            f"--start {start!r} is not ISO 8601, e.g. 2026-11-25T06:00:00+00:00"
        ) from None
    if start_time is not None and start_time.tzinfo is None:
        raise typer.BadParameter("--start needs a timezone, e.g. 2026-11-25T06:00:00+00:00")
    seconds = parse_duration(duration) if duration else None
    if seconds is not None and seconds <= 0:
        raise typer.BadParameter("--duration must be longer than 0")
    if dry_run is not None and seconds is None:
        raise typer.BadParameter("--dry-run needs --duration (a file cannot take events forever)")
    if fmt is not None and dry_run is None:
        raise typer.BadParameter("--format is the format of the --dry-run file; give --dry-run FILE too")
    real_speed = None if dry_run is not None else parse_speed(speed)
    warmup_s = parse_duration(warmup)
    warmup_factor = parse_speed(warmup_speed)
    if seconds is not None and warmup_s > seconds:
        raise typer.BadParameter(f"--warmup {warmup} is longer than --duration {duration}")
    if dry_run is None and real_speed != 1.0:
        err_console.print(
            f"note: at --speed {speed} event times run ahead of the wall clock, so live dashboards "
            "(now-6h to now) miss them; for a fast shift use --dry-run and `wipwatch up --replay`",
            markup=False,
            highlight=False,
        )
    if dry_run is not None:
        fmt = fmt or "jsonl"
        from wipwatch.recorder.formats import WRITE_FORMATS, RecordingWriter, site_header

        if fmt not in WRITE_FORMATS:
            raise typer.BadParameter(f"--format must be one of {', '.join(WRITE_FORMATS)}, got {fmt!r}")
        # the recorder's own writer: a dry run is a recording every wipwatch command reads back, and a
        # native one carries its site for `up --replay`
        sink: Any = RecordingWriter(dry_run, fmt, site_header(settings.site_file, scenario))
    else:
        from wipwatch.mqtt import MqttPublisher, MqttSecurity

        security = MqttSecurity.from_settings(settings)
        sink = MqttPublisher(
            settings.mqtt_host, settings.mqtt_port, f"wipwatch-sim-{seed}", security=security
        )
    try:
        if real_speed is None and seconds is not None:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            columns = (TextColumn("simulating"), BarColumn(), TextColumn("{task.fields[sim]}"))
            with Progress(*columns, TimeRemainingColumn(), console=err_console, transient=True) as bar:
                task = bar.add_task("sim", total=seconds, sim="")

                def advance(now: float) -> None:
                    bar.update(task, completed=now, sim=f"{now / 3600:.2f} h simulated")

                result = simulate_site(
                    site_model, sink, seed, seconds, None, start_time, progress=advance, warmup=warmup_s
                )
        else:
            result = simulate_site(
                site_model,
                sink,
                seed,
                seconds,
                real_speed,
                start_time,
                warmup=warmup_s,
                warmup_speed=warmup_factor,
            )
    finally:
        sink.close()
    truth_path = truth or (dry_run.with_suffix(".truth.json") if dry_run is not None else None)
    if truth_path is not None:
        try:
            truth_path.write_text(json.dumps(result.as_dict(), indent=1))
        except OSError as exc:
            raise WipwatchError(f"{truth_path}: cannot write the ground truth: {exc.strerror}") from None
    console.print(_simulation_table(result, site_model.lines, scenario))
    where = f"events in {dry_run}" if dry_run is not None else "events published"
    truth_note = f", ground truth in {truth_path}" if truth_path else ""
    console.print(f"simulated events={result.events} shipped={result.shipped} ({where}{truth_note})")


def _simulation_table(result: Any, lines: list[Any], scenario: str | None) -> Table:
    hours = result.duration / 3600
    title = f"Simulated {hours:.2f} h" + (f" — scenario {scenario}" if scenario else "")
    table = Table(title=title)
    for col in ("line", "policy", "orders", "shipped", "TH /h", "avg WIP", "lead min", "max lead"):
        table.add_column(col, justify="left" if col in ("line", "policy") else "right", no_wrap=col == "line")
    for line in lines:
        s = result.line_summary(line.id)
        table.add_row(
            line.id,
            line.release.policy,
            f"{s['orders']:.0f}",
            f"{s['shipped']:.0f}",
            f"{s['throughput_per_hour']:.1f}",
            f"{s['avg_wip']:.1f}",
            f"{s['mean_lead_time_s'] / 60:.1f}",
            f"{s['max_lead_time_s'] / 60:.1f}",
        )
    return table
