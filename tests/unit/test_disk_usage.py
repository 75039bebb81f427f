"""The disk use `wipwatch up` reports: allocated bytes under a directory, sparse files as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from wipwatch.services import NativeStack, Ports, disk_usage

pytestmark = pytest.mark.unit


def test_counts_written_bytes_and_not_the_holes_of_sparse_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "data").write_bytes(b"x" * 1_000_000)
    with open(tmp_path / "sparse", "wb") as f:  # a Kafka index preallocated as a sparse file
        f.truncate(50_000_000)
    used = disk_usage(tmp_path)
    assert 1_000_000 <= used < 2_000_000


def test_a_stack_reports_each_server_and_zero_for_missing_directories(tmp_path: Path) -> None:
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "log").write_bytes(b"y" * 300_000)
    usage = NativeStack(tmp_path, Ports(1, 2, 3)).disk_usage()
    assert usage["mosquitto"] == 0 and usage["influxdb"] == 0
    assert 300_000 <= usage["kafka"] < 400_000
