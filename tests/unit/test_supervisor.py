"""The supervisor of ``wipwatch up`` with real short-lived child processes and a hand-driven clock."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from wipwatch.cli.supervisor import ChildSpec, Supervisor, SupervisorGaveUp
from wipwatch.services import ChildProcess

pytestmark = pytest.mark.unit

CRASH = [sys.executable, "-c", "import sys; sys.exit(3)"]
SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]
FINISH = [sys.executable, "-c", "pass"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def exited(child: ChildProcess) -> None:
    deadline = time.monotonic() + 10
    while child.alive():
        assert time.monotonic() < deadline, f"{child.name} still running"
        time.sleep(0.01)


def test_a_crashed_child_is_restarted_with_back_off_and_the_others_keep_running(tmp_path: Path) -> None:
    clock = Clock()
    status = tmp_path / "status.json"
    sup = Supervisor(tmp_path, max_crashes=3, window_s=60, backoff_s=1, status_file=status, clock=clock)
    try:
        steady = sup.start(ChildSpec("steady", SLEEP))
        crashing = sup.start(ChildSpec("crashing", CRASH))
        exited(crashing)
        assert sup.poll() == [f"crashing exited (code 3); restarting in 1 s; log {crashing.log_path}"]
        assert "crashing" not in sup.children
        clock.now += 0.5
        assert sup.poll() == [], "back-off: not yet"
        clock.now += 0.5
        (note,) = sup.poll()
        second = sup.children["crashing"]
        assert note == f"crashing restarted (pid {second.pid}, restart 1)"
        assert second.pid != crashing.pid
        assert json.loads(status.read_text())["crashing"]["restarts"] == 1
        exited(second)
        assert "restarting in 2 s" in sup.poll()[0], "the back-off doubles"
        assert sup.children["steady"] is steady and steady.alive()
    finally:
        sup.stop_all()
    assert not steady.alive()


def test_it_gives_up_on_a_crash_loop_but_not_on_crashes_spread_out(tmp_path: Path) -> None:
    clock = Clock()
    sup = Supervisor(tmp_path, max_crashes=2, window_s=10, backoff_s=0.1, clock=clock)
    try:
        sup.start(ChildSpec("loop", CRASH))
        for _ in range(2):
            exited(sup.children["loop"])
            sup.poll()
            clock.now += 20  # past the window: the earlier crash no longer counts
            sup.poll()
        for _ in range(2):
            exited(sup.children["loop"])
            sup.poll()
            clock.now += 1
            sup.poll()
        exited(sup.children["loop"])
        with pytest.raises(SupervisorGaveUp, match=r"loop exited 3 times within 10 s \(last code 3\)"):
            sup.poll()
    finally:
        sup.stop_all()


def test_a_finite_child_may_finish_and_a_steady_one_may_not(tmp_path: Path) -> None:
    clock = Clock()
    sup = Supervisor(tmp_path, backoff_s=1, clock=clock)
    try:
        done = sup.start(ChildSpec("replay", FINISH, finite=True))
        quit_early = sup.start(ChildSpec("board", FINISH))
        exited(done)
        exited(quit_early)
        assert sorted(sup.poll()) == [
            f"board exited (code 0); restarting in 1 s; log {quit_early.log_path}",
            "replay finished",
        ]
        clock.now += 1
        assert sup.poll()[0].startswith("board restarted")
    finally:
        sup.stop_all()


def test_the_command_is_built_again_at_every_restart(tmp_path: Path) -> None:
    clock = Clock()
    built: list[int] = []

    def argv() -> list[str]:
        built.append(len(built))
        return CRASH

    sup = Supervisor(tmp_path, backoff_s=1, clock=clock)
    try:
        sup.start(ChildSpec("sim", argv))
        exited(sup.children["sim"])
        sup.poll()
        clock.now += 1
        sup.poll()
        assert built == [0, 1]
    finally:
        sup.stop_all()


def test_bad_arguments_name_the_parameter(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_crashes"):
        Supervisor(tmp_path, max_crashes=0)
    with pytest.raises(ValueError, match="window_s"):
        Supervisor(tmp_path, window_s=0)
