"""`wipwatch up`: WIP changes within 60 s, only loopback listeners, Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import socket
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
        up = subprocess.Popen(python_module_argv("up", "--speed", "120"), env=env, stdout=out, stderr=out)
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
