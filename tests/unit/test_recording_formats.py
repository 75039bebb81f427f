"""Recording formats: round trips, the foreign formats as their tools write them, and damaged files."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wipwatch.errors import RecordingError
from wipwatch.recorder.formats import Message, RecordingWriter, parse_mosquitto_time, read_recording

pytestmark = pytest.mark.unit

T0 = 1_764_050_400.25  # 2025-11-25T06:00:00.25Z

MESSAGES = [
    Message("wipwatch/p/l1/cut/in", b'{"v":1,"id":"a","n":"caf\xc3\xa9, \\"x\\""}', 1, False, T0),
    Message("wipwatch/p/l1/cut/out", b"plain, text\nwith newline", 0, True, T0 + 1.5),
    Message("wipwatch/p/l1/b-cut/in", b"", 2, False, T0 + 2.0),
]


def _write(path: Path, fmt: str, messages: list[Message]) -> Path:
    with RecordingWriter(path, fmt) as writer:
        for message in messages:
            writer.write(message)
    return path


@pytest.mark.parametrize("fmt", ["native", "csv", "jsonl"])
def test_round_trip_keeps_topic_payload_qos_retain_and_time(tmp_path: Path, fmt: str) -> None:
    reader = read_recording(_write(tmp_path / "rec", fmt, MESSAGES))
    got = list(reader)
    assert reader.format == fmt
    assert reader.skipped == []
    assert [(m.topic, m.payload, m.qos, m.retain) for m in got] == [
        (m.topic, m.payload, m.qos, m.retain) for m in MESSAGES
    ]
    assert [m.time for m in got] == pytest.approx([T0, T0 + 1.5, T0 + 2.0], abs=1e-6)


def test_native_is_gzip_and_keeps_binary_payloads(tmp_path: Path) -> None:
    binary = Message("wipwatch/p/l1/cut/in", b"\xff\x00\xfe", 1, False, T0)
    path = _write(tmp_path / "rec.gz", "native", [binary])
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert list(read_recording(path)) == [binary]


def test_reads_mqtt_recorder_csv_as_that_tool_writes_it(tmp_path: Path) -> None:
    # mqtt-recorder 1.4: csv.writer rows [topic, payload, qos, retain, time.time(), delta], no header
    path = tmp_path / "shift.csv"
    path.write_text(
        'wipwatch/p/l1/cut/in,"{""v"":1,""id"":""a""}",1,False,1764050400.5,0.0\n'
        "wipwatch/p/l1/cut/out,hello,0,True,1764050401.75,1.25\n"
    )
    got = list(read_recording(path))
    assert got == [
        Message("wipwatch/p/l1/cut/in", b'{"v":1,"id":"a"}', 1, False, 1764050400.5),
        Message("wipwatch/p/l1/cut/out", b"hello", 0, True, 1764050401.75),
    ]


def test_reads_mosquitto_sub_j_and_capital_j(tmp_path: Path) -> None:
    path = tmp_path / "sub.jsonl"
    lines = [
        {"tst": "2025-11-25T06:00:00.250000Z+0000", "topic": "a/b", "qos": 1, "retain": 0, "payload": "x y"},
        # %J embeds a JSON payload unquoted; a +0100 offset is one hour earlier in UTC
        {
            "tst": "2025-11-25T07:00:01.000000+0100",
            "topic": "a/c",
            "qos": 0,
            "retain": 1,
            "payload": {"k": 2},
        },
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    reader = read_recording(path)
    got = list(reader)
    assert reader.format == "jsonl"
    assert got == [
        Message("a/b", b"x y", 1, False, T0),
        Message("a/c", b'{"k":2}', 0, True, T0 + 0.75),
    ]


def test_mosquitto_time_parsing() -> None:
    assert parse_mosquitto_time("2025-11-25T06:00:00.250000Z+0000") == T0
    assert parse_mosquitto_time("2025-11-25T06:00:00.250000+0000") == T0
    assert parse_mosquitto_time("2025-11-25T07:00:00.25+01:00") == T0
    # whole seconds: what Python's isoformat() writes when the microseconds are 0 (the old dry run did)
    assert parse_mosquitto_time("2025-11-25T06:00:00+00:00") == T0 - 0.25
    assert parse_mosquitto_time("2025-11-25T06:00:00Z+0000") == T0 - 0.25
    assert parse_mosquitto_time("2025-11-25T06:00:00Z") == T0 - 0.25


@pytest.mark.parametrize("tst", ["2025-11-25T06:00:00", "noon", 17, None])
def test_mosquitto_time_without_offset_or_not_a_time_is_refused(tst: object) -> None:
    with pytest.raises(ValueError, match="tst"):
        parse_mosquitto_time(tst)


@pytest.mark.parametrize("fmt", ["native", "csv", "jsonl"])
def test_whole_second_times_are_read_back(tmp_path: Path, fmt: str) -> None:
    messages = [Message("a/b", b"x", 1, False, T0 - 0.25 + i) for i in range(3)]
    reader = read_recording(_write(tmp_path / "rec", fmt, messages))
    assert list(reader) == messages
    assert reader.skipped == []


def test_binary_payloads_survive_jsonl_and_are_counted_as_lossy_in_csv(tmp_path: Path) -> None:
    binary = [Message("a/b", b"\xff\xfe\x00", 1, False, T0)]
    assert list(read_recording(_write(tmp_path / "rec.jsonl", "jsonl", binary))) == binary
    with RecordingWriter(tmp_path / "rec.csv", "csv") as writer:
        writer.write(binary[0])
        writer.write(MESSAGES[0])
    assert writer.lossy == 1


def test_reads_the_old_dry_run_format_without_times(tmp_path: Path) -> None:
    path = tmp_path / "dry.jsonl"
    path.write_text('{"topic": "wipwatch/p/l1/cut/in", "qos": 1, "payload": "{\\"v\\":1}"}\n')
    reader = read_recording(path)
    assert list(reader) == [Message("wipwatch/p/l1/cut/in", b'{"v":1}', 1, False, None)]
    assert reader.format == "dry-run"


def test_empty_file_is_an_empty_recording(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert list(read_recording(path)) == []


# ---------------------------------------------------------------- damaged recordings


def _many(n: int) -> list[Message]:
    return [Message(f"wipwatch/p/l1/s{i}/in", f'{{"n":{i}}}'.encode(), 1, False, T0 + i) for i in range(n)]


def test_recording_killed_before_close_is_readable_up_to_the_last_flush(tmp_path: Path) -> None:
    writer = RecordingWriter(tmp_path / "rec", "native")
    for message in _many(50):
        writer.write(message)
    writer.flush()  # what the recorder does every second; no close(): as if killed
    reader = read_recording(tmp_path / "rec")
    got = list(reader)
    assert [m.payload for m in got] == [f'{{"n":{i}}}'.encode() for i in range(50)]
    assert len(reader.skipped) == 1
    assert reader.skipped[0].line == 52  # header + 50 messages read; the missing gzip trailer comes next
    assert "compressed stream ends early" in reader.skipped[0].reason
    writer.close()


def test_gzip_cut_mid_stream_yields_the_intact_prefix(tmp_path: Path) -> None:
    path = _write(tmp_path / "rec", "native", _many(2000))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    reader = read_recording(path)
    got = list(reader)
    assert 0 < len(got) < 2000
    assert [m.payload for m in got] == [f'{{"n":{i}}}'.encode() for i in range(len(got))]
    reasons = [s.reason for s in reader.skipped]
    assert any("compressed stream ends early" in r for r in reasons), reasons


def test_corrupt_gzip_bytes_are_reported_not_raised(tmp_path: Path) -> None:
    path = _write(tmp_path / "rec", "native", _many(2000))
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64
    path.write_bytes(bytes(data))
    reader = read_recording(path)
    got = list(reader)
    assert 0 < len(got) < 2000
    assert reader.skipped, "a corrupt block must be reported"


def test_bad_json_lines_and_a_line_cut_at_the_end_are_skipped_with_line_numbers(tmp_path: Path) -> None:
    good = {"tst": "2025-11-25T06:00:00.250000Z+0000", "topic": "a/b", "qos": 1, "retain": 0, "payload": "p"}
    text = (
        json.dumps(good)
        + "\n"
        + '{"tst": "2025-11-25T06:00:01.0Z+0000", "topic": \n'  # line 2: bad JSON
        + json.dumps({**good, "qos": 7})
        + "\n"  # line 3: qos out of range
        + json.dumps(good)
        + "\n"
        + json.dumps(good)[:30]  # line 5: cut mid-line
    )
    path = tmp_path / "cut.jsonl"
    path.write_text(text)
    reader = read_recording(path)
    got = list(reader)
    assert len(got) == 2
    assert [s.line for s in reader.skipped] == [2, 3, 5]
    assert "cut mid-line" in reader.skipped[2].reason
    assert "qos 7" in reader.skipped[1].reason


def test_gzip_native_with_bad_line_inside(tmp_path: Path) -> None:
    path = tmp_path / "rec"
    with gzip.open(path, "wb") as out:
        out.write(b'{"wipwatch_recording": 1, "started": 0}\n')
        out.write(b'{"t": 1.0, "topic": "a/b", "qos": 1, "payload": "x"}\n')
        out.write(b'{"t": "noon", "topic": "a/b", "qos": 1, "payload": "x"}\n')
        out.write(b"\xff\xfe not json\n")
        out.write(b'{"t": 2.0, "topic": "a/b", "qos": 1, "payload": "y"}\n')
    reader = read_recording(path)
    assert [m.payload for m in reader] == [b"x", b"y"]
    assert [s.line for s in reader.skipped] == [3, 4]


@pytest.mark.parametrize(
    "content",
    [b"hello world\nthis is not a recording\n", b"\x00\x01\x02binary\xff", b'{"foo": 1}\n', b"[1, 2]\n"],
)
def test_unknown_format_raises_a_recording_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "mystery"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match="mystery"):
        list(read_recording(path))


@pytest.mark.parametrize(
    ("content", "says"),
    [(b"hello world\n", "unknown recording format"), (b"\x1f\x8b\x08", "no readable message; line 1")],
)
def test_cli_reports_unreadable_files_in_one_line_without_traceback(
    tmp_path: Path, content: bytes, says: str
) -> None:
    path = tmp_path / "mystery.txt"
    path.write_bytes(content)
    done = subprocess.run(
        [sys.executable, "-m", "wipwatch", "replay", str(path), "--mqtt-port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "500"},  # rich wraps at 80 columns without a terminal
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert says in done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr
