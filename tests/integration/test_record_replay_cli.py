"""``wipwatch record`` and ``wipwatch replay`` as a user runs them, against a real mosquitto."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.polling import eventually
from wipwatch.mqtt import MqttPublisher
from wipwatch.recorder.formats import Message, RecordingWriter, read_recording
from wipwatch.recorder.record import Recorder
from wipwatch.services import ChildProcess, NativeStack, python_module_argv, spawn
from wipwatch.status import read_status

pytestmark = pytest.mark.integration

N = 500


def _messages(n: int = N) -> list[tuple[str, bytes]]:
    return [(f"wipwatch/p/l{i % 3}/s{i % 7}/in", f'{{"n":{i},"x":"é"}}'.encode()) for i in range(n)]


def _publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    publisher = MqttPublisher("127.0.0.1", port, "test-publisher")
    for topic, payload in messages:
        publisher.publish(topic, payload)
    publisher.close()


def _record_cli(stack: NativeStack, out: Path, logs: Path, *extra: str) -> ChildProcess:
    argv = python_module_argv("record", "--out", str(out), "--mqtt-port", str(stack.mqtt_port), *extra)
    run_dir = logs.parent / "run"
    child = spawn("record", argv, logs, {"COLUMNS": "200", "WIPWATCH_RUN_DIR": str(run_dir)})

    def subscribed() -> bool:
        status = read_status(run_dir, "record-wipwatch-recorder") or {}
        return bool(status.get("pid") == child.pid and status.get("subscribed")) or not child.alive()

    eventually(subscribed, bool, timeout=30, what="recorder subscribed (its status file)")
    assert child.alive(), child.log_tail()
    return child


def test_recording_killed_with_sigkill_keeps_everything_flushed(stack: NativeStack, tmp_path: Path) -> None:
    out = tmp_path / "shift.gz"
    child = _record_cli(stack, out, tmp_path / "logs")
    try:
        sent = _messages()
        _publish(stack.mqtt_port, sent)

        def readable() -> list[tuple[str, bytes]]:
            return [(m.topic, m.payload) for m in read_recording(out)]

        # the recorder flushes every second: everything becomes readable without a clean close
        eventually(readable, lambda got: got == sent, timeout=30, what=f"{N} messages readable")
    finally:
        child.kill()
    reader = read_recording(out)
    assert [(m.topic, m.payload) for m in reader] == sent
    assert [s.line for s in reader.skipped] == [N + 2], "only the missing gzip end is reported"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_ctrl_c_closes_the_recording_cleanly(stack: NativeStack, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"shift.{fmt}"
    child = _record_cli(stack, out, tmp_path / "logs", "--format", fmt, "--topics", "wipwatch/#")
    sent = _messages()
    try:
        _publish(stack.mqtt_port, sent)
        eventually(lambda: len(list(read_recording(out))), lambda n: n == N, timeout=30, what="recorded")
    finally:
        os.kill(child.pid, signal.SIGINT)
        child.process.wait(30)
    assert child.process.returncode == 0, child.log_tail()
    assert f"recorded {N} messages" in child.log_tail()
    final = read_status(tmp_path / "run", "record-wipwatch-recorder")
    assert final is not None and (final["received"], final["written"]) == (N, N), final
    reader = read_recording(out)
    assert [(m.topic, m.payload) for m in reader] == sent
    assert reader.format == fmt
    assert reader.skipped == []


@contextmanager
def _recording(stack: NativeStack, path: Path) -> Iterator[Recorder]:
    recorder = Recorder(RecordingWriter(path), "127.0.0.1", stack.mqtt_port, client_id="test-capture")
    recorder.start()
    recorder.wait_subscribed()
    thread = threading.Thread(target=recorder.run)
    thread.start()
    try:
        yield recorder
    finally:
        recorder.stop()
        thread.join(30)
        recorder.close()


def test_replay_cli_publishes_a_mosquitto_sub_capture_unchanged(stack: NativeStack, tmp_path: Path) -> None:
    # a capture made by the real mosquitto_sub -F %j ...
    capture = tmp_path / "capture.jsonl"
    sent = _messages()
    argv = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(stack.mqtt_port), "-t", "wipwatch/#", "-q", "1"]
    with open(capture, "wb") as out:
        sub = subprocess.Popen(
            [*argv, "-F", "%j", "-C", str(N)],
            stdout=out,
            stderr=subprocess.PIPE,
        )
        try:
            # mosquitto_sub has no "subscribed" signal: publish until it has seen the first probe message
            eventually(
                lambda: (
                    _publish(stack.mqtt_port, [("wipwatch/probe/x/y/in", b"probe")]),
                    capture.stat().st_size,
                )[1],
                lambda size: size > 0,
                timeout=30,
                what="mosquitto_sub subscribed",
            )
            _publish(stack.mqtt_port, sent)
            sub.wait(30)
        finally:
            if sub.poll() is None:
                sub.kill()
    reader = read_recording(capture)
    captured = [(m.topic, m.payload) for m in reader if m.topic != "wipwatch/probe/x/y/in"]
    assert reader.format == "jsonl"
    assert captured == sent[: len(captured)]
    assert len(captured) >= N - 10  # -C N counts the probes too

    # ... replayed by `wipwatch replay --speed max` arrives unchanged and in order
    with _recording(stack, tmp_path / "again.gz") as recorder:
        done = subprocess.run(
            python_module_argv("replay", str(capture), "--speed", "max", "--mqtt-port", str(stack.mqtt_port)),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        total = sum(1 for _ in read_recording(capture))
        eventually(lambda: recorder.received, lambda n: n == total, timeout=30, what="replayed messages")
    assert f"replayed {total} messages (jsonl)" in done.stderr
    again = [(m.topic, m.payload) for m in read_recording(tmp_path / "again.gz")]
    assert [x for x in again if x[0] != "wipwatch/probe/x/y/in"] == captured


def test_duration_stops_the_recording_by_itself(stack: NativeStack, tmp_path: Path) -> None:
    out = tmp_path / "short.gz"
    child = _record_cli(stack, out, tmp_path / "logs", "--duration", "5s")
    try:
        _publish(stack.mqtt_port, _messages(50))
        child.process.wait(30)
    finally:
        child.stop()
    assert child.process.returncode == 0, child.log_tail()
    reader = read_recording(out)
    assert len(list(reader)) == 50
    assert reader.skipped == []


def test_replay_of_a_damaged_file_publishes_what_it_can_lists_the_rest_and_exits_1(
    stack: NativeStack, tmp_path: Path
) -> None:
    path = tmp_path / "damaged.jsonl"
    good = [(f"wipwatch/p/l/s{i}/in", f'{{"n":{i}}}'.encode()) for i in range(5)]
    with RecordingWriter(path, "jsonl") as writer:
        for i, (topic, payload) in enumerate(good):
            writer.write(Message(topic, payload, 1, False, 1_764_050_400.0 + i))
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(2, '{"tst": "2025-11-25T06:00:01Z", "topic": \n')  # line 3: not JSON
    path.write_text("".join(lines))
    argv = python_module_argv("replay", str(path), "--speed", "max", "--mqtt-port", str(stack.mqtt_port))
    env = {**os.environ, "COLUMNS": "500"}
    with _recording(stack, tmp_path / "strict.gz") as recorder:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
        eventually(lambda: recorder.received, lambda n: n == len(good), timeout=30, what="replayed messages")
    assert done.returncode == 1, done.stderr
    assert "skipped " + str(path) + ": line 3: not a valid record" in done.stderr
    assert "replayed 5 messages (jsonl)" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"wipwatch: error: {path}: 1 unreadable line")
    assert "Traceback" not in done.stderr

    tolerant = subprocess.run(
        [*argv, "--tolerate-skipped"], capture_output=True, text=True, timeout=120, env=env
    )
    assert tolerant.returncode == 0, tolerant.stderr
    assert "line 3: not a valid record" in tolerant.stderr, "tolerated, still listed"
