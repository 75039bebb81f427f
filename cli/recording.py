"""``wipwatch record`` and ``wipwatch replay``: MQTT traffic to a file and back (docs/record-replay.md)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from wipwatch.cli.options import err_console, parse_duration, parse_speed, parse_time_point
from wipwatch.errors import WipwatchError
from wipwatch.settings import load_settings
from wipwatch.site import load_site
from wipwatch.status import write_status

#: Skipped lines listed one by one at the end of a replay; the rest are counted.
_SKIPS_LISTED = 20


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

    def report(r: Recorder) -> None:
        """The status file (``run/status/record-<client id>.json``): subscribed, and the counts so far."""
        counts = {"received": r.received, "written": r.writer.messages, "bytes": r.writer.bytes_written}
        write_status(settings.run_dir, f"record-{client_id}", {"subscribed": True, "out": str(out), **counts})

    def flushed(r: Recorder, live: Live) -> None:
        live.update(status(r))
        report(r)

    try:
        recorder.start()
        recorder.wait_subscribed()
    except WipwatchError:
        recorder.close()
        out.unlink(missing_ok=True)  # nothing was recorded: leave no empty file behind
        raise
    report(recorder)
    try:
        with Live(status(recorder), console=err_console, transient=False) as live:
            recorder.run(seconds, on_flush=lambda r: flushed(r, live))
            live.update(status(recorder))
            report(recorder)
    finally:
        recorder.close()
    err_console.print(f"recorded {writer.messages} messages to {out}")
    if writer.lossy:
        err_console.print(
            f"warning: {writer.lossy} payloads were not UTF-8 and are stored with replacement characters "
            "(csv keeps text only; use --format native or jsonl for binary payloads)"
        )


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
