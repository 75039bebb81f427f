"""Grafana dashboards as code: schema validity, provisioning in sync, flow order and caps from the site."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import EXAMPLE_SITE
from wipwatch.dashboards import influxql
from wipwatch.dashboards.export import PROVISIONED_JSON_DIR, build_all, export
from wipwatch.processors.metrics.line_state import EngineConfig, LineEngine
from wipwatch.processors.points import line_points
from wipwatch.settings import REPO_ROOT
from wipwatch.simulators.line import simulate_site
from wipwatch.site import load_site, parse_site

pytestmark = pytest.mark.unit

SCHEMA = REPO_ROOT / "dashboards" / "schema" / "dashboard.schema.json"
PROVISIONING = REPO_ROOT / "dashboards" / "provisioning"

#: Deliberate deviations from the generated schema (docs/dashboards.md, "Schema check"): path pattern of
#: the offending object -> the extra keys it may carry. The schema generator closes every interface
#: (additionalProperties: false); Grafana itself ignores unknown keys.
ALLOWED_EXTRA_KEYS: dict[str, set[str]] = {
    # grafana-foundation-sdk writes the interval-variable fields on every variable; Grafana accepts them.
    r"templating/list/\d+": {"auto", "auto_count", "auto_min"},
    # InfluxDB annotations: the query and the columns of text and tags, read by Grafana's InfluxDB datasource.
    r"annotations/list/\d+": {"query", "textColumn", "tagsColumn"},
}


def _schema_errors(model: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    problems = []
    for error in validator.iter_errors(model):
        path = "/".join(str(p) for p in error.absolute_path)
        if error.validator == "additionalProperties":
            extra = set(error.instance) - set(error.schema.get("properties", {}))
            allowed = set().union(
                *(keys for pat, keys in ALLOWED_EXTRA_KEYS.items() if re.fullmatch(pat, path))
            )
            if extra <= allowed:
                continue
        problems.append(f"{path}: {error.message}")
    return problems


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return build_all(load_site(EXAMPLE_SITE))


def test_every_dashboard_validates_against_grafana_schema(dashboards: dict[str, dict[str, Any]]) -> None:
    assert set(dashboards) == {"wipwatch-site-overview", "wipwatch-line-detail", "wipwatch-shift-review"}
    for uid, model in dashboards.items():
        assert _schema_errors(model) == [], uid


def test_schema_check_catches_a_broken_dashboard(dashboards: dict[str, dict[str, Any]]) -> None:
    broken = json.loads(json.dumps(dashboards["wipwatch-line-detail"]))
    broken["panels"][0]["gridPos"]["w"] = "wide"
    broken["templating"]["list"][0]["colour"] = "red"
    problems = _schema_errors(broken)
    assert any(p.startswith("panels/0") for p in problems), problems
    assert any("colour" in p for p in problems)


def test_provisioned_json_is_the_export_of_the_example_site(tmp_path: Path) -> None:
    written = export(load_site(EXAMPLE_SITE), tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in PROVISIONED_JSON_DIR.glob("*.json"))
    for path in written:
        committed = (PROVISIONED_JSON_DIR / path.name).read_text()
        assert path.read_text() == committed, (
            f"{path.name} is stale: run `wipwatch dashboards export {PROVISIONED_JSON_DIR}`"
        )


def test_provisioning_points_at_the_datasource_and_json_the_dashboards_use(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    sources = yaml.safe_load((PROVISIONING / "datasources" / "wipwatch.yaml").read_text())["datasources"]
    assert [(s["uid"], s["type"], s["jsonData"]["dbName"]) for s in sources] == [
        ("wipwatch-influxdb", "influxdb", "wipwatch")
    ]
    assert sources[0]["url"] == "http://influxdb:8086"
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "wipwatch.yaml").read_text())["providers"][0]
    # Grafana mounts dashboards/provisioning at /etc/grafana/provisioning
    mounted = Path("/etc/grafana/provisioning") / PROVISIONED_JSON_DIR.relative_to(PROVISIONING)
    assert provider["options"]["path"] == str(mounted)
    uids = set()
    for model in dashboards.values():
        for panel in model["panels"]:
            for target in panel["targets"]:
                uids.add(target["datasource"]["uid"])
                assert target["rawQuery"] is True and "$timeFilter" in target["query"], panel["title"]
    assert uids == {"wipwatch-influxdb"}


def test_wip_bars_follow_flow_order_with_cap_thresholds(dashboards: dict[str, dict[str, Any]]) -> None:
    panel = dashboards["wipwatch-site-overview"]["panels"][0]
    assert panel["type"] == "bargauge"
    aliases = [t["alias"] for t in panel["targets"]]
    assert aliases == [
        "line1/raw", "line1/cut", "line1/b-cut", "line1/press", "line1/b-press", "line1/weld",
        "line1/b-weld", "line1/paint", "line1/b-paint", "line1/pack", "line1/fg",
    ]  # fmt: skip
    assert "\"location\" = 'b-press'" in panel["targets"][4]["query"]
    overrides = {
        o["matcher"]["options"]: o["properties"][0]["value"] for o in panel["fieldConfig"]["overrides"]
    }
    # only the four buffers have caps (20): amber from 16 (80%), red at 20
    assert set(overrides) == {"line1/b-cut", "line1/b-press", "line1/b-weld", "line1/b-paint"}
    assert [(s["value"], s["color"]) for s in overrides["line1/b-cut"]["steps"]] == [
        (None, "green"),
        (16.0, "orange"),
        (20.0, "red"),
    ]


def test_caps_and_currency_come_from_the_site_file() -> None:
    site = parse_site(
        {
            "site": "s2",
            "currency": "usd",
            "lines": [
                {
                    "id": "a",
                    "locations": [
                        {"id": "q", "kind": "buffer", "cap": 5},
                        {"id": "m", "kind": "station", "process_time": {"mean": 3}},
                    ],
                }
            ],
        }
    )
    models = build_all(site)
    bars = models["wipwatch-site-overview"]["panels"][0]
    steps = bars["fieldConfig"]["overrides"][0]["properties"][0]["value"]["steps"]
    assert [s["value"] for s in steps] == [None, 4.0, 5.0]
    money = next(
        p for p in models["wipwatch-site-overview"]["panels"] if p["title"] == "Money tied up in WIP"
    )
    assert money["fieldConfig"]["defaults"]["unit"] == "currencyUSD"
    assert models["wipwatch-line-detail"]["templating"]["list"][1]["current"]["value"] == "a"


def test_expand_substitutes_grafana_macros_and_escapes_variables() -> None:
    query = (
        'SELECT last("parts") FROM "wip" WHERE "site" =~ /^$site$/ AND $timeFilter GROUP BY time($__interval)'
    )
    assert influxql.expand(query, {"site": "a.b/c"}, "'2026-01-01T00:00:00Z'", "now()", "5m") == (
        'SELECT last("parts") FROM "wip" WHERE "site" =~ /^a\\.b\\/c$/ '
        "AND time >= '2026-01-01T00:00:00Z' AND time <= now() GROUP BY time(5m)"
    )


def test_bottleneck_fields_the_dashboards_read_are_the_ones_the_processors_write(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    site = load_site(EXAMPLE_SITE)
    events: list[Any] = []
    simulate_site(site, events.append, seed=1, duration=1800, start=datetime(2026, 11, 25, tzinfo=UTC))
    engine = LineEngine(site.lines[0], site.site, EngineConfig())
    engine.offer(events, partition=0, offset=0)
    engine.release(everything=True)
    written: set[str] = set()
    for point in line_points(engine):
        if point.startswith("bottleneck,"):
            fields = point.split(" ")[1]
            written |= {kv.split("=")[0] for kv in fields.split(",")}
    assert {"share", "window_share", "momentary"} <= written
    read: set[str] = set()
    for model in dashboards.values():
        for panel in model["panels"]:
            for target in panel.get("targets", []):
                query = target.get("query", "")
                if 'FROM "bottleneck"' in query:
                    select = query.split(" FROM ")[0]
                    read |= set(re.findall(r'(?<!AS )"(\w+)"', select))
    assert read and read <= written, read - written


def test_provisioned_alert_rules_are_the_export_of_the_example_site(tmp_path: Path) -> None:
    from wipwatch.alert_rules import expand_rules
    from wipwatch.dashboards.alerting import PROVISIONED_ALERTING, export_alerting

    site = load_site(EXAMPLE_SITE)
    written = export_alerting(site, tmp_path / "alerts.yaml")
    assert written.read_text() == PROVISIONED_ALERTING.read_text(), (
        "stale: run `wipwatch dashboards export dashboards/provisioning/dashboards/json "
        f"--alerting {PROVISIONED_ALERTING.relative_to(REPO_ROOT)}`"
    )
    document = yaml.safe_load(written.read_text())
    assert document["apiVersion"] == 1
    [group] = document["groups"]
    instances = {f"wipwatch-{i.identity}": i for i in expand_rules(site)}
    assert [rule["uid"] for rule in group["rules"]] == list(instances)
    for rule in group["rules"]:
        inst = instances[rule["uid"]]
        assert rule["labels"]["identity"] == inst.identity and rule["condition"] == "C"
        [query, reduce, threshold] = rule["data"]
        assert query["datasourceUid"] == influxql.DATASOURCE_UID and "$timeFilter" in query["model"]["query"]
        assert reduce["model"]["expression"] == "A" and threshold["model"]["expression"] == "B"
