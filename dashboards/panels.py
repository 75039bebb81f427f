"""Pieces every wipwatch dashboard shares: template variables, cap thresholds, units, transformations."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard as model

from wipwatch.dashboards.influxql import DATASOURCE
from wipwatch.measurements import WIP
from wipwatch.site import Line, Site

#: Share of the cap at which a WIP bar turns amber.
CAP_WARNING = 0.8


def site_variable(site: Site) -> dash.QueryVariable:
    """``$site``: the sites that have written WIP, defaulting to the site file's."""
    return (
        dash.QueryVariable("site")
        .label("Site")
        .datasource(DATASOURCE)
        .query(f'SHOW TAG VALUES FROM "{WIP}" WITH KEY = "site"')
        .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .current(model.VariableOption(selected=True, text=site.site, value=site.site))
    )


def line_variable(site: Site, multi: bool) -> dash.QueryVariable:
    """``$line``: the lines of the chosen site; several at once (with All) on the overview."""
    first = site.lines[0].id
    variable = (
        dash.QueryVariable("line")
        .label("Line")
        .datasource(DATASOURCE)
        .query(f'SHOW TAG VALUES FROM "{WIP}" WITH KEY = "line" WHERE "site" =~ /^$site$/')
        .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(multi)
    )
    if multi:
        return variable.all_value(".*").current(
            model.VariableOption(selected=True, text="All", value="$__all")
        )
    return variable.current(model.VariableOption(selected=True, text=first, value=first))


def cap_thresholds(cap: int | None) -> dash.ThresholdsConfig:
    """Green below ``CAP_WARNING`` x cap, amber up to the cap, red at or above it (site file ``cap``)."""
    steps = [model.Threshold(value=None, color="green")]
    if cap is not None:
        steps += [
            model.Threshold(value=round(cap * CAP_WARNING, 2), color="orange"),
            model.Threshold(value=float(cap), color="red"),
        ]
    return dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(steps)


def cap_override(cap: int | None) -> list[model.DynamicConfigValue]:
    """Override properties that colour one location's field against its cap."""
    return [model.DynamicConfigValue(id_val="thresholds", value=cap_thresholds(cap).build())]


def unit_is(unit: str) -> model.DynamicConfigValue:
    """Override property setting a field's unit (``s``, ``percentunit``, ``currencyEUR``...)."""
    return model.DynamicConfigValue(id_val="unit", value=unit)


def money_unit(site: Site) -> str:
    """Grafana's unit id for the site's currency (``currencyEUR``, ``currencyUSD``...)."""
    return f"currency{site.currency.upper()}"


def location_alias(line: Line, location_id: str) -> str:
    """The series name a location's bar carries: ``line/location`` (what overrides match on)."""
    return f"{line.id}/{location_id}"


def transformation(kind: str, options: dict[str, Any]) -> model.DataTransformerConfig:
    return model.DataTransformerConfig(id_val=kind, options=options)


def sort_desc(field: str, limit: int | None = None) -> list[model.DataTransformerConfig]:
    """Sort table rows by ``field``, largest first, optionally keeping the first ``limit``."""
    out = [transformation("sortBy", {"sort": [{"field": field, "desc": True}]})]
    if limit is not None:
        out.append(transformation("limit", {"limitField": limit}))
    return out


def grid(x: int, y: int, w: int, h: int) -> model.GridPos:
    return model.GridPos(x=x, y=y, w=w, h=h)
