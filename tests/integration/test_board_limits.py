"""The board bounded and tight-lipped: a cap on live-update streams, no internals in errors, honest health.

A real ``wipwatch board`` process against a real influxd (no Kafka or MQTT needed); influxd is stopped
in the middle to see what the board says while InfluxDB is down.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_SITE
from tests.polling import eventually
from wipwatch.services import ChildProcess, free_port, port_in_use, python_module_argv, spawn, start_influxdb

pytestmark = [pytest.mark.integration]

MAX_STREAMS = 3


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[tuple[ChildProcess, int]]:
    port = free_port()
    child = start_influxdb(tmp_path / "influx", port, "wipwatch")
    try:
        yield child, port
    finally:
        child.stop()


@pytest.fixture
def board(tmp_path: Path, influx: tuple[ChildProcess, int]) -> Iterator[int]:
    port = free_port()
    env = {
        "WIPWATCH_SITE_FILE": str(EXAMPLE_SITE),
        "WIPWATCH_INFLUX_URL": f"http://127.0.0.1:{influx[1]}",
        "WIPWATCH_BOARD_MAX_STREAMS": str(MAX_STREAMS),
        "WIPWATCH_BOARD_INTERVAL": "0.2",
    }
    child = spawn("board", python_module_argv("board", "--port", str(port)), tmp_path / "logs", env)
    try:
        eventually(lambda: port_in_use(port), bool, timeout=30, what="board listening")
        yield port
        assert child.alive(), child.log_tail()
    finally:
        child.stop()


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def open_stream(port: int) -> tuple[socket.socket, int, bytes]:
    """An SSE connection: the socket (kept open), the status and what arrived first."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    # the board answers only its own host names (dashboards/board/access.py)
    request = f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    status = int(head.split(b" ", 2)[1])
    return sock, status, head


def test_live_update_streams_are_capped_and_a_closed_one_frees_its_place(board: int) -> None:
    streams = [open_stream(board) for _ in range(MAX_STREAMS)]
    try:
        assert [status for _, status, _ in streams] == [200] * MAX_STREAMS
        extra, status, head = open_stream(board)
        body = extra.recv(4096)
        extra.close()
        assert status == 503
        assert b"too many live-update connections (limit 3)" in head + body
        streams.pop()[0].close()

        def reopened() -> int:
            sock, code, _ = open_stream(board)
            if code == 200:
                streams.append((sock, code, b""))
            else:
                sock.close()
            return code

        eventually(reopened, lambda code: code == 200, timeout=10, what="a place freed by a closed stream")
        assert get(board, "/healthz")[0] == 200, "the board still answers everything else"
    finally:
        for sock, _, _ in streams:
            sock.close()


def test_with_influxdb_down_health_is_503_and_errors_name_no_internals(
    board: int, influx: tuple[ChildProcess, int]
) -> None:
    status, body = get(board, "/healthz")
    assert (status, json.loads(body)["status"]) == (200, "ok")
    influx[0].stop()
    status, body = get(board, "/healthz")
    assert (status, json.loads(body)["status"]) == (503, "influxdb down")
    status, body = eventually(
        lambda: get(board, "/api/snapshot"),
        lambda r: json.loads(r[1]).get("influx_error") is not None,
        timeout=10,
        what="snapshot reporting the outage",
    )
    assert status == 200
    assert json.loads(body)["influx_error"] == "InfluxDB unreachable or refused a query"
    for leak in (f":{influx[1]}", "127.0.0.1", "http://", "Error(", "Traceback", "SELECT"):
        assert leak not in body, f"{leak!r} in {body[:300]}"
