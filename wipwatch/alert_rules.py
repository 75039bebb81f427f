"""Alert rules: the ``alerts:`` section of the site file, the rules derived from it, and alert identities.

The site file declares rules (``AlertRule``); ``expand_rules`` turns them, together with the defaults the
site already implies (caps, demand, stations), into one ``RuleInstance`` per rule and scope (line,
location). The processors evaluate the instances (``processors/metrics/alerts.py``), the delivery and the
dashboards name them with the same identity, topic and labels defined here. Schema and semantics:
``docs/alerts.md``.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Final, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, model_validator

from wipwatch.identifiers import IDENT_PATTERN

if TYPE_CHECKING:
    from wipwatch.site import Line, Site

#: Version of the alert payload on MQTT (``AlertMessage.v``), like the events' schema version.
ALERT_SCHEMA_VERSION: Final = 1
#: Location tag / topic level of an alert about a whole line.
LINE_SCOPE: Final = "_line"

_RuleId = Annotated[str, Field(pattern=IDENT_PATTERN)]
_LabelName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]


class Condition(StrEnum):
    """What a rule watches; ``docs/alerts.md`` gives each one's value, unit and default threshold."""

    WIP_OVER_CAP = "wip_over_cap"
    QUEUE_GROWTH = "queue_growth"
    OLDEST_PART_AGE = "oldest_part_age"
    UNDER_PRODUCTION = "under_production"
    OVER_PRODUCTION = "over_production"
    STATION_DOWN = "station_down"
    STATION_BLOCKED = "station_blocked"
    NEW_BOTTLENECK = "new_bottleneck"
    LINE_SILENT = "line_silent"
    DATA_QUALITY = "data_quality"


#: Conditions judged per location (the others per line).
PER_LOCATION: Final = frozenset(
    {
        Condition.WIP_OVER_CAP,
        Condition.QUEUE_GROWTH,
        Condition.OLDEST_PART_AGE,
        Condition.STATION_DOWN,
        Condition.STATION_BLOCKED,
        Condition.NEW_BOTTLENECK,
    }
)
#: Conditions that fire when the value goes *below* the threshold (the others fire above it).
FIRES_BELOW: Final = frozenset({Condition.UNDER_PRODUCTION})
#: Conditions that are true or false (value 1 or 0); their duration is the rule's ``for``.
BOOLEAN: Final = frozenset({Condition.STATION_DOWN, Condition.STATION_BLOCKED, Condition.NEW_BOTTLENECK})
#: Conditions that need a threshold in the rule (no default can be derived from the site).
NEEDS_THRESHOLD: Final = frozenset({Condition.QUEUE_GROWTH, Condition.OLDEST_PART_AGE})
_DEFAULT_THRESHOLD: Final = {
    Condition.UNDER_PRODUCTION: 0.9,
    Condition.OVER_PRODUCTION: 0.1,
    Condition.LINE_SILENT: 300.0,
    Condition.DATA_QUALITY: 0.01,
}
#: Relative width of the default hysteresis band: clear at 90 % of an upper threshold, 110 % of a lower one.
CLEAR_BAND: Final = 0.1


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scope(_Model):
    """Where a rule applies: a line and/or a location (a station is a location); absent = all of them."""

    line: _RuleId | None = None
    location: _RuleId | None = None


class AlertRule(_Model):
    """One rule of the site file's ``alerts.rules`` list."""

    id: _RuleId
    condition: Condition
    #: ``site`` (every line and location), or a mapping with ``line`` and/or ``location``.
    scope: Literal["site"] | Scope = "site"
    #: Value that fires the alert (unit per condition, docs/alerts.md); defaults where the site implies one.
    threshold: float | None = None
    #: Value back across which a firing alert resolves (hysteresis); default 10 % inside the threshold.
    clear: float | None = None
    #: Seconds the condition must hold before the alert fires.
    for_: float = Field(default=0.0, ge=0, alias="for")
    #: Seconds the clear condition must hold before a firing alert resolves.
    clear_for: float = Field(default=0.0, ge=0)
    #: Seconds of history for ``data_quality`` (findings per event in the window).
    window: float = Field(default=900.0, gt=0)
    #: ``new_bottleneck``: the station that is expected to be the bottleneck (default: the slowest).
    expected: _RuleId | None = None
    severity: Severity = Severity.WARNING
    labels: dict[_LabelName, Annotated[str, Field(max_length=256)]] = Field(default_factory=dict)
    summary: Annotated[str, Field(max_length=512)] | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _consistent(self) -> AlertRule:
        if self.condition in NEEDS_THRESHOLD and self.threshold is None:
            raise ValueError(f"condition {self.condition.value} needs a threshold")
        if self.condition in BOOLEAN and (self.threshold is not None or self.clear is not None):
            raise ValueError(
                f"condition {self.condition.value} is true or false: give its duration as 'for', "
                "no threshold or clear"
            )
        if self.expected is not None and self.condition is not Condition.NEW_BOTTLENECK:
            raise ValueError("expected only applies to condition new_bottleneck")
        if self.threshold is not None and self.clear is not None:
            below = self.condition in FIRES_BELOW
            if (self.clear < self.threshold) if below else (self.clear > self.threshold):
                side = "at or above" if below else "at or below"
                raise ValueError(f"clear {self.clear} must be {side} threshold {self.threshold}")
        reserved = {"alertname", "site", "line", "location", "rule", "severity", "identity"}
        clash = sorted(reserved & set(self.labels))
        if clash:
            raise ValueError(f"labels {', '.join(clash)} are set by wipwatch; choose other names")
        return self

    @property
    def scope_filter(self) -> Scope:
        return self.scope if isinstance(self.scope, Scope) else Scope()


class Alerts(_Model):
    """The site file's ``alerts`` section."""

    #: Derive the default rules from caps, demand and stations (docs/alerts.md); a rule of the same id wins.
    defaults: bool = True
    #: Event-time seconds between evaluations (ticks at multiples of it, the same in every replay).
    evaluate_every: float = Field(default=10.0, gt=0, le=3600)
    rules: list[AlertRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Alerts:
        ids = [rule.id for rule in self.rules]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"rule ids appear twice: {', '.join(twice)}")
        return self


def default_rules() -> list[AlertRule]:
    """The rules every site gets unless ``alerts.defaults`` is false (docs/alerts.md, "Defaults")."""
    rules = [
        {"id": "wip-over-cap", "condition": Condition.WIP_OVER_CAP, "for": 300.0},
        {"id": "under-production", "condition": Condition.UNDER_PRODUCTION, "for": 900.0},
        {"id": "over-production", "condition": Condition.OVER_PRODUCTION, "for": 900.0},
        {"id": "station-down", "condition": Condition.STATION_DOWN, "for": 600.0, "severity": "critical"},
        {"id": "new-bottleneck", "condition": Condition.NEW_BOTTLENECK, "for": 1800.0, "severity": "info"},
        {"id": "line-silent", "condition": Condition.LINE_SILENT, "severity": "critical"},
        {"id": "data-quality", "condition": Condition.DATA_QUALITY, "for": 300.0},
    ]
    return [AlertRule.model_validate(rule) for rule in rules]


class RuleInstance(msgspec.Struct, frozen=True, kw_only=True):
    """One rule applied to one scope: what the processors evaluate and the delivery names."""

    rule: str
    condition: str
    site: str
    line: str
    #: The location, or ``LINE_SCOPE`` for a line-level alert.
    location: str
    identity: str
    threshold: float
    clear: float
    for_s: float
    clear_for_s: float
    severity: str
    labels: dict[str, str] = {}
    window_s: float = 900.0
    summary: str = ""
    #: ``new_bottleneck``: the expected bottleneck station.
    expected: str = ""

    @property
    def fires_below(self) -> bool:
        return self.condition in FIRES_BELOW

    @property
    def topic(self) -> str:
        return alert_topic(self.site, self.line, self.rule, self.location)


def alert_identity(rule: str, site: str, line: str, location: str) -> str:
    """Stable identity of an alert: a hash of the rule id and its scope (the same in every run)."""
    return hashlib.sha256(f"{rule}\x00{site}\x00{line}\x00{location}".encode()).hexdigest()[:16]


def alert_topic(site: str, line: str, rule: str, location: str) -> str:
    """``wipwatch/alerts/<site>/<line>/<rule>/<location>``: the retained state of one alert.

    A line alert's location level is ``_line``: every alert topic has six levels, so the five-level event
    filter ``wipwatch/+/+/+/+`` (ingest, ``wipwatch record``) never matches one.
    """
    return f"wipwatch/alerts/{site}/{line}/{rule}/{location}"


def _default_clear(threshold: float, below: bool) -> float:
    return threshold * (1 + CLEAR_BAND) if below else threshold * (1 - CLEAR_BAND)


def expected_bottleneck(line: Line) -> str | None:
    """The station with the longest mean process time per machine (the designed constraint)."""
    stations = [loc for loc in line.locations if loc.process_time is not None]
    if not stations:
        return None
    slowest = max(stations, key=lambda loc: loc.process_time.mean / loc.machines if loc.process_time else 0)
    return slowest.id


def _summary(rule: AlertRule, line: Line, location: str, threshold: float) -> str:
    where = line.id if location == LINE_SCOPE else f"{line.id}/{location}"
    texts = {
        Condition.WIP_OVER_CAP: f"WIP at {where} above {threshold:g} parts",
        Condition.QUEUE_GROWTH: f"queue at {where} growing faster than {threshold:g} parts/h",
        Condition.OLDEST_PART_AGE: f"oldest part at {where} older than {threshold:g} s",
        Condition.UNDER_PRODUCTION: f"{where} producing below {threshold:g} x demand",
        Condition.OVER_PRODUCTION: f"finished goods of {where} growing faster than {threshold:g} x demand",
        Condition.STATION_DOWN: f"station {where} down",
        Condition.STATION_BLOCKED: f"station {where} blocked",
        Condition.NEW_BOTTLENECK: f"station {where} is the bottleneck",
        Condition.LINE_SILENT: f"no events from {where} for {threshold:g} s",
        Condition.DATA_QUALITY: f"data-quality findings on {where} above {threshold:.1%} of events",
    }
    return rule.summary or texts[rule.condition]


def _instances(rule: AlertRule, site: Site, line: Line) -> list[RuleInstance]:
    cond = rule.condition
    scope = rule.scope_filter
    if scope.line is not None and scope.line != line.id:
        return []
    stations = {loc.id for loc in line.locations if loc.process_time is not None}
    targets: list[tuple[str, float | None]] = []
    if cond in PER_LOCATION:
        for loc in line.locations:
            if scope.location is not None and scope.location != loc.id:
                continue
            if cond is Condition.WIP_OVER_CAP:
                cap = rule.threshold if rule.threshold is not None else loc.cap
                if cap is not None:
                    targets.append((loc.id, float(cap)))
            elif cond in (Condition.STATION_DOWN, Condition.STATION_BLOCKED):
                if loc.id in stations:
                    targets.append((loc.id, 0.5))
            elif cond is Condition.NEW_BOTTLENECK:
                expected = rule.expected or expected_bottleneck(line)
                if loc.id in stations and loc.id != expected and len(stations) > 1:
                    targets.append((loc.id, 0.5))
            else:
                targets.append((loc.id, rule.threshold))
    else:
        if scope.location is not None:
            return []
        if cond in (Condition.UNDER_PRODUCTION, Condition.OVER_PRODUCTION):
            if line.demand_per_hour is None:
                return []
            if cond is Condition.OVER_PRODUCTION and line.locations[-1].kind.value != "store":
                return []
        targets.append(
            (LINE_SCOPE, rule.threshold if rule.threshold is not None else _DEFAULT_THRESHOLD[cond])
        )
    out = []
    for location, threshold in targets:
        assert threshold is not None  # NEEDS_THRESHOLD is checked by the model
        below = cond in FIRES_BELOW
        if cond in BOOLEAN:
            clear = 0.5
        elif rule.clear is not None:
            clear = rule.clear
        else:
            clear = _default_clear(threshold, below)
        out.append(
            RuleInstance(
                rule=rule.id,
                condition=cond.value,
                site=site.site,
                line=line.id,
                location=location,
                identity=alert_identity(rule.id, site.site, line.id, location),
                threshold=threshold,
                clear=clear,
                for_s=rule.for_,
                clear_for_s=rule.clear_for,
                severity=rule.severity.value,
                labels=dict(rule.labels),
                window_s=rule.window,
                summary=_summary(rule, line, location, threshold),
                expected=(rule.expected or expected_bottleneck(line) or "")
                if cond is Condition.NEW_BOTTLENECK
                else "",
            )
        )
    return out


def site_rules(site: Site) -> list[AlertRule]:
    """The site's effective rules: the defaults (unless disabled), replaced by declared rules of that id."""
    declared = {rule.id: rule for rule in site.alerts.rules}
    rules = [r for r in default_rules() if r.id not in declared] if site.alerts.defaults else []
    return rules + list(declared.values())


def expand_rules(site: Site, line_id: str | None = None) -> list[RuleInstance]:
    """Every rule instance of ``site`` (or of one line), in rule order then flow order."""
    out: list[RuleInstance] = []
    for rule in site_rules(site):
        for line in site.lines:
            if line_id is None or line.id == line_id:
                out += _instances(rule, site, line)
    return out


class AlertMessage(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """The retained MQTT payload of a firing alert (JSON; schema in docs/alerts.md).

    Times are event time (ISO 8601, UTC) except for ``line_silent``, which is judged on the wall clock.
    ``seq`` counts the alert's transitions: a consumer ignores a message whose ``seq`` it has seen.
    """

    v: int
    identity: str
    rule: str
    condition: str
    site: str
    line: str
    location: str
    severity: str
    state: Literal["firing", "resolved"]
    seq: int
    since: str
    at: str
    value: float
    threshold: float
    summary: str
    labels: dict[str, str] = {}
    ended: str | None = None
