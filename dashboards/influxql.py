"""InfluxQL queries for Grafana panels, and Grafana's macro expansion so tests can run them.

The foundation SDK ships no InfluxDB query type (it has Prometheus, Loki, ... but not InfluxDB), so
``InfluxQL`` is a small builder of the documented InfluxDB datasource target: ``query`` in raw mode,
``resultFormat`` ``time_series`` or ``table``, and an ``alias``.
"""

from __future__ import annotations

import re
from typing import Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import AnnotationQuery, DataSourceRef

#: The provisioned datasource's uid (dashboards/provisioning/datasources/wipwatch.yaml).
DATASOURCE_UID = "wipwatch-influxdb"
DATASOURCE = DataSourceRef(type_val="influxdb", uid=DATASOURCE_UID)

ResultFormat = Literal["time_series", "table"]


class InfluxQLQuery(cogvariants.Dataquery):
    """One raw-mode InfluxQL target of a panel."""

    def __init__(self, ref_id: str, query: str, result_format: ResultFormat, alias: str | None) -> None:
        self.ref_id = ref_id
        self.query = query
        self.result_format = result_format
        self.alias = alias

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": DATASOURCE.to_json(),
            "rawQuery": True,
            "query": self.query,
            "resultFormat": self.result_format,
        }
        if self.alias:
            payload["alias"] = self.alias
        return payload


class InfluxQL(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder of an ``InfluxQLQuery``, usable wherever the SDK takes a query builder."""

    def __init__(self, query: str, ref_id: str = "A") -> None:
        self._query = InfluxQLQuery(ref_id, " ".join(query.split()), "time_series", None)

    def build(self) -> InfluxQLQuery:
        return self._query

    def table(self) -> Self:
        self._query.result_format = "table"
        return self

    def alias(self, alias: str) -> Self:
        self._query.alias = alias
        return self

    def ref_id(self, ref_id: str) -> Self:
        self._query.ref_id = ref_id
        return self


class InfluxAnnotationQuery(AnnotationQuery):
    """An InfluxQL annotation: Grafana's InfluxDB datasource reads ``query`` and the column names that
    give each event's text and tags (the SDK's annotation model has no fields for them)."""

    def __init__(self, name: str, query: str, text_column: str, tags_column: str, icon_color: str) -> None:
        super().__init__(name=name, datasource=DATASOURCE, enable=True, icon_color=icon_color)
        self.query = " ".join(query.split())
        self.text_column = text_column
        self.tags_column = tags_column

    def to_json(self) -> dict[str, object]:
        payload = super().to_json()
        payload.update({"query": self.query, "textColumn": self.text_column, "tagsColumn": self.tags_column})
        return payload


class InfluxAnnotation(cogbuilder.Builder[AnnotationQuery]):
    """Builder of an ``InfluxAnnotationQuery`` for ``Dashboard.annotation``."""

    def __init__(self, name: str, query: str, text_column: str, tags_column: str, icon_color: str) -> None:
        self._annotation = InfluxAnnotationQuery(name, query, text_column, tags_column, icon_color)

    def build(self) -> AnnotationQuery:
        return self._annotation


def site_filter(line: bool = True) -> str:
    """The WHERE clause every panel shares: the chosen site (and line(s)) and the dashboard's time range."""
    clause = '"site" =~ /^$site$/'
    if line:
        clause += ' AND "line" =~ /^$line$/'
    return clause + " AND $timeFilter"


def expand(
    query: str,
    variables: dict[str, str],
    time_from: str = "now() - 3650d",
    time_to: str = "now() + 3650d",
    interval: str = "1m",
) -> str:
    """What Grafana sends to InfluxDB for ``query``: variables and macros substituted.

    Grafana regex-escapes a variable's value inside ``/.../`` (but not a custom "All" value such as
    ``.*``, so pass concrete values here); ``$timeFilter`` becomes a time range and ``$__interval`` the
    panel's interval. Used by the tests that run every panel's query against InfluxDB.
    """
    text = query.replace("$timeFilter", f"time >= {time_from} AND time <= {time_to}")
    text = text.replace("$__interval", interval)
    for name in sorted(variables, key=len, reverse=True):
        text = text.replace(f"${name}", re.escape(variables[name]).replace("/", r"\/"))
    return text
