"""The native servers (mosquitto, Kafka, InfluxDB) on loopback: binding, clear port errors, stop by PID, and
the InfluxDB writer across an outage."""

import os
import urllib.request
from pathlib import Path

import pytest

from tests.sockets import listening
from wipwatch.errors import ServiceError
from wipwatch.influx import InfluxTarget, InfluxWriter, line, query, rows
from wipwatch.services import NativeStack, Ports, port_in_use
from wipwatch.settings import load_settings

pytestmark = pytest.mark.integration


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it holds no resources and its parent reaps it
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"


def test_stack_binds_loopback_only_and_stops_by_pid(tmp_path: Path) -> None:
    stack = NativeStack(tmp_path, Ports.free())
    with stack.running():
        pids = {c.pid for c in stack.children.values()}
        sockets = listening(pids)
        ports = {port for _, port in sockets}
        assert {stack.ports.mqtt, stack.ports.kafka, stack.ports.influx} <= ports
        assert all(address == "127.0.0.1" for address, _ in sockets), sockets
        with urllib.request.urlopen(f"{stack.influx_url}/ping") as response:
            assert response.headers["X-Influxdb-Version"].startswith("1.")
    assert not any(_pid_alive(pid) for pid in pids)
    assert not any(port_in_use(p) for p in (stack.ports.mqtt, stack.ports.kafka, stack.ports.influx))


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    first = NativeStack(tmp_path / "a", Ports.free())
    with first.running():
        clash = NativeStack(tmp_path / "b", Ports(first.ports.mqtt, first.ports.kafka, first.ports.influx))
        with pytest.raises(ServiceError, match=f"port {first.ports.mqtt} on 127.0.0.1 is in use"):
            clash.start()
        assert clash.children == {}


@pytest.mark.slow
def test_influx_writer_survives_an_outage_without_losing_points(stack: NativeStack) -> None:
    settings = load_settings(influx_url=stack.influx_url)
    target = InfluxTarget.from_settings(settings)
    assert target.version == "1"
    writer = InfluxWriter(target, batch_size=100, flush_seconds=0.05)
    t0 = 1_795_000_000_000_000
    points = [line("probe", {"site": "s", "location": f"b {i % 3}"}, {"n": i}, t0 + i) for i in range(500)]
    writer.write(points[:200])
    assert writer.flush(30)
    stack.children["influxdb"].stop()
    writer.write(points[200:])
    assert not writer.flush(1.5), "points cannot be written while influxd is down"
    assert writer.pending > 0
    stack.restart("influxdb")
    assert writer.flush(60)
    writer.close()
    assert writer.retries > 0
    counted = rows(query(target, 'SELECT count("n") FROM "probe" GROUP BY "location"'))
    assert sorted((r["location"], r["count"]) for r in counted) == [("b 0", 167), ("b 1", 167), ("b 2", 166)]
