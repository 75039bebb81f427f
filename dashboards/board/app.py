"""The board's web app: the page, its static files, a JSON snapshot and a Server-Sent-Events stream.

All browsers share one snapshot per interval (``CachedSnapshots``), so ten open boards cost InfluxDB the
same as one. The page is plain HTML/CSS/JS shipped as package data: no build step, no network at run time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from wipwatch.dashboards.board.access import BoardAccess
from wipwatch.dashboards.board.snapshot import SnapshotSource

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"


class CachedSnapshots:
    """At most one InfluxDB round per ``interval`` however many clients ask; queries run off the loop."""

    def __init__(
        self, source: SnapshotSource, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self.source = source
        self.interval = interval
        self._clock = clock
        self._lock = asyncio.Lock()
        self._taken_at = float("-inf")
        self._snapshot: dict[str, Any] = {}

    async def get(self) -> dict[str, Any]:
        async with self._lock:
            if self._clock() - self._taken_at >= self.interval * 0.9:
                self._snapshot = await asyncio.to_thread(self.source.snapshot)
                self._taken_at = self._clock()
            return self._snapshot


def create_app(
    source: SnapshotSource,
    interval: float = 1.0,
    allowed_hosts: Sequence[str] = ("127.0.0.1", "localhost", "::1"),
    token: str = "",
) -> Starlette:
    """The board for ``source``'s site; pushes a snapshot every ``interval`` seconds.

    ``allowed_hosts`` and ``token``: who may open it (``wipwatch.dashboards.board.access``).
    """
    from sse_starlette.sse import EventSourceResponse

    snapshots = CachedSnapshots(source, interval)

    async def index(_: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html")

    async def snapshot(_: Request) -> Response:
        return JSONResponse(await snapshots.get())

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[dict[str, str]]:
            while not await request.is_disconnected():
                yield {"event": "snapshot", "data": json.dumps(await snapshots.get())}
                await asyncio.sleep(interval)

        return EventSourceResponse(stream(), ping=15)

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "site": source.site.site})

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/snapshot", snapshot),
            Route("/events", events),
            Route("/healthz", health),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        ],
        middleware=[Middleware(BoardAccess, allowed_hosts=allowed_hosts, token=token)],
    )


def serve(
    source: SnapshotSource,
    host: str,
    port: int,
    interval: float,
    allowed_hosts: Sequence[str] = ("127.0.0.1", "localhost", "::1"),
    token: str = "",
) -> None:
    """Run the board in the foreground until SIGINT/SIGTERM."""
    import uvicorn

    config = uvicorn.Config(
        create_app(source, interval, allowed_hosts, token),
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=2,  # open SSE streams never end by themselves
    )
    uvicorn.Server(config).run()
