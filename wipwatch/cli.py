"""The ``wipwatch`` command: the only place that prints; every other module logs.

Errors a user can cause are printed as one line and exit 1; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from wipwatch.errors import WipwatchError
from wipwatch.settings import Settings, load_settings
from wipwatch.site import load_site

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Streaming WIP monitor: where material waits, how fast queues grow, what it costs.",
)
console = Console()
err_console = Console(stderr=True)
_debug = {"on": False}

SiteOpt = Annotated[Path | None, typer.Option("--site", help="site file (default: WIPWATCH_SITE_FILE)")]
RunDirOpt = Annotated[Path | None, typer.Option("--run-dir", help="state, logs and server data")]


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks")] = False,
    log_level: Annotated[str | None, typer.Option("--log-level", help="DEBUG, INFO, WARNING, ERROR")] = None,
) -> None:
    _debug["on"] = debug
    level = (log_level or load_settings().log_level).upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


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


# ---------------------------------------------------------------- simulate


@app.command()
def simulate(
    site: SiteOpt = None,
    scenario: Annotated[
        str | None, typer.Option(help="apply this named scenario of the site file's 'scenarios' section")
    ] = None,
    speed: Annotated[str, typer.Option(help="simulated seconds per real second, or 'max'")] = "60",
    duration: Annotated[str | None, typer.Option(help="simulated time, e.g. 8h (default: forever)")] = None,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same events")] = 1,
    start: Annotated[
        str | None, typer.Option(help="event time of the start, ISO 8601 (default: now)")
    ] = None,
    truth: Annotated[Path | None, typer.Option(help="write the ground truth here as JSON")] = None,
    dry_run: Annotated[
        Path | None,
        typer.Option(
            "--dry-run", help="write events to this JSON-lines file (mosquitto_sub -F %j style), not MQTT"
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
    real_speed = None if dry_run is not None else parse_speed(speed)
    if dry_run is not None:
        from wipwatch.simulators.recording import JsonLinesSink

        sink: Any = JsonLinesSink(dry_run)
    else:
        from wipwatch.simulators.publisher import MqttPublisher

        sink = MqttPublisher(settings.mqtt_host, settings.mqtt_port, f"wipwatch-sim-{seed}")
    try:
        if real_speed is None and seconds is not None:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            columns = (TextColumn("simulating"), BarColumn(), TextColumn("{task.fields[sim]}"))
            with Progress(*columns, TimeRemainingColumn(), console=err_console, transient=True) as bar:
                task = bar.add_task("sim", total=seconds, sim="")

                def advance(now: float) -> None:
                    bar.update(task, completed=now, sim=f"{now / 3600:.2f} h simulated")

                result = simulate_site(site_model, sink, seed, seconds, None, start_time, progress=advance)
        else:
            result = simulate_site(site_model, sink, seed, seconds, real_speed, start_time)
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


# ---------------------------------------------------------------- ingest / process


@app.command()
def ingest(
    site: SiteOpt = None,
    mqtt_port: Annotated[int | None, typer.Option(help="MQTT broker port")] = None,
    kafka: Annotated[str | None, typer.Option(help="Kafka bootstrap host:port")] = None,
    client_id: Annotated[str | None, typer.Option(help="MQTT client id (one per ingest instance)")] = None,
) -> None:
    """Bridge MQTT to Kafka: validate, key by line, dead-letter what is invalid."""
    from wipwatch.ingest import IngestBridge

    settings = load_settings(
        site_file=site, mqtt_port=mqtt_port, kafka_bootstrap=kafka, ingest_client_id=client_id
    )
    bridge = IngestBridge(settings, load_site(settings.site_file))

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await bridge.run(stop)

    asyncio.run(run())


@app.command()
def process(
    site: SiteOpt = None,
    kafka: Annotated[str | None, typer.Option(help="Kafka bootstrap host:port")] = None,
    influx_url: Annotated[str | None, typer.Option(help="InfluxDB URL")] = None,
    web_port: Annotated[int | None, typer.Option(help="serve Faust's web UI on 127.0.0.1:PORT")] = None,
) -> None:
    """Run one Faust worker of the stream processors."""
    from wipwatch.processors.app import run_worker

    settings = load_settings(
        site_file=site,
        kafka_bootstrap=kafka,
        influx_url=influx_url,
        processor_web=True if web_port else None,
        processor_web_port=web_port,
    )
    load_site(settings.site_file)
    run_worker(settings)


# ---------------------------------------------------------------- top


def wip_snapshot(settings: Settings) -> dict[str, Any]:
    """Latest WIP per location from InfluxDB, in flow order of the site file."""
    from wipwatch.influx import InfluxTarget, query, rows

    site_model = load_site(settings.site_file)
    target = InfluxTarget.from_settings(settings)
    series = query(
        target,
        # one selector plus a plain field: InfluxQL then returns the selected point's own time and value
        f'SELECT last("parts") AS parts, "value" FROM "wip" '
        f'WHERE "site" = \'{site_model.site}\' GROUP BY "line", "location"',
    )
    latest = {(r["line"], r["location"]): r for r in rows(series)}
    locations = []
    for line, loc in site_model.iter_locations():
        r = latest.get((line.id, loc.id), {})
        locations.append(
            {
                "line": line.id,
                "location": loc.id,
                "kind": loc.kind.value,
                "cap": loc.cap,
                "wip": int(r.get("parts") or 0),
                "value": float(r.get("value") or 0.0),
                "time_us": r.get("time"),
            }
        )
    return {"site": site_model.site, "currency": site_model.currency, "locations": locations}


def _wip_table(snapshot: dict[str, Any]) -> Table:
    table = Table(title=f"WIP — site {snapshot['site']}  ({time.strftime('%H:%M:%S')})")
    for col in ("line", "location", "kind", "WIP", "cap", f"tied up ({snapshot['currency']})", "last change"):
        table.add_column(col, justify="right" if col in ("WIP", "cap") else "left")
    for loc in snapshot["locations"]:
        over = loc["cap"] is not None and loc["wip"] > loc["cap"]
        when = datetime.fromtimestamp(loc["time_us"] / 1e6).strftime("%H:%M:%S") if loc["time_us"] else "-"
        table.add_row(
            loc["line"],
            loc["location"],
            loc["kind"],
            f"[bold red]{loc['wip']}[/]" if over else str(loc["wip"]),
            str(loc["cap"] or "-"),
            f"{loc['value']:.2f}",
            when,
        )
    return table


@app.command()
def top(
    site: SiteOpt = None,
    influx_url: Annotated[str | None, typer.Option(help="InfluxDB URL")] = None,
    once: Annotated[bool, typer.Option("--once", help="one snapshot, then exit")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the snapshot as JSON")] = False,
    interval: Annotated[float, typer.Option(help="refresh seconds")] = 1.0,
) -> None:
    """Live WIP per location in the terminal."""
    settings = load_settings(site_file=site, influx_url=influx_url)
    if once:
        snapshot = wip_snapshot(settings)
        if as_json:
            sys.stdout.write(json.dumps(snapshot) + "\n")
        else:
            console.print(_wip_table(snapshot))
        return
    with Live(_wip_table(wip_snapshot(settings)), console=console, screen=False) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(_wip_table(wip_snapshot(settings)))
        except KeyboardInterrupt:
            pass


# ---------------------------------------------------------------- up


def _port_of(address: str) -> int:
    parsed = urlparse(address if "//" in address else f"//{address}")
    if parsed.port is None:
        raise typer.BadParameter(f"{address!r} has no port")
    return parsed.port


@app.command()
def up(
    site: SiteOpt = None,
    run_dir: RunDirOpt = None,
    speed: Annotated[str, typer.Option(help="simulator speed (simulated seconds per real second)")] = "60",
    seed: Annotated[int, typer.Option(help="simulator seed")] = 1,
    no_simulator: Annotated[bool, typer.Option("--no-simulator", help="wait for real floor sensors")] = False,
) -> None:
    """Run the embedded default stack: mosquitto, Kafka, InfluxDB, ingest, processors and a simulator."""
    from wipwatch.ingest import wait_subscribed
    from wipwatch.services import NativeStack, Ports, python_module_argv, spawn

    settings = load_settings(site_file=site, run_dir=run_dir)
    load_site(settings.site_file)
    run = settings.run_dir.resolve()
    ports = Ports(settings.mqtt_port, _port_of(settings.kafka_bootstrap), _port_of(settings.influx_url))
    stack = NativeStack(run / "stack", ports, settings.influx_db)
    children = []
    stop_requested = {"signal": 0}

    def request_stop(signum: int, _frame: Any) -> None:
        stop_requested["signal"] = signum

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        stack.start()
        env = {
            "WIPWATCH_SITE_FILE": str(settings.site_file.resolve()),
            "WIPWATCH_RUN_DIR": str(run),
            "WIPWATCH_MQTT_PORT": str(ports.mqtt),
            "WIPWATCH_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
            "WIPWATCH_INFLUX_URL": stack.influx_url,
        }
        logs = run / "logs"
        ingest_child = spawn("ingest", python_module_argv("ingest"), logs, env)
        children.append(ingest_child)
        wait_subscribed(ingest_child, run, settings.ingest_client_id)
        children.append(spawn("processors", python_module_argv("process"), logs, env))
        if not no_simulator:
            sim = python_module_argv("simulate", "--speed", speed, "--seed", str(seed))
            children.append(spawn("simulator", sim, logs, env))
        table = Table(title="wipwatch is up", show_header=False)
        for child in [*stack.children.values(), *children]:
            table.add_row(child.name, f"pid {child.pid}", child.address or f"log {child.log_path}")
        console.print(table)
        console.print(f"Watch WIP: [bold]wipwatch top[/] (env: WIPWATCH_INFLUX_URL={stack.influx_url})")
        console.print("Ctrl-C stops everything.")
        while not stop_requested["signal"]:
            dead = [c for c in children if not c.alive()]
            if dead:
                err_console.print(
                    f"{dead[0].name} exited (code {dead[0].process.returncode}); log {dead[0].log_path}"
                )
                break
            time.sleep(0.2)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for child in reversed(children):
            child.stop()
        stack.stop()
        console.print("stopped every child process")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except WipwatchError as exc:
        if _debug["on"]:
            raise
        err_console.print(f"wipwatch: error: {exc}", markup=False, highlight=False)
        sys.exit(1)
