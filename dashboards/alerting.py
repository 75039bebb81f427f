"""Grafana-managed alert rules generated from the site file's alert rules (docs/alerts.md, "Grafana").

For a Grafana that runs without wipwatch's processors delivering (or beside them): each rule instance
becomes a Grafana alert rule over the measurements the processors write, provisioned from
``dashboards/provisioning/alerting/`` in docker-compose. A rule is three queries: the InfluxQL query
(A), its last value (B) and a threshold with a recovery threshold for the hysteresis (C). Grafana judges on
its own clock, not event time; ``data_quality`` needs the event count, which is not in InfluxDB, so its
Grafana rule follows the processors' own ``alerts`` measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wipwatch.alert_rules import LINE_SCOPE, Condition, RuleInstance, expand_rules
from wipwatch.dashboards.influxql import DATASOURCE_UID
from wipwatch.measurements import ALERTS, BOTTLENECK, FLOW_TIME, QUEUE, STATION, THROUGHPUT, WIP
from wipwatch.site import Site

#: Where docker-compose's Grafana reads alert rules (the provisioning folder is mounted whole).
PROVISIONED_ALERTING = Path(__file__).resolve().parent / "provisioning" / "alerting" / "wipwatch-alerts.yaml"
#: Seconds of data a "latest value" query looks at.
LATEST_RANGE_S = 600
FOLDER = "wipwatch"


@dataclass(frozen=True)
class GrafanaRule:
    """One instance as Grafana sees it: a query over ``range_s`` seconds and a threshold on its last value."""

    instance: RuleInstance
    query: str
    range_s: int
    evaluator: str  # "gt" or "lt"
    threshold: float
    recover: float
    for_s: float
    no_data: str  # Grafana's noDataState: OK or Alerting

    def fires(self, value: float) -> bool:
        return value > self.threshold if self.evaluator == "gt" else value < self.threshold


def _where(inst: RuleInstance, location: bool = True) -> str:
    clause = f"\"site\" = '{inst.site}' AND \"line\" = '{inst.line}'"
    if location:
        clause += f" AND \"location\" = '{inst.location}'"
    return clause + " AND $timeFilter"


def grafana_rule(inst: RuleInstance, site: Site) -> GrafanaRule:
    """The Grafana form of one rule instance (queries per condition in docs/alerts.md)."""
    cond = Condition(inst.condition)
    gt = not inst.fires_below
    latest = (LATEST_RANGE_S, inst.threshold, inst.clear, inst.for_s, "OK")
    held = max(60, round(inst.for_s))
    if cond is Condition.WIP_OVER_CAP:
        query, spec = f'SELECT last("parts") FROM "{WIP}" WHERE {_where(inst)}', latest
    elif cond is Condition.QUEUE_GROWTH:
        query, spec = f'SELECT last("growth_per_hour") FROM "{QUEUE}" WHERE {_where(inst)}', latest
    elif cond is Condition.OLDEST_PART_AGE:
        query, spec = f'SELECT last("oldest_age_s") FROM "{FLOW_TIME}" WHERE {_where(inst)}', latest
    elif cond is Condition.UNDER_PRODUCTION:
        query, spec = f'SELECT last("production_ratio") FROM "{THROUGHPUT}" WHERE {_where(inst)}', latest
    elif cond is Condition.OVER_PRODUCTION:
        line = site.line(inst.line)
        finished = line.locations[-1].id
        where = _where(inst, location=False).replace(
            "$timeFilter", f"\"location\" = '{finished}' AND $timeFilter"
        )
        query = f'SELECT last("growth_per_hour") / {line.demand_per_hour:g} FROM "{QUEUE}" WHERE {where}'
        spec = latest
    elif cond in (Condition.STATION_DOWN, Condition.STATION_BLOCKED):
        # seconds spent down (blocked) in the last `for`: nearly all of it means down (blocked) that long
        field = "down_s" if cond is Condition.STATION_DOWN else "blocked_s"
        query = f'SELECT spread("{field}") FROM "{STATION}" WHERE {_where(inst)}'
        spec = (held, 0.9 * held, 0.5 * held, 0.0, "OK")
    elif cond is Condition.NEW_BOTTLENECK:
        query = f'SELECT mean("momentary") FROM "{BOTTLENECK}" WHERE {_where(inst)}'
        spec = (held, 0.99, 0.5, 0.0, "OK")
    elif cond is Condition.LINE_SILENT:
        query = f'SELECT count("parts") FROM "{WIP}" WHERE {_where(inst, location=False)}'
        return GrafanaRule(inst, query, max(60, round(inst.threshold)), "lt", 1.0, 1.0, 0.0, "Alerting")
    else:  # DATA_QUALITY: the processors' own judgement
        where = _where(inst).replace(" AND $timeFilter", f" AND \"rule\" = '{inst.rule}' AND $timeFilter")
        query = f'SELECT last("firing") FROM "{ALERTS}" WHERE {where}'
        spec = (86_400, 0.5, 0.5, 0.0, "OK")
    range_s, threshold, recover, for_s, no_data = spec
    return GrafanaRule(inst, query, range_s, "gt" if gt else "lt", threshold, recover, for_s, no_data)


def _provisioned(rule: GrafanaRule) -> dict[str, Any]:
    inst = rule.instance
    where = inst.line if inst.location == LINE_SCOPE else f"{inst.line}/{inst.location}"
    recover_type = "lt" if rule.evaluator == "gt" else "gt"
    return {
        "uid": f"wipwatch-{inst.identity}",
        "title": f"{inst.rule} {where}",
        "condition": "C",
        "data": [
            {
                "refId": "A",
                "relativeTimeRange": {"from": rule.range_s, "to": 0},
                "datasourceUid": DATASOURCE_UID,
                "model": {"refId": "A", "rawQuery": True, "query": rule.query, "resultFormat": "time_series"},
            },
            {
                "refId": "B",
                "datasourceUid": "__expr__",
                "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": "last"},
            },
            {
                "refId": "C",
                "datasourceUid": "__expr__",
                "model": {
                    "refId": "C",
                    "type": "threshold",
                    "expression": "B",
                    "conditions": [
                        {
                            "evaluator": {"type": rule.evaluator, "params": [rule.threshold]},
                            "unloadEvaluator": {"type": recover_type, "params": [rule.recover]},
                        }
                    ],
                },
            },
        ],
        "noDataState": rule.no_data,
        "execErrState": "Error",
        "for": f"{round(rule.for_s)}s",
        "annotations": {"summary": inst.summary},
        "labels": {
            **inst.labels,
            "site": inst.site,
            "line": inst.line,
            "location": inst.location,
            "severity": inst.severity,
            "identity": inst.identity,
        },
        "isPaused": False,
    }


def grafana_rules(site: Site) -> list[GrafanaRule]:
    return [grafana_rule(inst, site) for inst in expand_rules(site)]


def alerting_provisioning(site: Site) -> dict[str, Any]:
    """Grafana's alert-rule provisioning document (``apiVersion: 1``, one group per site)."""
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": f"wipwatch {site.site}",
                "folder": FOLDER,
                "interval": "1m",
                "rules": [_provisioned(rule) for rule in grafana_rules(site)],
            }
        ],
    }


def export_alerting(site: Site, path: Path = PROVISIONED_ALERTING) -> Path:
    """Write the provisioning document of ``site`` to ``path`` (stable order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Generated by `wipwatch dashboards export` from the site file's alert rules; do not edit.\n"
    path.write_text(header + yaml.safe_dump(alerting_provisioning(site), sort_keys=False, width=200))
    return path
