"""All wipwatch dashboards as Grafana JSON, and writing them where provisioning reads them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from wipwatch.dashboards import line_detail, shift_review, site_overview
from wipwatch.site import Site

#: The exported dashboard JSON that provisioning loads (dashboards/provisioning/dashboards/json).
PROVISIONED_JSON_DIR = Path(__file__).resolve().parent / "provisioning" / "dashboards" / "json"


def build_all(site: Site) -> dict[str, dict[str, Any]]:
    """Every dashboard for ``site`` as a Grafana dashboard model (plain JSON data), by uid."""
    out: dict[str, dict[str, Any]] = {}
    for module in (site_overview, line_detail, shift_review):
        model = json.loads(json.dumps(module.build(site).build(), cls=JSONEncoder))
        out[model["uid"]] = model
    return out


def export(site: Site, directory: Path) -> list[Path]:
    """Write each dashboard to ``directory/<uid>.json`` (stable, sorted keys); return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for uid, model in build_all(site).items():
        path = directory / f"{uid}.json"
        path.write_text(json.dumps(model, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        paths.append(path)
    return paths
