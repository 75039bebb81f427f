"""`wipwatch up`: WIP changes within 60 s, only loopback listeners, Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.polling import eventually
from tests.sockets import listening, process_tree
from wipwatch.cli import wip_snapshot
from wipwatch.services import free_port, python_module_argv
from wipwatch.settings import load_settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_up_shows_changing_wip_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    ports = {"mqtt": free_port(), "kafka": free_port(), "influx": free_port()}
    env = {
        **os.environ,
        "WIPWATCH_RUN_DIR": str(tmp_path / "run"),
        "WIPWATCH_MQTT_PORT": str(ports["mqtt"]),
        "WIPWATCH_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports['kafka']}",
        "WIPWATCH_INFLUX_URL": f"http://127.0.0.1:{ports['influx']}",
    }
    with open(tmp_path / "up.log", "wb") as out:
        up = subprocess.Popen(
            python_module_argv("up", "--speed", "120"), env=env, stdout=out, stderr=subprocess.STDOUT
        )
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
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(60)
    assert up.returncode == 0, (tmp_path / "up.log").read_text()
    still = [pid for pid in tree if Path(f"/proc/{pid}").exists()]
    assert still == [], f"left behind: {still}"
    assert "stopped every child process" in (tmp_path / "up.log").read_text()
