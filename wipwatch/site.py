"""The site file: one YAML document that describes a site's value streams.

It is the single source of truth for the simulators, the processors, the dashboards and the alert rules.
The schema is documented in ``docs/site-file.md``.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wipwatch.alert_rules import Alerts
from wipwatch.errors import SiteFileError
from wipwatch.identifiers import IDENT_PATTERN

Ident = Annotated[str, Field(pattern=IDENT_PATTERN)]

#: Site ids that would collide with wipwatch's own topics.
RESERVED_SITE_IDS = frozenset({"alerts"})


class LocationKind(StrEnum):
    """What a location is in the value stream."""

    STORE = "store"
    BUFFER = "buffer"
    STATION = "station"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProcessTime(_Model):
    """A processing-time distribution in seconds: deterministic, exponential, gamma or lognormal."""

    mean: float = Field(gt=0)
    dist: Literal["deterministic", "exponential", "gamma", "lognormal"] = "exponential"
    cv: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _cv_fits_dist(self) -> ProcessTime:
        if self.dist in ("gamma", "lognormal") and not self.cv:
            raise ValueError(f"dist {self.dist} needs a positive cv (coefficient of variation)")
        return self


class Breakdowns(_Model):
    """Operation-dependent failures: exponential busy time between failures and exponential repair time."""

    mtbf: float = Field(gt=0, description="mean working seconds between failures")
    mttr: float = Field(gt=0, description="mean seconds to repair")


class Location(_Model):
    """A place where parts wait or are worked on."""

    id: Ident
    kind: LocationKind
    name: str | None = None
    #: Kanban / CONWIP limit on parts held here; alerts and dashboards compare WIP against it.
    cap: int | None = Field(default=None, ge=1)
    #: Money tied up per part waiting here.
    unit_value: float = Field(default=0.0, ge=0)
    #: Holding cost per part-hour spent here.
    holding_cost_per_hour: float = Field(default=0.0, ge=0)
    #: Stations only: how long one part takes.
    process_time: ProcessTime | None = None
    #: Stations only: identical machines working in parallel, each on one part.
    machines: int = Field(default=1, ge=1)
    #: Stations only: random breakdowns of each machine while it works.
    breakdowns: Breakdowns | None = None
    #: Stations only: set-up time when a machine switches to a part of another SKU.
    changeover: ProcessTime | None = None
    #: Where parts go next; defaults to the following location in the list.
    next: list[Ident] | None = None

    @model_validator(mode="after")
    def _station_fields(self) -> Location:
        if self.kind is LocationKind.STATION and self.process_time is None:
            raise ValueError(f"station {self.id!r} needs process_time")
        if self.kind is not LocationKind.STATION:
            for name in ("process_time", "breakdowns", "changeover"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{self.kind.value} {self.id!r} cannot have {name} (stations only)")
            if self.machines != 1:
                raise ValueError(f"{self.kind.value} {self.id!r} cannot have machines (stations only)")
        return self

    @property
    def label(self) -> str:
        return self.name or self.id


class Supply(_Model):
    """Raw material arriving from the supplier into the line's first location.

    Exactly one of three modes: ``interval`` (a lot every interval seconds, mean of ``dist``), ``at``
    (a lot at each listed second after the start: a delivery schedule) or ``kanbans`` (just-in-time pull:
    ``kanbans`` lots are on hand at the start, and each time ``lot_size`` parts have left the first
    location the supplier delivers a new lot ``lead_time`` seconds later).
    """

    interval: float | None = Field(default=None, gt=0, description="mean seconds between deliveries")
    at: list[Annotated[float, Field(ge=0)]] | None = None
    kanbans: int | None = Field(default=None, ge=1)
    lead_time: float = Field(default=0.0, ge=0)
    lot_size: int = Field(default=1, ge=1)
    dist: Literal["deterministic", "exponential"] = "exponential"

    @model_validator(mode="after")
    def _one_mode(self) -> Supply:
        modes = [name for name in ("interval", "at", "kanbans") if getattr(self, name) is not None]
        if len(modes) != 1:
            raise ValueError(f"give exactly one of interval, at, kanbans (got {', '.join(modes) or 'none'})")
        return self


class Sku(_Model):
    """A product variant; each supplier lot is one SKU, drawn by ``share``."""

    id: Annotated[str, Field(min_length=1, max_length=64)]
    share: float = Field(default=1.0, gt=0)


class DemandStep(_Model):
    """From ``from_hour`` after the start on, customer orders arrive at ``factor`` times the line's demand."""

    from_hour: float = Field(ge=0)
    factor: float = Field(ge=0)


class Release(_Model):
    """How material is released into the line and which WIP limits hold.

    ``push``: every location works whenever it has material, no limits (mass production).
    ``kanban``: each location's ``cap`` is enforced; a full location blocks the one before it.
    ``conwip``: at most ``wip_cap`` parts between release from the first location and the end of the
    last station; the last location's ``cap`` (a finished-goods supermarket) is enforced too.
    """

    policy: Literal["push", "kanban", "conwip"] = "kanban"
    wip_cap: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _cap_fits_policy(self) -> Release:
        if self.policy == "conwip" and self.wip_cap is None:
            raise ValueError("policy conwip needs wip_cap (the line-wide WIP limit)")
        if self.policy != "conwip" and self.wip_cap is not None:
            raise ValueError(f"wip_cap only applies to policy conwip, not {self.policy}")
        return self


class Line(_Model):
    """One value stream: locations in flow order from receipt to shipment."""

    id: Ident
    name: str | None = None
    #: Customer demand in parts per hour; takt time is 3600 / demand.
    demand_per_hour: float | None = Field(default=None, gt=0)
    #: Order arrivals: exponential (Poisson orders) or deterministic (every takt).
    demand_dist: Literal["deterministic", "exponential"] = "exponential"
    #: Demand over the shift as steps of a factor on ``demand_per_hour``.
    demand_profile: list[DemandStep] | None = None
    supply: Supply | None = None
    skus: list[Sku] | None = None
    release: Release = Release()
    locations: list[Location] = Field(min_length=1)

    @model_validator(mode="after")
    def _routes(self) -> Line:
        ids = [loc.id for loc in self.locations]
        seen: set[str] = set()
        for loc_id in ids:
            if loc_id in seen:
                raise ValueError(f"location id {loc_id!r} appears twice")
            seen.add(loc_id)
        for loc in self.locations:
            for target in loc.next or []:
                if target not in seen:
                    raise ValueError(f"location {loc.id!r} routes to unknown location {target!r}")
                if target == loc.id:
                    raise ValueError(f"location {loc.id!r} routes to itself")
        cycle = self._route_cycle()
        if cycle:
            raise ValueError(f"route loops back: {' -> '.join(cycle)} (rework loops are not supported)")
        if self.demand_profile is not None:
            if not self.demand_profile or self.demand_profile[0].from_hour != 0:
                raise ValueError("demand_profile must start with a step at from_hour 0")
            hours = [step.from_hour for step in self.demand_profile]
            if hours != sorted(set(hours)):
                raise ValueError("demand_profile steps must have increasing from_hour")
            if self.demand_per_hour is None:
                raise ValueError("demand_profile needs demand_per_hour")
        if self.skus is not None and len({sku.id for sku in self.skus}) != len(self.skus):
            raise ValueError("sku ids appear twice")
        return self

    def _route_cycle(self) -> list[str]:
        """A route that comes back to where it started, as a list of ids; empty when there is none."""
        done: set[str] = set()
        path: list[str] = []

        def visit(loc_id: str) -> list[str]:
            if loc_id in path:
                return [*path[path.index(loc_id) :], loc_id]
            if loc_id in done:
                return []
            path.append(loc_id)
            for target in self.successors(loc_id):
                found = visit(target)
                if found:
                    return found
            path.pop()
            done.add(loc_id)
            return []

        for loc in self.locations:
            found = visit(loc.id)
            if found:
                return found
        return []

    @property
    def takt_seconds(self) -> float | None:
        return 3600.0 / self.demand_per_hour if self.demand_per_hour else None

    def location(self, location_id: str) -> Location:
        for loc in self.locations:
            if loc.id == location_id:
                return loc
        raise KeyError(location_id)

    def successors(self, location_id: str) -> list[str]:
        """Where parts leaving ``location_id`` go; empty for the last location (shipped to the customer)."""
        loc = self.location(location_id)
        if loc.next is not None:
            return list(loc.next)
        index = self.locations.index(loc)
        return [self.locations[index + 1].id] if index + 1 < len(self.locations) else []


class Break(_Model):
    """A pause in the shift: no station starts work from ``at_hour`` for ``minutes``."""

    at_hour: float = Field(ge=0)
    minutes: float = Field(gt=0)


class Shift(_Model):
    """The shift calendar, relative to the simulation start and repeated every ``repeat_hours``.

    Stations start work only inside the shift and outside its breaks; a part already in work is finished.
    Supply deliveries and customer orders follow their own schedules.
    """

    hours: float = Field(gt=0)
    repeat_hours: float = Field(default=24.0, gt=0)
    breaks: list[Break] = Field(default_factory=list)

    @model_validator(mode="after")
    def _fits(self) -> Shift:
        if self.hours > self.repeat_hours:
            raise ValueError(f"hours {self.hours} is longer than repeat_hours {self.repeat_hours}")
        end = 0.0
        for pause in sorted(self.breaks, key=lambda b: b.at_hour):
            if pause.at_hour < end:
                raise ValueError(f"break at hour {pause.at_hour} overlaps the break before it")
            end = pause.at_hour + pause.minutes / 60
            if end > self.hours:
                raise ValueError(f"break at hour {pause.at_hour} ends after the shift ({self.hours} h)")
        return self


class Scenario(_Model):
    """A named variant of the site: replaces ``release`` and/or ``supply`` of every line (or ``lines``)."""

    description: str | None = None
    release: Release | None = None
    supply: Supply | None = None
    lines: list[Ident] | None = None


class Site(_Model):
    """A plant: one or more lines."""

    site: Ident
    name: str | None = None
    currency: str = "EUR"
    shift: Shift | None = None
    scenarios: dict[Ident, Scenario] = Field(default_factory=dict)
    lines: list[Line] = Field(min_length=1)
    #: Alert rules (docs/alerts.md); defaults derived from caps, demand and stations apply without it.
    alerts: Alerts = Alerts()

    @model_validator(mode="after")
    def _unique_lines(self) -> Site:
        if self.site in RESERVED_SITE_IDS:
            raise ValueError(f"site id {self.site!r} is reserved for wipwatch's own topics")
        ids = [line.id for line in self.lines]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"line ids appear twice: {', '.join(duplicates)}")
        for name, scenario in self.scenarios.items():
            unknown = sorted(set(scenario.lines or []) - set(ids))
            if unknown:
                raise ValueError(f"scenario {name!r} names unknown lines: {', '.join(unknown)}")
        for index, rule in enumerate(self.alerts.rules):
            scope = rule.scope_filter
            where = f"alerts.rules[{index}].scope"
            if scope.line is not None and scope.line not in ids:
                raise ValueError(f"{where}.line: unknown line {scope.line!r} (lines: {', '.join(ids)})")
            lines = [line for line in self.lines if scope.line in (None, line.id)]
            if scope.location is not None and not any(
                loc.id == scope.location for line in lines for loc in line.locations
            ):
                raise ValueError(f"{where}.location: unknown location {scope.location!r}")
            if rule.expected is not None and not any(
                loc.id == rule.expected and loc.kind is LocationKind.STATION
                for line in lines
                for loc in line.locations
            ):
                raise ValueError(f"alerts.rules[{index}].expected: {rule.expected!r} is not a station")
        return self

    def with_scenario(self, name: str, source: str = "<site>") -> Site:
        """This site with scenario ``name`` applied (its release and supply replace the lines' own).

        Raises:
            SiteFileError: no scenario of that name; the message lists the ones there are.
        """
        scenario = self.scenarios.get(name)
        if scenario is None:
            known = ", ".join(sorted(self.scenarios)) or "none defined"
            raise SiteFileError(source, [f"scenarios.{name}: no such scenario (known: {known})"])
        changes: dict[str, Any] = {}
        if scenario.release is not None:
            changes["release"] = scenario.release
        if scenario.supply is not None:
            changes["supply"] = scenario.supply
        lines = [
            line.model_copy(update=changes) if scenario.lines is None or line.id in scenario.lines else line
            for line in self.lines
        ]
        return self.model_copy(update={"lines": lines})

    def line(self, line_id: str) -> Line:
        for line in self.lines:
            if line.id == line_id:
                return line
        raise KeyError(line_id)

    def iter_locations(self) -> Iterator[tuple[Line, Location]]:
        for line in self.lines:
            for loc in line.locations:
                yield line, loc

    def has_location(self, line_id: str, location_id: str) -> bool:
        return (line_id, location_id) in self._location_index

    @property
    def _location_index(self) -> frozenset[tuple[str, str]]:
        index: frozenset[tuple[str, str]] | None = self.__dict__.get("_index_cache")
        if index is None:
            index = frozenset((line.id, loc.id) for line, loc in self.iter_locations())
            object.__setattr__(self, "_index_cache", index)  # frozen model: cache once
        return index


def _format_loc(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def parse_site(data: Any, source: str = "<site>") -> Site:
    """Validate an already-parsed site document.

    Raises:
        SiteFileError: names ``source``, the field path and what is wrong with it.
    """
    try:
        return Site.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-after")))
            msg = err["msg"].removeprefix("Value error, ")
            # site-level checks of the alert rules name their own field path (alerts.rules[i]...)
            problems.append(msg if not loc and msg.startswith("alerts.") else f"{_format_loc(loc)}: {msg}")
        raise SiteFileError(source, problems) from None


def load_site(path: str | Path) -> Site:
    """Read and validate a site file.

    Raises:
        SiteFileError: the file is missing, is not YAML, or does not describe a valid site.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SiteFileError(str(path), [f"cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SiteFileError(str(path), [f"{where}not valid YAML ({getattr(exc, 'problem', exc)})"]) from None
    if not isinstance(data, dict):
        raise SiteFileError(str(path), ["expected a mapping with 'site' and 'lines' at the top level"])
    return parse_site(data, str(path))
