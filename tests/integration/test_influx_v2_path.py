"""The InfluxDB 2.x path, against a stand-in of its documented HTTP API (no 2.x server exists here).

It checks what wipwatch controls: version detection from /ping, and that influxdb-client is driven with the
bucket, org, token and microsecond precision, with the line protocol body unchanged.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import pytest

from wipwatch.influx import InfluxTarget, InfluxWriter, detect_version
from wipwatch.settings import load_settings

pytestmark = pytest.mark.integration


class _Influx2StandIn(BaseHTTPRequestHandler):
    writes: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, *_args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/ping":
            self.send_response(204)
            self.send_header("X-Influxdb-Version", "v2.7.11")
            self.end_headers()

    def do_POST(self) -> None:
        url = urlparse(self.path)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.writes.append(
            {
                "path": url.path,
                "query": parse_qs(url.query),
                "auth": self.headers["Authorization"],
                "body": body,
            }
        )
        self.send_response(204)
        self.end_headers()


@pytest.fixture
def influx2() -> Iterator[str]:
    _Influx2StandIn.writes = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Influx2StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_v2_detected_and_written_with_bucket_token_and_microseconds(influx2: str) -> None:
    assert detect_version(influx2) == "2"
    settings = load_settings(influx_url=influx2, influx_token="tok", influx_bucket="plant", influx_org="acme")
    target = InfluxTarget.from_settings(settings)
    assert (target.version, target.query_database) == ("2", "plant")
    writer = InfluxWriter(target, batch_size=10, flush_seconds=0.05)
    writer.write([f"wip,site=s parts={i}i {1_000 + i}" for i in range(25)])
    assert writer.flush(10)
    writer.close()
    writes = _Influx2StandIn.writes
    assert {w["path"] for w in writes} == {"/api/v2/write"}
    assert all(w["auth"] == "Token tok" for w in writes)
    assert all(w["query"]["bucket"] == ["plant"] and w["query"]["org"] == ["acme"] for w in writes)
    assert all(w["query"]["precision"] == ["us"] for w in writes)
    lines = b"".join(w["body"] for w in writes).decode().split("\n")
    assert [ln for ln in lines if ln] == [f"wip,site=s parts={i}i {1_000 + i}" for i in range(25)]
