"""The board's web app: the page, its static files, a JSON snapshot and a Server-Sent-Events stream.

All browsers share one snapshot per interval (``CachedSnapshots``), so ten open boards cost InfluxDB the
same as one. The page is plain HTML/CSS/JS shipped as package data: no build step, no network at run time.

Bounded and tight-lipped: at most ``max_streams`` live-update streams at once (503 beyond, each open
stream costs memory for as long as the browser keeps it); error responses say what failed in words and
keep URLs, queries and tracebacks in the log; ``/healthz`` is 503 while InfluxDB does not answer.
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
from starlette.types import Receive, Scope, Send

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
            started = self._clock()
            if started - self._taken_at >= self.interval * 0.9:
                self._snapshot = await asyncio.to_thread(self.source.snapshot)
                # its age counts from when its queries began: counted from their end, a stream asking
                # once per interval got every other snapshot from the cache, a second older
                self._taken_at = started
            return self._snapshot


_SNAPSHOT_FAILED = {"error": "snapshot failed; the board's log says why"}


def create_app(
    source: SnapshotSource,
    interval: float = 1.0,
    max_streams: int = 100,
    allowed_hosts: Sequence[str] = ("127.0.0.1", "localhost", "::1"),
    token: str = "",
) -> Starlette:
    """The board for ``source``'s site; pushes a snapshot every ``interval`` seconds to ``max_streams``.

    ``allowed_hosts`` and ``token``: who may open it (``wipwatch.dashboards.board.access``).

    Raises:
        ValueError: ``max_streams`` is below 1.
    """
    from sse_starlette.sse import EventSourceResponse

    if max_streams < 1:
        raise ValueError(f"max_streams must be >= 1, got {max_streams}")
    snapshots = CachedSnapshots(source, interval)
    open_streams = {"n": 0}

    class CountedStream(EventSourceResponse):
        """Counts itself open from creation until the response ends, however it ends."""

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            try:
                await super().__call__(scope, receive, send)
            finally:
                open_streams["n"] -= 1

    async def index(_: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html")

    async def current() -> dict[str, Any] | None:
        try:
            return await snapshots.get()
        except Exception:  # a broken snapshot is the board's bug; the browser gets no traceback
            log.exception("snapshot failed")
            return None

    async def snapshot(_: Request) -> Response:
        taken = await current()
        return JSONResponse(taken) if taken is not None else JSONResponse(_SNAPSHOT_FAILED, 500)

    async def events(request: Request) -> Response:
        if open_streams["n"] >= max_streams:
            log.warning("live-update stream refused open=%d limit=%d", open_streams["n"], max_streams)
            return JSONResponse(
                {"error": f"too many live-update connections (limit {max_streams}); try again later"},
                503,
                headers={"Retry-After": "10"},
            )

        async def stream() -> AsyncIterator[dict[str, str]]:
            due = time.monotonic()
            while not await request.is_disconnected():
                taken = await current()
                if taken is None:
                    yield {"event": "failure", "data": json.dumps(_SNAPSHOT_FAILED)}
                else:
                    yield {"event": "snapshot", "data": json.dumps(taken)}
                # one update per interval, the snapshot's own time included (it adds to the live latency)
                due = max(due + interval, time.monotonic())
                await asyncio.sleep(due - time.monotonic())

        open_streams["n"] += 1
        return CountedStream(stream(), ping=15)

    async def health(_: Request) -> Response:
        if await asyncio.to_thread(source.influx_up):
            return JSONResponse({"status": "ok", "site": source.site.site})
        return JSONResponse({"status": "influxdb down", "site": source.site.site}, 503)

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
    max_streams: int = 100,
    allowed_hosts: Sequence[str] = ("127.0.0.1", "localhost", "::1"),
    token: str = "",
) -> None:
    """Run the board in the foreground until SIGINT/SIGTERM."""
    import uvicorn

    config = uvicorn.Config(
        create_app(source, interval, max_streams, allowed_hosts, token),
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=2,  # open SSE streams never end by themselves
    )
    uvicorn.Server(config).run()
