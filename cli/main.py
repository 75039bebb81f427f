"""The ``wipwatch`` command: the typer app, its global options and error handling; the commands live by
subject in this package and are registered here.

Errors a user can cause are printed as one line and exit 1; ``--debug`` shows the traceback. The console
script ``wipwatch`` and ``python -m wipwatch`` both run ``main``.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from wipwatch.cli.alerts import alerts_app
from wipwatch.cli.deploy import secrets
from wipwatch.cli.options import err_console
from wipwatch.cli.pipeline import ingest, process
from wipwatch.cli.recording import record, replay
from wipwatch.cli.simulate import simulate
from wipwatch.cli.stack import up
from wipwatch.cli.views import board, dashboards_app, top
from wipwatch.cli.whatif import benchmark, whatif
from wipwatch.errors import WipwatchError
from wipwatch.settings import load_settings

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Streaming WIP monitor: where material waits, how fast queues grow, what it costs.",
)
_debug = {"on": False}


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


# in the order `wipwatch --help` lists them
for command in (simulate, ingest, process, top, board, secrets, up, record, replay, benchmark, whatif):
    app.command()(command)
app.add_typer(dashboards_app, name="dashboards")
app.add_typer(alerts_app, name="alerts")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except WipwatchError as exc:
        if _debug["on"]:
            raise
        err_console.print(f"wipwatch: error: {exc}", markup=False, highlight=False)
        sys.exit(1)
