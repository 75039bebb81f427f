"""``wipwatch dashboards publish`` against a stand-in of Grafana's documented HTTP API.

The stand-in (Starlette, served by uvicorn on a free port) implements the endpoints grafana-client calls:
``GET /api/health``, ``GET /api/folders/{uid}``, ``POST /api/folders``, ``POST /api/dashboards/db``, with
Grafana's status codes (404 for a missing folder, 412 for a dashboard saved without overwrite over an
existing uid, 401 without a valid bearer token), and records every request.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typer.testing import CliRunner

from tests.conftest import EXAMPLE_SITE
from tests.polling import eventually
from wipwatch.cli.main import app
from wipwatch.dashboards.publish import FOLDER_UID, publish
from wipwatch.errors import ServiceError
from wipwatch.services import free_port
from wipwatch.site import load_site

pytestmark = pytest.mark.integration

TOKEN = "glsa_test_token"


@dataclass
class FakeGrafana:
    """State of the stand-in: folders and dashboards by uid, and the requests it saw."""

    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        def authorized(request: Request) -> bool:
            return request.headers.get("authorization") == f"Bearer {TOKEN}"

        async def health(request: Request) -> JSONResponse:
            self.requests.append(("GET", "/api/health", None))
            return JSONResponse({"commit": "abc", "database": "ok", "version": "11.6.0"})

        async def folder(request: Request) -> JSONResponse:
            uid = request.path_params["uid"]
            self.requests.append(("GET", f"/api/folders/{uid}", None))
            if not authorized(request):
                return JSONResponse({"message": "Unauthorized"}, 401)
            if uid not in self.folders:
                return JSONResponse({"message": "folder not found"}, 404)
            return JSONResponse(self.folders[uid])

        async def create_folder(request: Request) -> JSONResponse:
            body = await request.json()
            self.requests.append(("POST", "/api/folders", body))
            if not authorized(request):
                return JSONResponse({"message": "Unauthorized"}, 401)
            if body["uid"] in self.folders:
                return JSONResponse({"message": "a folder with the same uid already exists"}, 409)
            self.folders[body["uid"]] = {
                "id": len(self.folders) + 1,
                "uid": body["uid"],
                "title": body["title"],
            }
            return JSONResponse(self.folders[body["uid"]])

        async def save_dashboard(request: Request) -> JSONResponse:
            body = await request.json()
            self.requests.append(("POST", "/api/dashboards/db", body))
            if not authorized(request):
                return JSONResponse({"message": "Unauthorized"}, 401)
            dashboard = body["dashboard"]
            uid = dashboard["uid"]
            if body.get("folderUid") not in self.folders:
                return JSONResponse({"message": "folder not found"}, 400)
            if uid in self.dashboards and not body.get("overwrite"):
                return JSONResponse({"message": "The dashboard has been changed by someone else"}, 412)
            version = self.dashboards.get(uid, {}).get("version", 0) + 1
            self.dashboards[uid] = {
                "dashboard": dashboard,
                "folderUid": body["folderUid"],
                "version": version,
            }
            return JSONResponse(
                {"id": 1, "uid": uid, "url": f"/d/{uid}/x", "status": "success", "version": version}
            )

        return Starlette(
            routes=[
                Route("/api/health", health),
                Route("/api/folders/{uid}", folder),
                Route("/api/folders", create_folder, methods=["POST"]),
                Route("/api/dashboards/db", save_dashboard, methods=["POST"]),
            ]
        )


@pytest.fixture
def grafana() -> Iterator[tuple[FakeGrafana, str]]:
    fake = FakeGrafana()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(fake.app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started, bool, timeout=10, what="stand-in Grafana started")
    try:
        yield fake, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_publish_creates_folder_and_dashboards_then_overwrites_idempotently(
    grafana: tuple[FakeGrafana, str],
) -> None:
    fake, url = grafana
    site = load_site(EXAMPLE_SITE)
    first = publish(site, url, TOKEN)
    assert sorted(p.uid for p in first) == [
        "wipwatch-line-detail",
        "wipwatch-shift-review",
        "wipwatch-site-overview",
    ]
    assert {p.version for p in first} == {1}
    assert fake.folders == {FOLDER_UID: {"id": 1, "uid": FOLDER_UID, "title": "wipwatch"}}
    saved = fake.requests[-1][2]
    assert saved["overwrite"] is True and saved["folderUid"] == FOLDER_UID
    assert saved["dashboard"]["id"] is None and saved["dashboard"]["panels"], "a full dashboard model"

    second = publish(site, url, TOKEN)
    assert {p.version for p in second} == {2}
    assert len(fake.dashboards) == 3 and len(fake.folders) == 1
    assert [r for r in fake.requests if r[1] == "/api/folders"] == [fake.requests[2]]  # created once
    overview = fake.dashboards["wipwatch-site-overview"]["dashboard"]
    assert overview["panels"][0]["targets"][0]["alias"] == "line1/raw"


def test_publish_reports_a_bad_token_and_an_unreachable_grafana(grafana: tuple[FakeGrafana, str]) -> None:
    fake, url = grafana
    site = load_site(EXAMPLE_SITE)
    with pytest.raises(ServiceError, match=r"refused: HTTP 401 .*check --token"):
        publish(site, url, "wrong")
    assert fake.dashboards == {}
    with pytest.raises(ServiceError, match="does not answer"):
        publish(site, f"http://127.0.0.1:{free_port()}", TOKEN, timeout=2)


def test_cli_publish_prints_each_dashboard(grafana: tuple[FakeGrafana, str]) -> None:
    _fake, url = grafana
    result = CliRunner().invoke(
        app, ["dashboards", "publish", "--url", url, "--token", TOKEN, "--site", str(EXAMPLE_SITE)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("published wipwatch-") == 3
    assert f"{url}/d/wipwatch-line-detail/x" in result.output
