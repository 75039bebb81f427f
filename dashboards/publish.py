"""Push the dashboards to any Grafana through its HTTP API (grafana-client).

Idempotent: the folder and every dashboard have stable uids, and dashboards are saved with
``overwrite: true``, so publishing twice leaves one copy of each, at the newest version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from wipwatch.dashboards.export import build_all
from wipwatch.errors import ServiceError
from wipwatch.site import Site

log = logging.getLogger(__name__)

FOLDER_UID = "wipwatch"
FOLDER_TITLE = "wipwatch"


@dataclass(frozen=True)
class Published:
    """One dashboard as Grafana stored it."""

    uid: str
    title: str
    url: str
    version: int


def publish(site: Site, url: str, token: str | None, timeout: float = 10.0) -> list[Published]:
    """Create the wipwatch folder if missing and save every dashboard into it, overwriting older versions.

    Raises:
        ServiceError: Grafana does not answer at ``url``, is unhealthy, or refuses a request (names which).
    """
    from grafana_client.api import GrafanaApi
    from grafana_client.client import GrafanaClientError, GrafanaException

    api = GrafanaApi.from_url(url, credential=token or None, timeout=timeout)
    try:
        health: dict[str, Any] = api.client.GET("/health")
        if health.get("database") not in (None, "ok"):
            raise ServiceError(f"Grafana at {url} is unhealthy: database={health.get('database')}")
        _ensure_folder(api, GrafanaClientError)
        published = []
        for uid, model in build_all(site).items():
            saved = api.dashboard.update_dashboard(
                {
                    "dashboard": {**model, "id": None},
                    "folderUid": FOLDER_UID,
                    "overwrite": True,
                    "message": "published by wipwatch",
                }
            )
            published.append(
                Published(uid, model["title"], saved.get("url", ""), int(saved.get("version", 0)))
            )
            log.info("published dashboard uid=%s version=%s", uid, saved.get("version"))
        return published
    except GrafanaClientError as exc:
        hint = " (check --token: it needs the Editor role)" if exc.status_code in (401, 403) else ""
        raise ServiceError(f"Grafana at {url} refused: HTTP {exc.status_code} {exc.message}{hint}") from None
    except GrafanaException as exc:
        raise ServiceError(f"Grafana at {url} failed: {exc.message}") from None
    except OSError as exc:  # niquests' connection errors derive from OSError
        raise ServiceError(f"Grafana at {url} does not answer ({exc}); is the URL right?") from None


def _ensure_folder(api: Any, client_error: type[Exception]) -> None:
    try:
        api.folder.get_folder(FOLDER_UID)
    except client_error as exc:
        if getattr(exc, "status_code", None) != 404:
            raise
        api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        log.info("created folder uid=%s", FOLDER_UID)
