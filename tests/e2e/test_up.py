"""`wipwatch up`: live dashboards show now, WIP changes, only loopback listeners, MQTT with accounts
(``WIPWATCH_MQTT_AUTH``), Ctrl-C leaves nothing.

Live time (docs/simulators.md): the simulator warms up over the last two hours at once, then runs in real
time, so the newest point in InfluxDB is never ahead of the wall clock and a Grafana panel over now-6h
has data from the last minute.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.polling import eventually
from tests.sockets import listening, process_tree
from wipwatch.dashboards.export import build_all
from wipwatch.dashboards.influxql import expand
from wipwatch.errors import ServiceError
from wipwatch.influx import InfluxTarget, query, rows
from wipwatch.mqtt import MqttPublisher
from wipwatch.services import free_port, python_module_argv
from wipwatch.settings import DEFAULT_SITE_FILE, Settings, load_settings
from wipwatch.site import load_site
from wipwatch.views import wip_snapshot

#: How long the test watches the live stack after the first data (the brief: 60-90 s of real time).
WATCH_S = 60.0
#: Event time may trail the wall clock (processing), never lead it by more than this.
AHEAD_TOLERANCE_S = 2.0


def newest_point(settings: Settings) -> float:
    """Unix seconds of the newest point of any measurement the processors write."""
    target = InfluxTarget.from_settings(settings)
    newest = 0.0
    # one selector on one field, so InfluxQL returns the selected point's own time
    for measurement, field in (("wip", "parts"), ("queue", "growth_per_hour"), ("cost", "tied_up")):
        for row in rows(query(target, f'SELECT last("{field}") FROM "{measurement}"')):
            newest = max(newest, row["time"] / 1e6)
    return newest


def site_overview_money_rows(settings: Settings) -> list[dict[str, Any]]:
    """The site overview's money-over-time panel, run as Grafana runs it over now-6h..now."""
    site = load_site(DEFAULT_SITE_FILE)
    model = build_all(site)["wipwatch-site-overview"]
    (panel,) = [p for p in model["panels"] if p.get("type") == "timeseries"]
    sql = expand(
        panel["targets"][0]["query"],
        {"site": site.site, "line": site.lines[0].id},
        "now() - 6h",
        "now()",
        "1m",
    )
    return rows(query(InfluxTarget.from_settings(settings), sql))


pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_up_shows_changing_wip_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    ports = {"mqtt": free_port(), "kafka": free_port(), "influx": free_port()}
    env = {
        **os.environ,
        "WIPWATCH_RUN_DIR": str(tmp_path / "run"),
        "WIPWATCH_MQTT_PORT": str(ports["mqtt"]),
        "WIPWATCH_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports['kafka']}",
        "WIPWATCH_INFLUX_URL": f"http://127.0.0.1:{ports['influx']}",
        # the plant-network set-up: mosquitto with password file and ACL, each child its own account
        "WIPWATCH_MQTT_AUTH": "true",
    }
    with open(tmp_path / "up.log", "wb") as out:
        up = subprocess.Popen(python_module_argv("up"), env=env, stdout=out, stderr=subprocess.STDOUT)
        settings = load_settings(influx_url=env["WIPWATCH_INFLUX_URL"])
        tree: set[int] = set()
        try:

            def total_wip() -> int:
                assert up.poll() is None, (tmp_path / "up.log").read_text()
                try:
                    return sum(loc["wip"] for loc in wip_snapshot(settings)["locations"])
                except Exception:  # stack still starting
                    return 0

            eventually(total_wip, lambda n: n > 0, timeout=60, what="WIP above zero")

            # the warm-up filled the past two hours: the now-6h panel shows them and the last minute
            def panel_times() -> list[float]:
                money = site_overview_money_rows(settings)
                return sorted(r["time"] / 1e6 for r in money if r.get("tied_up") is not None)

            times = eventually(
                panel_times,
                lambda ts: bool(ts) and ts[-1] - ts[0] > 1.5 * 3600 and time.time() - ts[-1] < 120,
                timeout=60,
                what="the now-6h panel spanning the warmed-up hours up to the last two minutes",
            )
            assert times[-1] <= time.time() + AHEAD_TOLERANCE_S, datetime.fromtimestamp(times[-1])
            watched_until = time.monotonic() + WATCH_S
            newest_seen = 0.0
            while time.monotonic() < watched_until:
                assert up.poll() is None, (tmp_path / "up.log").read_text()
                wall = time.time()
                newest = newest_point(settings)
                assert newest <= wall + AHEAD_TOLERANCE_S, f"a point {newest - wall:.1f}s ahead of the clock"
                newest_seen = max(newest_seen, newest)
                time.sleep(1.0)
            assert time.time() - newest_seen < 60, "no point from the last minute: the live part stalled"
            snapshot = [loc["wip"] for loc in wip_snapshot(settings)["locations"]]
            eventually(
                lambda: [loc["wip"] for loc in wip_snapshot(settings)["locations"]],
                lambda now: now != snapshot,
                timeout=30,
                what="WIP changing",
            )
            tree = process_tree(up.pid)
            assert len(tree) >= 7, "up, 3 servers, ingest, processors, simulator"
            sockets = listening(tree)
            assert {ports["mqtt"], ports["kafka"], ports["influx"]} <= {p for _, p in sockets}
            assert all(address == "127.0.0.1" for address, _ in sockets), sockets
            text = (tmp_path / "up.log").read_text()
            assert f"mqtt://127.0.0.1:{ports['mqtt']}" in text
            with pytest.raises(ServiceError, match=r"[Nn]ot authori"):
                MqttPublisher("127.0.0.1", ports["mqtt"], "anonymous-intruder")
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(60)
    assert up.returncode == 0, (tmp_path / "up.log").read_text()
    still = [pid for pid in tree if Path(f"/proc/{pid}").exists()]
    assert still == [], f"left behind: {still}"
    assert "stopped every child process" in (tmp_path / "up.log").read_text()


def _up_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "WIPWATCH_RUN_DIR": str(tmp_path / "run"),
        "WIPWATCH_MQTT_PORT": str(free_port()),
        "WIPWATCH_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "WIPWATCH_INFLUX_URL": f"http://127.0.0.1:{free_port()}",
        "WIPWATCH_BOARD_PORT": str(free_port()),
    }


def _children(tmp_path: Path) -> dict[str, dict[str, int | None]]:
    try:
        data: dict[str, dict[str, int | None]] = json.loads(
            (tmp_path / "run" / "status" / "up.json").read_text()
        )
        return data
    except (OSError, ValueError):
        return {}


@pytest.mark.parametrize("victim", ["ingest", "processors"])
def test_a_killed_child_is_restarted_and_wip_keeps_updating(tmp_path: Path, victim: str) -> None:
    env = _up_env(tmp_path)
    settings = load_settings(influx_url=env["WIPWATCH_INFLUX_URL"])
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        # the live simulator (warm-up, then real time): WIP changes every few seconds on the example line
        up = subprocess.Popen(python_module_argv("up"), env=env, stdout=out, stderr=out)
        try:

            def wip() -> list[int]:
                assert up.poll() is None, log.read_text()
                try:
                    return [loc["wip"] for loc in wip_snapshot(settings)["locations"]]
                except Exception:  # stack still starting
                    return []

            eventually(wip, lambda w: sum(w) > 0, timeout=90, what="WIP above zero")
            before = _children(tmp_path)[victim]["pid"]
            assert isinstance(before, int)
            os.kill(before, signal.SIGKILL)
            after = eventually(
                lambda: _children(tmp_path).get(victim, {}),
                lambda c: c.get("restarts") == 1 and c.get("pid") not in (None, before),
                timeout=30,
                what=f"{victim} restarted",
            )
            assert Path(f"/proc/{after['pid']}").exists()
            first = wip()
            eventually(wip, lambda w: bool(w) and w != first, timeout=60, what="WIP changing after restart")
            assert all(c["restarts"] == 0 for name, c in _children(tmp_path).items() if name != victim)
            assert f"{victim} exited (code -9); restarting in 1 s" in log.read_text()
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(60)
    assert up.returncode == 0, log.read_text()


def test_up_gives_up_on_a_child_that_keeps_crashing_and_exits_non_zero(tmp_path: Path) -> None:
    env = _up_env(tmp_path)
    with socket.socket() as busy:  # the board cannot start while its port is taken: it exits at once
        busy.bind(("127.0.0.1", int(env["WIPWATCH_BOARD_PORT"])))
        busy.listen()
        result = subprocess.run(
            python_module_argv("up", "--no-simulator"), env=env, capture_output=True, text=True, timeout=200
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "board exited 6 times within 60 s" in result.stderr
    assert "stopped every child process" in result.stdout
    assert _children(tmp_path) and all(c["pid"] is None for c in _children(tmp_path).values())
