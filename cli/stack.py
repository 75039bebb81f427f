"""``wipwatch up``: the embedded default stack, live or replaying a recording into a fresh stack of its own.

The servers come from ``wipwatch.services``; the pipeline's processes are this CLI's own commands run as
children and kept running by ``supervisor.py`` (docs/architecture.md, "Processes of wipwatch up").
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlparse

import typer
import yaml
from rich.table import Table

from wipwatch.cli.options import RunDirOpt, SiteOpt, console, err_console, parse_duration, parse_speed
from wipwatch.errors import ServiceError, WipwatchError
from wipwatch.identifiers import IDENT_PATTERN
from wipwatch.settings import load_settings
from wipwatch.site import load_site
from wipwatch.status import write_status

if TYPE_CHECKING:
    from wipwatch.services import NativeStack


def _port_of(address: str) -> int:
    parsed = urlparse(address if "//" in address else f"//{address}")
    if parsed.port is None:
        raise typer.BadParameter(f"{address!r} has no port")
    return parsed.port


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
    from wipwatch.cli.supervisor import ChildSpec, Supervisor, SupervisorGaveUp
    from wipwatch.influx import InfluxTarget
    from wipwatch.ingest import read_status, wait_subscribed
    from wipwatch.retention import ensure_lifecycle
    from wipwatch.services import NativeStack, Ports, python_module_argv

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
                _report_disk(stack, run)
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


def _report_disk(stack: NativeStack, run_dir: Path) -> None:
    """One line on the console and ``run/status/disk.json``: the servers' disk use (bounded by retention)."""
    usage = stack.disk_usage()
    write_status(run_dir, "disk", {"bytes": usage})
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
