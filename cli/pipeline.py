"""``wipwatch ingest`` and ``wipwatch process``: one process of a pipeline service each."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from wipwatch.cli.options import SiteOpt
from wipwatch.settings import load_settings
from wipwatch.site import load_site


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
