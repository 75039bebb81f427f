"""The views commands: ``wipwatch top`` (WIP in the terminal), ``board`` (the live board), ``dashboards``."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from wipwatch.cli.options import SiteOpt, console
from wipwatch.errors import ServiceError, WipwatchError
from wipwatch.settings import load_settings
from wipwatch.site import load_site
from wipwatch.views import wip_snapshot


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
