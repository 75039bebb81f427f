"""A processors worker's status file follows its rebalances: partitions held, lines owned on them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wipwatch.processors.status import WorkerStatus, status_name
from wipwatch.status import read_status, status_file

pytestmark = pytest.mark.unit


def test_the_status_file_follows_assignments_and_lines(tmp_path: Path) -> None:
    status = WorkerStatus(tmp_path, "group-a")
    name = status_name("group-a", os.getpid())
    assert read_status(tmp_path, name) is None
    status.assigned([3, 1])
    first = read_status(tmp_path, name)
    assert first is not None
    assert (first["pid"], first["partitions"], first["lines"]) == (os.getpid(), [1, 3], [])
    status.owns("brackets", 1)
    status.owns("housings", 3)
    owning = read_status(tmp_path, name)
    assert owning is not None and owning["lines"] == ["brackets", "housings"]
    status.assigned([3, 0])  # partition 1 went to another worker, and its line with it
    after = read_status(tmp_path, name)
    assert after is not None and after["partitions"] == [0, 3] and after["lines"] == ["housings"]
    assert status_file(tmp_path, name).parent == tmp_path / "status"
    assert [p.name for p in (tmp_path / "status").iterdir()] == [f"{name}.json"], "no temporary left"


def test_two_workers_of_one_group_in_one_run_directory_keep_apart() -> None:
    assert status_name("group-a", 101) != status_name("group-a", 102)


def test_an_unreadable_status_file_reads_as_none(tmp_path: Path) -> None:
    status_file(tmp_path, "x").parent.mkdir(parents=True)
    status_file(tmp_path, "x").write_text("{half")
    assert read_status(tmp_path, "x") is None
