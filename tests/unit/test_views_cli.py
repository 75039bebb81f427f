"""The views' CLI commands without servers: export writes the provisioned JSON, errors are one line."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import EXAMPLE_SITE
from wipwatch.cli.main import app
from wipwatch.dashboards.export import PROVISIONED_JSON_DIR

pytestmark = pytest.mark.unit


def test_export_writes_the_three_dashboards(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["dashboards", "export", str(tmp_path), "--site", str(EXAMPLE_SITE)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "wipwatch-line-detail.json",
        "wipwatch-shift-review.json",
        "wipwatch-site-overview.json",
    ]
    overview = json.loads((tmp_path / "wipwatch-site-overview.json").read_text())
    assert overview["uid"] == "wipwatch-site-overview" and overview["title"].startswith(
        "wipwatch — Demo plant"
    )
    assert (tmp_path / "wipwatch-line-detail.json").read_text() == (
        PROVISIONED_JSON_DIR / "wipwatch-line-detail.json"
    ).read_text()


def test_board_refuses_a_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["board", "--port", str(port), "--site", str(EXAMPLE_SITE)])
    assert result.exit_code != 0
    assert f"port {port} on 127.0.0.1 is in use" in str(result.exception)
