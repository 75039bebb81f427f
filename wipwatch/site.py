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

from wipwatch.errors import SiteFileError

#: Identifiers appear in MQTT topics and InfluxDB tags: no '/', '+', '#', spaces or commas.
Ident = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]

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
    #: Where parts go next; defaults to the following location in the list.
    next: list[Ident] | None = None

    @model_validator(mode="after")
    def _station_fields(self) -> Location:
        if self.kind is LocationKind.STATION and self.process_time is None:
            raise ValueError(f"station {self.id!r} needs process_time")
        if self.kind is not LocationKind.STATION and self.process_time is not None:
            raise ValueError(f"{self.kind.value} {self.id!r} cannot have process_time (stations only)")
        return self

    @property
    def label(self) -> str:
        return self.name or self.id


class Supply(_Model):
    """Raw material arriving from the supplier into the line's first location."""

    interval: float = Field(gt=0, description="mean seconds between deliveries")
    lot_size: int = Field(default=1, ge=1)
    dist: Literal["deterministic", "exponential"] = "exponential"


class Line(_Model):
    """One value stream: locations in flow order from receipt to shipment."""

    id: Ident
    name: str | None = None
    #: Customer demand in parts per hour; takt time is 3600 / demand.
    demand_per_hour: float | None = Field(default=None, gt=0)
    supply: Supply | None = None
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
        return self

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


class Site(_Model):
    """A plant: one or more lines."""

    site: Ident
    name: str | None = None
    currency: str = "EUR"
    lines: list[Line] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_lines(self) -> Site:
        if self.site in RESERVED_SITE_IDS:
            raise ValueError(f"site id {self.site!r} is reserved for wipwatch's own topics")
        ids = [line.id for line in self.lines]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"line ids appear twice: {', '.join(duplicates)}")
        return self

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
            problems.append(f"{_format_loc(loc)}: {msg}")
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
