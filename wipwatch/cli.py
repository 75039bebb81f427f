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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

import typer
import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table

from wipwatch.alerts_cli import alerts_app
from wipwatch.errors import ServiceError, WipwatchError
from wipwatch.identifiers import IDENT_PATTERN
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

#: The live simulator's warm-up pace: the processors write a point per batch (about every 0.2 s), so
#: 300x puts about one point per simulated minute on the dashboards; two hours take 24 s.
WARMUP_SPEED = "300"


@app.command()
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


# ---------------------------------------------------------------- views: dashboards and board

dashboards_app = typer.Typer(
    no_args_is_help=True, help="Grafana dashboards as code: export their JSON, publish them to a Grafana."
)
app.add_typer(dashboards_app, name="dashboards")
app.add_typer(alerts_app, name="alerts")


@dashboards_app.command("export")
def dashboards_export(
    directory: Annotated[Path, typer.Argument(help="write <uid>.json files here")],
    site: SiteOpt = None,
    alerting: Annotated[
        Path | None,
        typer.Option(help="also write Grafana alert-rule provisioning YAML of the site's rules here"),
    ] = None,
) -> None:
    """Write every dashboard as Grafana JSON (what provisioning loads)."""
    from wipwatch.dashboards.alerting import export_alerting
    from wipwatch.dashboards.export import export

    settings = load_settings(site_file=site)
    for path in export(load_site(settings.site_file), directory):
        console.print(f"wrote {path}")
    if alerting is not None:
        console.print(f"wrote {export_alerting(load_site(settings.site_file), alerting)}")


@dashboards_app.command("publish")
def dashboards_publish(
    url: Annotated[str, typer.Option("--url", help="Grafana base URL, e.g. http://localhost:3000")],
    token: Annotated[
        str | None, typer.Option("--token", envvar="GRAFANA_TOKEN", help="service-account token (Editor)")
    ] = None,
    site: SiteOpt = None,
) -> None:
    """Create or overwrite the dashboards in a Grafana through its HTTP API (same uids every time)."""
    from wipwatch.dashboards.publish import FOLDER_TITLE, publish

    settings = load_settings(site_file=site)
    for item in publish(load_site(settings.site_file), url, token):
        console.print(
            f"published {item.uid} v{item.version} in folder {FOLDER_TITLE}: {url.rstrip('/')}{item.url}"
        )


@app.command()
def board(
    site: SiteOpt = None,
    influx_url: Annotated[str | None, typer.Option(help="InfluxDB URL")] = None,
    port: Annotated[
        int | None,
        typer.Option(help="port on WIPWATCH_BOARD_HOST (default 127.0.0.1); default WIPWATCH_BOARD_PORT"),
    ] = None,
    interval: Annotated[float | None, typer.Option(help="seconds between live updates")] = None,
    stale_after: Annotated[float, typer.Option(help="say 'no data' after this many seconds without")] = 10.0,
) -> None:
    """Serve the live value-stream board (WIP piles, bottleneck, lead time) in the browser."""
    from wipwatch.dashboards.board.access import is_loopback
    from wipwatch.dashboards.board.app import serve
    from wipwatch.dashboards.board.snapshot import SnapshotSource
    from wipwatch.influx import InfluxTarget
    from wipwatch.services import port_in_use

    settings = load_settings(site_file=site, influx_url=influx_url, board_port=port, board_interval=interval)
    site_model = load_site(settings.site_file)
    token = settings.board_token.get_secret_value()
    if not is_loopback(settings.board_host) and not token:
        raise WipwatchError(
            f"the board binds {settings.board_host}, beyond this machine: set WIPWATCH_BOARD_TOKEN "
            "(and WIPWATCH_BOARD_ALLOWED_HOSTS to the names people type), or bind 127.0.0.1"
        )
    if port_in_use(settings.board_port, settings.board_host):
        raise ServiceError(
            f"port {settings.board_port} on {settings.board_host} is in use; choose another with --port"
        )
    try:
        target = InfluxTarget.from_settings(settings)
    except ServiceError:  # start anyway: the page says "InfluxDB unreachable" until it answers
        target = InfluxTarget.from_settings(settings, detect=False)
    source = SnapshotSource(site_model, target, stale_after)
    console.print(f"wipwatch board: http://{settings.board_host}:{settings.board_port}/  (Ctrl-C stops it)")
    hosts = settings.board_allowed_hosts.split(",")
    serve(
        source,
        settings.board_host,
        settings.board_port,
        settings.board_interval,
        settings.board_max_streams,
        hosts,
        token,
    )


# ---------------------------------------------------------------- secrets


@app.command()
def secrets(
    directory: Annotated[
        Path, typer.Option("--dir", help="where docker-compose.yml is: writes .env and secrets/ there")
    ] = Path("."),
    sites: Annotated[
        list[Path] | None,
        typer.Option(
            "--site", help="site file whose devices get an MQTT account; repeat (default: the site file)"
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="replace existing secrets (rotates all of them)")
    ] = False,
) -> None:
    """Generate the docker-compose stack's secrets: .env and mosquitto's password file and ACL."""
    from wipwatch.credentials import password_env_name, write_compose_secrets

    names = [load_site(path).site for path in (sites or [load_settings().site_file])]
    try:
        env_path, broker = write_compose_secrets(directory, names, force)
    except FileExistsError as exc:
        raise WipwatchError(str(exc)) from None
    console.print(f"wrote {env_path} (mode 0600): every password, token and key of the stack")
    console.print(f"wrote {broker.password_file} (salted hashes) and {broker.acl_file} (topic rights)")
    devices = ", ".join(f"device-{n} ({password_env_name('device-' + n)})" for n in names)
    console.print(f"device accounts: {devices}; docs/operations.md says how to rotate each secret")


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
    speed: Annotated[
        str | None,
        typer.Option(help="--replay speed: recorded seconds per real second, or max (default 60)"),
    ] = None,
    warmup: Annotated[
        str,
        typer.Option(help="the simulator first fills this much of the past shift (at 300x), then runs live"),
    ] = "2h",
    seed: Annotated[int, typer.Option(help="simulator seed")] = 1,
    no_simulator: Annotated[bool, typer.Option("--no-simulator", help="wait for real floor sensors")] = False,
    replay_file: Annotated[
        Path | None,
        typer.Option(
            "--replay", help="replay this recording at --speed instead of simulating, in a fresh stack"
        ),
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            help="InfluxDB database (default WIPWATCH_INFLUX_DB; with --replay: replay-<file name>)"
        ),
    ] = None,
    alertmanager: Annotated[
        Path | None,
        typer.Option(
            help="also run Prometheus Alertmanager with this config, e.g. examples/alertmanager.yml"
        ),
    ] = None,
    tolerate_skipped: Annotated[
        bool, typer.Option("--tolerate-skipped", help="with --replay: accept unreadable lines (listed)")
    ] = False,
) -> None:
    """Run the embedded default stack: mosquitto, Kafka, InfluxDB, ingest, processors and a simulator.

    With ``--replay`` the site is the recording's: ``--site`` (or ``WIPWATCH_SITE_FILE``) is checked
    against the recording's events, else the default site file or an ``examples/`` site that describes
    them is chosen; a recording no site file describes, or with unreadable lines (unless
    ``--tolerate-skipped``), is refused before anything starts. "replay finished" is printed only once
    ingest has accepted every event of the recording.

    A crashed child is restarted with back-off while the others keep running; a child that keeps
    crashing (more than 5 times in a minute) or a server that dies stops everything, exit code 1.
    """
    from wipwatch.influx import InfluxTarget
    from wipwatch.ingest import read_status, wait_subscribed
    from wipwatch.retention import ensure_lifecycle
    from wipwatch.services import NativeStack, Ports, python_module_argv
    from wipwatch.supervisor import ChildSpec, Supervisor, SupervisorGaveUp

    settings = load_settings(site_file=site, run_dir=run_dir, influx_db=database)
    site_model = load_site(settings.site_file)
    if replay_file is None and not no_simulator and speed is not None and parse_speed(speed) != 1.0:
        raise typer.BadParameter(
            f"--speed {speed}: the live simulator runs in real time so that dashboards over now-6h..now "
            "show it (--warmup fills the past hours quickly); --speed is for --replay"
        )
    replay_speed = speed or "60"
    parse_speed(replay_speed)
    parse_duration(warmup)  # a bad --warmup fails here, not in the simulator child
    expected_events = 0
    run = settings.run_dir.resolve()
    shift_range = None
    if replay_file is not None:
        # refuses before anything starts
        chosen = replay_site(replay_file, site, settings.site_file, tolerate_skipped)
        expected_events = chosen.events
        run, database = replay_stack(run, replay_file, database)
        run.mkdir(parents=True, exist_ok=True)
        settings = settings.with_overrides(influx_db=database, site_file=chosen.materialise(run))
        shift_range = recording_event_range(replay_file)
        site_model = load_site(settings.site_file)
    ports = Ports(settings.mqtt_port, _port_of(settings.kafka_bootstrap), _port_of(settings.influx_url))
    stack = NativeStack(run / "stack", ports, settings.influx_db)
    if alertmanager is not None:  # docs/alerts.md; port from WIPWATCH_ALERTMANAGER_URL, else 19093
        am_port = _port_of(settings.alertmanager_url) if settings.alertmanager_url else 19093
        stack.alertmanager = (am_port, alertmanager.resolve())
    mqtt_env: dict[str, dict[str, str]] = {}  # child name -> its MQTT account, with WIPWATCH_MQTT_AUTH
    if settings.mqtt_auth:
        from wipwatch.credentials import (
            INGEST_USER,
            PROCESSORS_USER,
            device_user,
            mqtt_accounts,
            write_broker_files,
        )

        accounts = {a.username: a for a in mqtt_accounts([site_model.site], {})}  # fresh passwords each start
        stack.mqtt_auth = write_broker_files(run / "stack" / "mqtt-auth", accounts.values())
        users = {
            "ingest": INGEST_USER,
            "processors": PROCESSORS_USER,
            "producer": device_user(site_model.site),
        }
        mqtt_env = {
            child: {"WIPWATCH_MQTT_USERNAME": user, "WIPWATCH_MQTT_PASSWORD": accounts[user].password}
            for child, user in users.items()
        }
    supervisor = Supervisor(run / "logs", status_file=run / "status" / "up.json")
    stop_requested = {"signal": 0}
    failure: str | None = None
    incomplete: str | None = None

    def request_stop(signum: int, _frame: Any) -> None:
        stop_requested["signal"] = signum

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        stack.start()
        lifecycle_target = InfluxTarget.from_settings(settings.with_overrides(influx_url=stack.influx_url))
        # a replayed shift may be older than the raw retention: InfluxDB would drop its points on write
        raw_retention = "INF" if replay_file is not None else settings.influx_raw_retention
        ensure_lifecycle(lifecycle_target, raw_retention, settings.influx_rollup_retention)
        env = {
            "WIPWATCH_SITE_FILE": str(settings.site_file.resolve()),
            "WIPWATCH_RUN_DIR": str(run),
            "WIPWATCH_MQTT_PORT": str(ports.mqtt),
            "WIPWATCH_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
            "WIPWATCH_INFLUX_URL": stack.influx_url,
            "WIPWATCH_INFLUX_DB": settings.influx_db,
        }
        if "alertmanager" in stack.children:
            env["WIPWATCH_ALERTMANAGER_URL"] = stack.children["alertmanager"].address
        producer_env = {**env, **mqtt_env.get("producer", {})}
        ingest_env = {**env, **mqtt_env.get("ingest", {})}
        ingest_child = supervisor.start(ChildSpec("ingest", python_module_argv("ingest"), ingest_env))
        wait_subscribed(ingest_child, run, settings.ingest_client_id)
        processors_env = {**env, **mqtt_env.get("processors", {})}
        supervisor.start(ChildSpec("processors", python_module_argv("process"), processors_env))
        if replay_file is not None:
            argv = python_module_argv("replay", str(replay_file.resolve()), "--speed", replay_speed)
            # up read the whole file already and refused unreadable lines unless tolerated: the child must
            # not exit 1 for them, or the supervisor would restart it and replay everything again
            argv.append("--tolerate-skipped")
            supervisor.start(ChildSpec("replay", argv, producer_env, finite=True))
        elif not no_simulator:
            supervisor.start(ChildSpec("simulator", _simulator_argv(warmup, seed), producer_env))
        board_argv = python_module_argv("board", "--port", str(settings.board_port))
        board_child = supervisor.start(ChildSpec("board", board_argv, env))
        board_child.address = f"http://{settings.board_host}:{settings.board_port}/"
        table = Table(title="wipwatch is up", show_header=False)
        for child in [*stack.children.values(), *supervisor.children.values()]:
            table.add_row(child.name, f"pid {child.pid}", child.address or f"log {child.log_path}")
        console.print(table)
        console.print(f"Live board: [bold]http://{settings.board_host}:{settings.board_port}/[/]")
        console.print(
            f"Watch WIP: [bold]wipwatch top[/] (env: WIPWATCH_INFLUX_URL={stack.influx_url} "
            f"WIPWATCH_INFLUX_DB={settings.influx_db})"
        )
        if shift_range is not None:
            console.print(
                f"Replayed shift in Grafana (a datasource reading database {settings.influx_db}): "
                f"[bold]{grafana_shift_link(settings.grafana_url, *shift_range)}[/]",
                soft_wrap=True,
            )
        console.print("Ctrl-C stops everything.")
        disk_at = time.monotonic() + 60
        counting_since: float | None = None  # the replay is done: wait for ingest to count its events
        while not stop_requested["signal"]:
            if time.monotonic() >= disk_at:
                _report_disk(stack, run / "status" / "disk.json")
                disk_at = time.monotonic() + 600
            try:
                notes = supervisor.poll()
            except SupervisorGaveUp as exc:
                failure = str(exc)
                break
            for note in notes:
                if note == "replay finished":
                    counting_since = time.monotonic()
                else:  # a crash or a restart
                    err_console.print(note, markup=False, highlight=False)
            if counting_since is not None:
                verdict = _replay_counted(
                    read_status(run, settings.ingest_client_id), expected_events, counting_since
                )
                if verdict is not None:
                    counting_since = None
                    if verdict.startswith("replay finished"):
                        console.print(f"{verdict}; the stack stays up for review until Ctrl-C")
                    else:
                        incomplete = verdict
                        err_console.print(
                            f"{verdict}; the stack stays up for review until Ctrl-C (exit code 1)",
                            markup=False,
                            highlight=False,
                        )
            dead = [c for c in stack.children.values() if not c.alive()]
            if dead:
                failure = f"{dead[0].name} exited (code {dead[0].process.returncode}); log {dead[0].log_path}"
                break
            time.sleep(0.2)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        supervisor.stop_all()
        stack.stop()
        console.print("stopped every child process")
    if failure is not None:
        raise ServiceError(f"up stopped: {failure}")
    if incomplete is not None:
        raise WipwatchError(incomplete)


#: How long ``up --replay`` waits after the replay for ingest to have counted every event.
_COUNT_WAIT_S = 120.0


def _replay_counted(status: dict[str, Any] | None, expected: int, since: float) -> str | None:
    """The verdict on a finished replay from ingest's counts; None while ingest is still counting."""
    counts = status or {}
    accepted, rejected = int(counts.get("accepted", 0)), int(counts.get("rejected", 0))
    if accepted == expected and rejected == 0:
        return f"replay finished: ingest accepted all {expected} events"
    if accepted + rejected < expected and time.monotonic() - since < _COUNT_WAIT_S:
        return None
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted((counts.get("reasons") or {}).items()))
    return (
        f"replay incomplete: ingest accepted {accepted} and rejected {rejected} of the recording's "
        f"{expected} events" + (f" ({reasons}; see the dead-letter topic)" if reasons else "")
    )


@dataclass
class ReplaySite:
    """The site ``up --replay`` runs with: a site file, or the text of one from the recording's header."""

    path: Path | None
    yaml: str | None
    site_id: str
    source: str
    events: int

    def materialise(self, run_dir: Path) -> Path:
        """The site file path; a site from the recording's header is written into ``run_dir`` first."""
        if self.path is not None:
            return self.path
        path = run_dir / "site-from-recording.yaml"
        path.write_text(self.yaml or "", encoding="utf-8")
        return path


def replay_site(
    recording: Path, site_option: Path | None, default_site: Path, tolerate_skipped: bool = False
) -> ReplaySite:
    """The site of ``up --replay`` and the number of event messages ingest will be given.

    ``--site`` or ``WIPWATCH_SITE_FILE`` is the user's choice and only checked. Otherwise, in this order:
    the site embedded in the recording's header (``simulate --dry-run`` and ``record --site`` write it
    into ``native`` recordings), the site file the header names, the default site file, the
    ``examples/`` sites; the first describing most events wins, and two different guesses that fit
    equally are refused as ambiguous.

    Raises:
        RecordingError: the recording is unreadable, has unreadable lines (unless ``tolerate_skipped``),
            holds no event, or no site file describes it.
        SiteFileError: the chosen site file is not valid.
    """
    import os

    from wipwatch.errors import RecordingError, SiteFileError
    from wipwatch.recorder.formats import read_recording
    from wipwatch.recorder.replay import SiteCandidate, site_for_recording, survey
    from wipwatch.settings import REPO_ROOT
    from wipwatch.site import Site, parse_site

    if not recording.is_file():
        raise typer.BadParameter(f"--replay {recording}: no such file")
    reader = read_recording(recording)
    contents = survey(reader)
    if contents.events == 0 and contents.skipped:
        raise RecordingError(f"{recording}: no readable message; {contents.skipped[0]}")
    if contents.skipped and not tolerate_skipped:
        raise RecordingError(
            f"{recording}: {len(contents.skipped)} unreadable line(s), first {contents.skipped[0]}; "
            "the replay would be incomplete (--tolerate-skipped accepts that)"
        )
    candidates: list[SiteCandidate] = []
    origin: dict[int, tuple[Path | None, str | None]] = {}

    def add(source: str, site_model: Site, path: Path | None, text: str | None, guess: bool) -> None:
        origin[len(candidates)] = (path, text)
        candidates.append(SiteCandidate(source, site_model, guess))

    if site_option is not None or "WIPWATCH_SITE_FILE" in os.environ:
        add(str(default_site), load_site(default_site), default_site, None, False)
    else:
        header = reader.header or {}
        if isinstance(header.get("site_yaml"), str):
            try:
                embedded = parse_site(yaml.safe_load(header["site_yaml"]), f"{recording} (header)")
                add("the recording's header", embedded, None, header["site_yaml"], False)
            except (SiteFileError, yaml.YAMLError) as exc:
                err_console.print(f"ignoring the site in {recording}'s header: {exc}", markup=False)
        files = [Path(header["site_file"])] if isinstance(header.get("site_file"), str) else []
        files += [default_site, *sorted((REPO_ROOT / "examples").glob("*.yaml"))]
        seen: set[Path] = set()
        for index, file in enumerate(files):
            if not file.is_file() or file.resolve() in seen:
                continue
            seen.add(file.resolve())
            try:
                add(str(file), load_site(file), file, None, guess=index > 0 or not header.get("site_file"))
            except SiteFileError:
                continue
    chosen = site_for_recording(recording, contents, candidates)
    path, text = origin[next(i for i, c in enumerate(candidates) if c is chosen)]
    console.print(f"replaying {recording} for site {chosen.site.site!r} (site from {chosen.source})")
    return ReplaySite(path, text, chosen.site.site, chosen.source, contents.events)


def _report_disk(stack: Any, status_file: Path) -> None:
    """One line on the console and ``run/status/disk.json``: the servers' disk use (bounded by retention)."""
    usage = stack.disk_usage()
    status_file.parent.mkdir(parents=True, exist_ok=True)
    status_file.write_text(json.dumps({"time": time.time(), "bytes": usage}))
    console.print("disk: " + ", ".join(f"{name} {size / 1e6:.0f} MB" for name, size in usage.items()))


def _simulator_argv(warmup: str, seed: int) -> Callable[[], list[str]]:
    """The live simulator's argv, built at each (re)start (docs/simulators.md, "Live time").

    The first start warms up over the past ``warmup``, then runs in real time; a restart goes on from
    the wall clock (the time the simulation had reached: it runs at speed 1), without a second warm-up.
    """
    starts = {"count": 0}

    def argv() -> list[str]:
        from wipwatch.services import python_module_argv

        starts["count"] += 1
        args = ["simulate", "--speed", "1", "--seed", str(seed)]
        if starts["count"] == 1:
            return python_module_argv(*args, "--warmup", warmup)
        now = datetime.now(UTC).replace(microsecond=0)
        return python_module_argv(*args, "--start", now.isoformat())

    return argv


# ---------------------------------------------------------------- record / replay (issue #7)

#: Skipped lines listed one by one at the end of a replay; the rest are counted.
_SKIPS_LISTED = 20


def parse_time_point(text: str) -> Any:
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


@app.command()
def record(
    out: Annotated[Path, typer.Option("--out", help="recording file to write")],
    topics: Annotated[
        list[str] | None, typer.Option("--topics", help="topic filter; repeat for more (default: events)")
    ] = None,
    duration: Annotated[
        str | None, typer.Option(help="stop after this long, e.g. 8h (default: Ctrl-C)")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="native (gzip JSON lines), csv or jsonl")] = "native",
    mqtt_port: Annotated[int | None, typer.Option(help="MQTT broker port")] = None,
    client_id: Annotated[str, typer.Option(help="MQTT client id (persistent session)")] = "wipwatch-recorder",
    site: Annotated[
        Path | None,
        typer.Option("--site", help="site file of the recorded events, kept in a native recording's header"),
    ] = None,
) -> None:
    """Record MQTT messages (receive time, topic, QoS, payload) to a file until Ctrl-C or --duration."""
    from rich.live import Live

    from wipwatch.mqtt import MqttSecurity
    from wipwatch.recorder.formats import WRITE_FORMATS, RecordingWriter, site_header
    from wipwatch.recorder.record import DEFAULT_TOPICS, Recorder

    if fmt not in WRITE_FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(WRITE_FORMATS)}, got {fmt!r}")
    seconds = parse_duration(duration) if duration else None
    settings = load_settings(mqtt_port=mqtt_port)
    if site is not None:
        load_site(site)  # a broken site file fails now, not at replay
    writer = RecordingWriter(out, fmt, site_header(site) if site is not None else None)
    recorder = Recorder(
        writer,
        settings.mqtt_host,
        settings.mqtt_port,
        topics or DEFAULT_TOPICS,
        client_id,
        settings.mqtt_qos,
        security=MqttSecurity.from_settings(settings),
    )
    signal.signal(signal.SIGINT, lambda *_: recorder.stop())
    signal.signal(signal.SIGTERM, lambda *_: recorder.stop())
    began = time.monotonic()

    def status(r: Recorder) -> str:
        rate = r.received / max(time.monotonic() - began, 1e-9)
        return (
            f"recording {out}: {r.received} messages ({rate:.0f}/s), "
            f"{r.payload_bytes / 1e6:.2f} MB payload, {r.writer.bytes_written / 1e6:.2f} MB on disk"
        )

    try:
        recorder.start()
        recorder.wait_subscribed()
    except WipwatchError:
        recorder.close()
        out.unlink(missing_ok=True)  # nothing was recorded: leave no empty file behind
        raise
    try:
        with Live(status(recorder), console=err_console, transient=False) as live:
            recorder.run(seconds, on_flush=lambda r: live.update(status(r)))
            live.update(status(recorder))
    finally:
        recorder.close()
    err_console.print(f"recorded {writer.messages} messages to {out}")
    if writer.lossy:
        err_console.print(
            f"warning: {writer.lossy} payloads were not UTF-8 and are stored with replacement characters "
            "(csv keeps text only; use --format native or jsonl for binary payloads)"
        )


@app.command()
def replay(
    file: Annotated[
        Path, typer.Argument(help="recording: wipwatch, mqtt-recorder CSV, mosquitto_sub %j, dry-run")
    ],
    speed: Annotated[
        str, typer.Option(help="1 = real time, 60 = an hour a minute, max = as fast as possible")
    ] = "1",
    from_: Annotated[
        str | None, typer.Option("--from", help="start: ISO time or offset like 2h (receive time)")
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="end (exclusive): ISO time or offset like 3h")
    ] = None,
    loop: Annotated[bool, typer.Option("--loop", help="start over at the end until Ctrl-C")] = False,
    tolerate_skipped: Annotated[
        bool,
        typer.Option(
            "--tolerate-skipped", help="exit 0 even if unreadable lines were skipped (they are still listed)"
        ),
    ] = False,
    mqtt_port: Annotated[int | None, typer.Option(help="MQTT broker port")] = None,
    client_id: Annotated[str, typer.Option(help="MQTT client id")] = "wipwatch-replay",
) -> None:
    """Publish a recording again (QoS 1), payloads and event times unchanged.

    Exits 1 if any line of the file could not be read (each is listed with its line number), unless
    ``--tolerate-skipped``.
    """
    import threading

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from wipwatch.errors import RecordingError
    from wipwatch.mqtt import MqttPublisher, MqttSecurity
    from wipwatch.recorder.formats import read_recording
    from wipwatch.recorder.replay import replay as run_replay

    factor = parse_speed(speed)
    start, end = (parse_time_point(t) if t else None for t in (from_, to))
    if not file.is_file():
        raise typer.BadParameter(f"{file} is not a file")
    settings = load_settings(mqtt_port=mqtt_port)
    reader = read_recording(file)
    if reader.detect() is None and reader.skipped:  # an unknown format raised already
        raise RecordingError(f"{file}: no readable message; {reader.skipped[0]}")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    publisher = MqttPublisher(
        settings.mqtt_host,
        settings.mqtt_port,
        client_id,
        qos=settings.mqtt_qos,
        security=MqttSecurity.from_settings(settings),
    )
    columns = (
        TextColumn("replay"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%  {task.fields[messages]} messages"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=err_console) as bar:
            task = bar.add_task("replay", total=reader.size() or 1, messages=0)

            def progress(published: int, position: int, size: int) -> None:
                bar.update(task, completed=position, total=size or 1, messages=published)

            result = run_replay(reader, publisher.publish, factor, start, end, loop, stop, progress)
    finally:
        publisher.close()
    for skip in result.skipped[:_SKIPS_LISTED]:
        err_console.print(f"skipped {file}: {skip}", markup=False, highlight=False)
    if len(result.skipped) > _SKIPS_LISTED:
        more = len(result.skipped) - _SKIPS_LISTED
        err_console.print(f"skipped {file}: ... and {more} more", markup=False, highlight=False)
    err_console.print(
        f"replayed {result.published} messages ({result.format}) in {result.seconds:.1f}s; "
        f"{len(result.skipped)} skipped, {result.outside_window} outside --from/--to",
        markup=False,
        highlight=False,
    )
    if result.skipped and not tolerate_skipped:
        raise RecordingError(
            f"{file}: {len(result.skipped)} unreadable line(s) skipped, first {result.skipped[0]}; "
            "the replay is incomplete (--tolerate-skipped accepts that)"
        )


def replay_stack(run_dir: Path, recording: Path, database: str | None) -> tuple[Path, str]:
    """Run directory and InfluxDB database of ``up --replay``: a fresh stack apart from live data.

    The replay's Kafka topics, Faust tables and InfluxDB live under ``<run_dir>/replays/<database>``,
    emptied first: the processors must start from nothing, as the original run did, and everything there
    is derived from the recording. The database name defaults to ``replay-<recording name>``.
    """
    import shutil

    if not recording.is_file():
        raise typer.BadParameter(f"--replay {recording}: no such file")
    if database is None:
        stem = recording.name.split(".")[0]
        database = "replay-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-") or "recording")
    if not re.fullmatch(IDENT_PATTERN, database) or ".." in database:
        raise typer.BadParameter(f"--database {database!r}: use letters, digits, '_', '-', '.' (max 64)")
    run = run_dir / "replays" / database
    if run.exists():
        shutil.rmtree(run)
    return run, database


def recording_event_range(path: Path) -> tuple[datetime, datetime] | None:
    """Earliest and latest event time among the recording's readable events (None if there are none)."""
    from wipwatch.errors import EventError
    from wipwatch.events import decode_event
    from wipwatch.recorder.formats import read_recording

    first = last = None
    for message in read_recording(path):
        try:
            moment = decode_event(message.payload).time
        except EventError:
            continue  # not an event (an alert, a bad payload): the replay reports those
        first = moment if first is None or moment < first else first
        last = moment if last is None or moment > last else last
    return None if first is None or last is None else (first, last)


def grafana_shift_link(grafana_url: str, first: datetime, last: datetime) -> str:
    """The shift-review dashboard over ``[first, last]`` as absolute times (epoch milliseconds)."""
    from wipwatch.dashboards.shift_review import UID

    start_ms, end_ms = int(first.timestamp() * 1000), int(last.timestamp() * 1000) + 1000
    return f"{grafana_url.rstrip('/')}/d/{UID}?from={start_ms}&to={end_ms}"


# ---------------------------------------------------------------- benchmark / whatif (issue #17)

from wipwatch.cli_whatif import benchmark, whatif  # noqa: E402 - the commands live apart, registered here

app.command()(benchmark)
app.command()(whatif)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except WipwatchError as exc:
        if _debug["on"]:
            raise
        err_console.print(f"wipwatch: error: {exc}", markup=False, highlight=False)
        sys.exit(1)
