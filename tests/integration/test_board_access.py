"""Who may open the live board: Host allowlist always, token when set; real uvicorn, real HTTP requests."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from typer.testing import CliRunner

from tests.conftest import EXAMPLE_SITE
from tests.polling import eventually
from wipwatch.cli.main import app as cli
from wipwatch.dashboards.board.access import COOKIE
from wipwatch.dashboards.board.app import create_app
from wipwatch.dashboards.board.snapshot import SnapshotSource
from wipwatch.influx import InfluxTarget
from wipwatch.services import free_port
from wipwatch.settings import load_settings
from wipwatch.site import load_site

pytestmark = pytest.mark.integration

TOKEN = "s3cret-board-token"
#: /healthz answers 200, or 503 while InfluxDB is down (none runs here): either way not 400/401.
PAST_ACCESS = (200, 503)


@pytest.fixture
def board_port() -> Iterator[int]:
    site = load_site(EXAMPLE_SITE)
    # nothing listens at this InfluxDB: the page and /healthz do not query it
    target = InfluxTarget.from_settings(
        load_settings(influx_url=f"http://127.0.0.1:{free_port()}"), detect=False
    )
    port = free_port()
    hosts = ["127.0.0.1", "localhost", "board.plant.example"]
    app = create_app(SnapshotSource(site, target), 0.5, allowed_hosts=hosts, token=TOKEN)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started, bool, timeout=10, what="board started")
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def _get(port: int, path: str, host: str = "127.0.0.1", **headers: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", path, headers={"Host": f"{host}:{port}", **headers})
    response = connection.getresponse()
    response.read()
    return response


def test_foreign_host_headers_are_refused_even_with_the_token(board_port: int) -> None:
    for host in ("attacker.example", "127.0.0.1.nip.io", "localhost.attacker.example"):
        assert _get(board_port, "/healthz", host).status == 400, host
        assert _get(board_port, "/", host, Authorization=f"Bearer {TOKEN}").status == 400, host
    # past the access check: /healthz itself answers 503 here, as no InfluxDB runs behind this board
    assert _get(board_port, "/healthz", "board.plant.example").status in PAST_ACCESS


def test_token_by_header_or_by_link_then_cookie(board_port: int) -> None:
    assert _get(board_port, "/").status == 401
    assert _get(board_port, "/", Authorization="Bearer wrong").status == 401
    assert _get(board_port, f"/?token={TOKEN}x").status == 401
    assert _get(board_port, "/", Authorization=f"Bearer {TOKEN}").status == 200
    # the link sets an HttpOnly cookie and redirects to the address without the token
    link = _get(board_port, f"/?token={TOKEN}&line=line1")
    assert link.status == 303 and link.getheader("location") == "/?line=line1"
    cookie = link.getheader("set-cookie") or ""
    assert cookie.startswith(f"{COOKIE}={TOKEN}") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert _get(board_port, "/static/board.js", Cookie=f"{COOKIE}={TOKEN}").status == 200
    assert _get(board_port, "/static/board.js", Cookie=f"{COOKIE}=nope").status == 401
    assert _get(board_port, "/healthz").status in PAST_ACCESS  # container healthchecks need no token


def test_board_beyond_loopback_refuses_to_start_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIPWATCH_BOARD_HOST", "0.0.0.0")
    monkeypatch.delenv("WIPWATCH_BOARD_TOKEN", raising=False)
    result = CliRunner().invoke(cli, ["board", "--port", str(free_port())])
    assert result.exit_code != 0
    assert "WIPWATCH_BOARD_TOKEN" in str(result.exception)
