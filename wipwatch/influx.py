"""InfluxDB access for every service: line-protocol building, a batching writer that never drops, InfluxQL.

Locally wipwatch talks to Debian's InfluxDB 1.6.7 through the v1 ``/write`` endpoint (its ``/api/v2``
endpoints answer 404 before 1.8); InfluxDB 2.x is written through ``influxdb-client``. The version is read
from ``/ping`` unless a setting fixes it. Queries are InfluxQL through ``/query``, which 1.x serves
natively, 2.x through DBRP mappings and 3.x too.

Line protocol is built by hand on purpose: INFRA.md measured ~250k points/s for prebuilt lines against
~70k/s when building ``influxdb_client.Point`` objects.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import urllib3

from wipwatch.errors import ServiceError
from wipwatch.settings import Settings

log = logging.getLogger(__name__)

_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\\": "\\\\"})
_TAG_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\=", "\n": r"\n", "\\": "\\\\"})
_STRING_FIELD_ESCAPES = str.maketrans({'"': r"\"", "\\": "\\\\", "\n": r"\n"})


def escape_measurement(name: str) -> str:
    return name.translate(_MEASUREMENT_ESCAPES)


def escape_tag(value: str) -> str:
    return value.translate(_TAG_ESCAPES)


def field_value(value: Any) -> str:
    """One field value as line protocol writes it: ``1.5``, ``3i``, ``true``, ``"text"``."""
    kind = type(value)
    if kind is float:  # most fields: checked first (the processors' hottest formatting path)
        return repr(value)
    if kind is int:
        return f"{value}i"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return '"' + str(value).translate(_STRING_FIELD_ESCAPES) + '"'


@functools.lru_cache(maxsize=65536)
def _series_key(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    tag_part = "".join(f",{escape_tag(k)}={escape_tag(v)}" for k, v in tags if v != "")
    return escape_measurement(measurement) + tag_part


@functools.lru_cache(maxsize=4096)
def _field_key(name: str) -> str:
    return escape_tag(name)


def series_key(measurement: str, tags: Mapping[str, str]) -> str:
    """The escaped ``measurement,tag=value,...`` part of a line (tags sorted, empty values left out)."""
    return _series_key(measurement, tuple(sorted(tags.items())))


def line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, Any], time_us: int) -> str:
    """One line of line protocol with microsecond timestamp (write with precision ``u``)."""
    # the processors write the same few hundred series once a minute of event time: escaping their keys
    # once (cached) halved the cost of a point (bench/processors.py)
    return keyed_line(series_key(measurement, tags), fields, time_us)


def keyed_line(series: str, fields: Mapping[str, Any], time_us: int) -> str:
    """``line`` for a series key made once by ``series_key`` (callers that write the same series often)."""
    field_part = ",".join(f"{_field_key(k)}={field_value(v)}" for k, v in fields.items())
    return f"{series} {field_part} {time_us}"


@dataclass(frozen=True)
class InfluxTarget:
    """Where and how to talk to one InfluxDB."""

    url: str
    version: str  # "1" or "2"
    database: str
    bucket: str
    org: str
    token: str
    #: A v1-style account instead of a token (1.x users, 2.x v1-compatible authorizations).
    username: str = ""
    password: str = ""

    @classmethod
    def from_settings(cls, settings: Settings, detect: bool = True) -> InfluxTarget:
        version: str = settings.influx_version
        if version == "auto":
            version = detect_version(settings.influx_url) if detect else "1"
        return cls(
            url=settings.influx_url.rstrip("/"),
            version=version,
            database=settings.influx_db,
            bucket=settings.influx_bucket,
            org=settings.influx_org,
            token=settings.influx_token.get_secret_value(),
            username=settings.influx_username,
            password=settings.influx_password.get_secret_value(),
        )

    @property
    def query_database(self) -> str:
        """The database name InfluxQL uses: the database on 1.x, the DBRP-mapped bucket on 2.x."""
        return self.database if self.version == "1" else self.bucket

    def headers(self) -> dict[str, str]:
        if self.username:
            basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return {"Authorization": f"Basic {basic}"}
        return {"Authorization": f"Token {self.token}"} if self.token else {}


_http = urllib3.PoolManager(num_pools=4, maxsize=4, retries=False)


def detect_version(url: str, timeout: float = 5.0) -> str:
    """ "1" or "2" from the ``X-Influxdb-Version`` header of ``/ping``.

    Raises:
        ServiceError: InfluxDB does not answer at ``url``.
    """
    try:
        response = _http.request("GET", f"{url.rstrip('/')}/ping", timeout=timeout)
    except urllib3.exceptions.HTTPError as exc:
        raise ServiceError(f"InfluxDB at {url} does not answer ({exc}); is it running?") from None
    version = response.headers.get("X-Influxdb-Version", "")
    return "1" if version.lstrip("v").startswith("1") else "2"


def query(target: InfluxTarget, influxql: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Run InfluxQL; return the series of the first statement as ``{name, tags, columns, values}`` dicts.

    Raises:
        ServiceError: InfluxDB cannot be reached or rejects the query.
    """
    params = urllib.parse.urlencode({"db": target.query_database, "q": influxql, "epoch": "u"})
    try:
        response = _http.request(
            "POST",
            f"{target.url}/query?{params}",
            headers=target.headers(),
            timeout=timeout,
        )
    except urllib3.exceptions.HTTPError as exc:
        raise ServiceError(f"InfluxDB at {target.url} does not answer ({exc})") from None
    try:
        body = json.loads(response.data or b"{}")
    except ValueError:
        body = {}
    if response.status != 200 or "error" in body:
        reason = body.get("error") or response.data[:200].decode(errors="replace")
        raise ServiceError(f"InfluxDB rejected query {influxql!r}: {reason}")
    results = body.get("results") or [{}]
    if "error" in results[0]:
        raise ServiceError(f"InfluxDB rejected query {influxql!r}: {results[0]['error']}")
    return list(results[0].get("series") or [])


def rows(series: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flatten query series into one dict per row, tags merged in."""
    out = []
    for s in series:
        tags = s.get("tags") or {}
        for values in s.get("values", []):
            out.append({**tags, **dict(zip(s["columns"], values, strict=True))})
    return out


class _V1Sender:
    def __init__(self, target: InfluxTarget) -> None:
        params = urllib.parse.urlencode({"db": target.database, "precision": "u"})
        self._url = f"{target.url}/write?{params}"
        self._headers = {**target.headers(), "Content-Type": "text/plain; charset=utf-8"}

    def send(self, body: bytes) -> None:
        response = _http.request("POST", self._url, body=body, headers=self._headers, timeout=30)
        if response.status == 400:
            raise ValueError(response.data[:300].decode(errors="replace"))
        if response.status != 204:
            raise ConnectionError(f"HTTP {response.status}: {response.data[:200]!r}")

    def close(self) -> None:
        pass


class _V2Sender:
    def __init__(self, target: InfluxTarget) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.domain.write_precision import WritePrecision

        self._client = InfluxDBClient(url=target.url, token=target.token, org=target.org, timeout=30_000)
        self._api = self._client.write_api(write_options=SYNCHRONOUS)
        self._bucket = target.bucket
        self._precision = WritePrecision.US

    def send(self, body: bytes) -> None:
        from influxdb_client.rest import ApiException

        try:
            self._api.write(bucket=self._bucket, record=body, write_precision=self._precision)  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status == 400:
                raise ValueError(str(exc.body)[:300]) from None
            raise ConnectionError(f"HTTP {exc.status}") from None

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


class InfluxWriter:
    """Batches lines and writes them from a background thread, retrying until InfluxDB takes them.

    An outage delays points, never loses them: batches wait in memory (bounded by ``max_pending_lines``;
    ``write`` blocks past that, which back-pressures the caller). Points are idempotent in InfluxDB (same
    series and timestamp overwrite), so a batch retried after an ambiguous failure is harmless. A batch
    InfluxDB rejects as malformed (HTTP 400) is logged with its first line and dropped: retrying cannot help.
    """

    def __init__(
        self,
        target: InfluxTarget,
        batch_size: int = 5000,
        flush_seconds: float = 0.5,
        max_pending_lines: int = 2_000_000,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.target = target
        self._sender: _V1Sender | _V2Sender = (
            _V1Sender(target) if target.version == "1" else _V2Sender(target)
        )
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._max_pending = max_pending_lines
        self._pending: deque[str] = deque()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._flushing = 0  # callers waiting in flush(): send what is there without waiting to fill a batch
        self._closing = False
        self.written = 0
        self.rejected = 0
        self.retries = 0
        self._thread = threading.Thread(target=self._run, name="influx-writer", daemon=True)
        self._thread.start()

    def write(self, lines: Iterable[str]) -> None:
        with self._cond:
            self._pending.extend(lines)
            while len(self._pending) > self._max_pending and not self._closing:
                self._cond.wait(0.5)
            if len(self._pending) >= self._batch_size:
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything written so far is in InfluxDB; False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._pending or self._in_flight:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(min(0.2, remaining) if remaining is not None else 0.2)
            finally:
                self._flushing -= 1
        return True

    def close(self, timeout: float | None = 30.0) -> None:
        self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(5)
        self._sender.close()

    @property
    def pending(self) -> int:
        return len(self._pending) + self._in_flight

    def _take_batch(self) -> list[str] | None:
        with self._cond:
            while not self._pending and not self._closing:
                self._cond.wait(self._flush_seconds)
            if not self._pending:
                return None
            # wait to fill the batch, unless someone waits in flush() (it also wakes this wait)
            if len(self._pending) < self._batch_size and not self._closing and not self._flushing:
                self._cond.wait(self._flush_seconds)
            n = min(self._batch_size, len(self._pending))
            batch = [self._pending.popleft() for _ in range(n)]
            self._in_flight = n
            self._cond.notify_all()
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            self._send_with_retry(batch)
            with self._cond:
                self._in_flight = 0
                self._cond.notify_all()

    def _send_with_retry(self, batch: list[str]) -> None:
        body = ("\n".join(batch) + "\n").encode()
        delay = 0.2
        while True:
            try:
                self._sender.send(body)
                self.written += len(batch)
                return
            except ValueError as exc:
                self.rejected += len(batch)
                log.error("influx rejected batch lines=%d first=%r reason=%s", len(batch), batch[0], exc)
                return
            except (ConnectionError, urllib3.exceptions.HTTPError, OSError) as exc:
                self.retries += 1
                log.warning("influx write failed lines=%d retry_in=%.1fs reason=%s", len(batch), delay, exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


def last_values(target: InfluxTarget) -> dict[str, dict[tuple[tuple[str, str], ...], dict[str, Any]]]:
    """The last value of every field of every series in the database, for comparing whole databases.

    Returns ``{measurement: {sorted tag pairs: {field: last value}}}`` from ``SHOW MEASUREMENTS`` and
    ``SELECT last(*) ... GROUP BY *``; each field's last value is chosen on its own (InfluxQL semantics).
    """
    names = [values[0] for s in query(target, "SHOW MEASUREMENTS") for values in s.get("values", [])]
    state: dict[str, dict[tuple[tuple[str, str], ...], dict[str, Any]]] = {}
    for name in names:
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        per_series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
        for s in query(target, f'SELECT last(*) FROM "{quoted}" GROUP BY *'):
            tags = tuple(sorted((s.get("tags") or {}).items()))
            row = dict(zip(s["columns"], s["values"][-1], strict=True))
            per_series[tags] = {
                k.removeprefix("last_"): v for k, v in row.items() if k != "time" and v is not None
            }
        state[name] = per_series
    return state
