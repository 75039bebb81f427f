"""What-if runs on a fitted shift: alternatives simulated over seeds, with confidence intervals.

A :class:`Variant` is a site (the fitted one, changed) plus the deliveries to replay. Every variant runs
with the same seeds, so the lines see the same n-th process time at each station and the same customer
orders (the simulator's common random numbers): differences between variants are not seed noise.
Figures per line: throughput, time-average WIP (all of it, and released: beyond the first location),
mean lead time (receipt -> shipment), mean cycle time (release -> end of the loop) and money tied up
(time average of WIP x unit value), each as the mean over seeds with a 95 % Student-t interval.
docs/benchmarking.md describes the alternatives and the suggested cap.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from wipwatch.benchmarking import StationCapacity, line_benchmark
from wipwatch.simulators.fit import FittedModel
from wipwatch.simulators.line import Delivery, simulate_site
from wipwatch.simulators.truth import GroundTruth
from wipwatch.site import Line, LocationKind, Release, Scenario, Site, Supply

FIGURES = (
    "throughput_per_hour",
    "avg_wip",
    "released_wip",
    "mean_lead_time_s",
    "mean_cycle_time_s",
    "money_tied_up",
)
#: Two-sided 95 % Student-t quantiles for 1..30 degrees of freedom; 1.96 beyond.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)  # fmt: skip
_START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Estimate:
    """Mean over seeds and its 95 % confidence interval (Student t; a single seed gives a zero-width one)."""

    mean: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Estimate:
        if not values:
            raise ValueError("values must not be empty")
        mean = statistics.fmean(values)
        if len(values) < 2:
            return cls(mean, mean, mean, len(values))
        df = len(values) - 1
        half = (_T95[df - 1] if df <= len(_T95) else 1.96) * statistics.stdev(values) / math.sqrt(len(values))
        return cls(mean, mean - half, mean + half, len(values))

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}


@dataclass(frozen=True)
class Variant:
    """An alternative to simulate: a site and the deliveries each line replays (none: its ``supply``)."""

    name: str
    description: str
    site: Site
    deliveries: Mapping[str, Sequence[Delivery]]


def line_figures(truth: GroundTruth, line: Line) -> dict[str, float]:
    """The figures of :data:`FIGURES` for one line of a simulation run."""
    summary = truth.line_summary(line.id)
    now = truth.duration
    avg = {loc.id: truth.locations[f"{line.id}/{loc.id}"].average(now) for loc in line.locations}
    return {
        "throughput_per_hour": summary["throughput_per_hour"],
        "avg_wip": summary["avg_wip"],
        "released_wip": summary["avg_wip"] - avg[line.locations[0].id],
        "mean_lead_time_s": summary["mean_lead_time_s"],
        "mean_cycle_time_s": summary["mean_cycle_time_s"],
        "money_tied_up": sum(avg[loc.id] * loc.unit_value for loc in line.locations),
    }


def _discard(_event: object) -> None:
    return None


def run_variant(variant: Variant, seeds: Sequence[int], duration: float) -> dict[str, dict[str, Estimate]]:
    """Simulate ``variant`` once per seed for ``duration`` seconds; per line and figure an estimate."""
    if not seeds:
        raise ValueError("seeds must not be empty")
    runs: dict[str, dict[str, list[float]]] = {
        line.id: {f: [] for f in FIGURES} for line in variant.site.lines
    }
    for seed in seeds:
        truth = simulate_site(
            variant.site, _discard, seed, duration, start=_START, deliveries=variant.deliveries
        )
        for line in variant.site.lines:
            for figure, value in line_figures(truth, line).items():
                runs[line.id][figure].append(value)
    return {line: {f: Estimate.of(v) for f, v in figures.items()} for line, figures in runs.items()}


# ---------------------------------------------------------------- alternatives


def as_run(model: FittedModel) -> Variant:
    """The shift as it ran: the fitted model, deliveries replayed."""
    return Variant("as-run", "the fitted model of the recorded shift", model.site, model.deliveries)


def _derive(
    base: Variant,
    name: str,
    description: str,
    change: Callable[[Line], Line | None],
) -> Variant:
    """``base`` with ``change`` applied to each line (None: unchanged); a new supply drops the replay."""
    lines: list[Line] = []
    deliveries = dict(base.deliveries)
    for line in base.site.lines:
        changed = change(line)
        if changed is None:
            lines.append(line)
            continue
        if changed.supply != line.supply:
            deliveries.pop(line.id, None)
        lines.append(changed)
    return Variant(name, description, base.site.model_copy(update={"lines": lines}), deliveries)


def with_scenario(base: Variant, name: str, scenario: Scenario) -> Variant:
    """A site-file scenario (release and/or supply, for all or the listed lines) on the fitted model."""

    def change(line: Line) -> Line | None:
        if scenario.lines is not None and line.id not in scenario.lines:
            return None
        update: dict[str, Any] = {}
        if scenario.release is not None:
            update["release"] = scenario.release
        if scenario.supply is not None:
            update["supply"] = scenario.supply
        return line.model_copy(update=update)

    return _derive(base, name, scenario.description or f"scenario {name}", change)


def conwip(base: Variant, levels: Mapping[str, int]) -> Variant:
    """CONWIP with the given card count per line (lines not listed unchanged)."""
    text = ", ".join(f"{line} {w}" for line, w in levels.items())

    def change(line: Line) -> Line | None:
        w = levels.get(line.id)
        return None if w is None else line.model_copy(update={"release": Release(policy="conwip", wip_cap=w)})

    return _derive(base, "conwip " + text, f"CONWIP cards: {text}", change)


def kanban_caps(base: Variant, caps: Mapping[str, int]) -> Variant:
    """Kanban with every buffer of a listed line capped at the given number (other caps kept)."""
    text = ", ".join(f"{line} {k}" for line, k in caps.items())

    def change(line: Line) -> Line | None:
        k = caps.get(line.id)
        if k is None:
            return None
        locations = [
            loc.model_copy(update={"cap": k}) if loc.kind is LocationKind.BUFFER else loc
            for loc in line.locations
        ]
        return line.model_copy(update={"locations": locations, "release": Release(policy="kanban")})

    return _derive(base, "kanban caps " + text, f"kanban, every buffer capped at {text}", change)


def bottleneck(model: FittedModel, line: Line) -> str:
    """The fitted line's bottleneck: the highest load (visits x effective time / machines)."""
    fit = model.lines[line.id]
    shipped = max(fit.observed.get("shipped", 0.0), 1.0)
    caps = []
    for station in fit.stations:
        departures = fit.departures.get(station.station, 0)
        visits = departures / shipped if departures else 1.0
        caps.append(
            StationCapacity(station.station, station.machines, station.effective_s, max(visits, 1e-6))
        )
    return str(line_benchmark(caps).bottleneck)


def faster_bottleneck(base: Variant, model: FittedModel, speedup: float) -> Variant:
    """Each line's bottleneck with its process time cut by ``speedup`` (0.2: 20 % less time per part)."""
    if not 0 < speedup < 1:
        raise ValueError(f"speedup must be in (0, 1), got {speedup!r}")
    names: list[str] = []

    def change(line: Line) -> Line | None:
        target = bottleneck(model, line)
        names.append(f"{line.id}/{target}")
        locations = []
        for loc in line.locations:
            if loc.id == target and loc.process_time is not None:
                faster = loc.process_time.model_copy(update={"mean": loc.process_time.mean * (1 - speedup)})
                loc = loc.model_copy(update={"process_time": faster})
            locations.append(loc)
        return line.model_copy(update={"locations": locations})

    variant = _derive(base, f"bottleneck -{speedup * 100:.0f} %", "", change)
    text = f"{', '.join(names)}: {speedup * 100:.0f} % less process time per part"
    return Variant(variant.name, text, variant.site, variant.deliveries)


def _split(deliveries: Sequence[Delivery], divisor: int, duration: float) -> list[Delivery]:
    out: list[Delivery] = []
    for i, (at, lot, sku) in enumerate(deliveries):
        following = deliveries[i + 1][0] if i + 1 < len(deliveries) else duration
        parts = min(divisor, lot)
        gap = max(following - at, 0.0) / parts
        base, extra = divmod(lot, parts)
        for k in range(parts):
            out.append((at + k * gap, base + (1 if k < extra else 0), sku))
    return out


def smaller_lots(base: Variant, divisor: int, duration: float) -> Variant:
    """Supplier lots ``divisor`` times smaller and as many times more often (same material per hour).

    A replayed delivery is split into ``divisor`` lots spread evenly until the next delivery; kanban supply
    gets lots ``divisor`` times smaller and ``divisor`` times the cards; interval supply, lots and
    intervals divided.
    """
    if divisor < 2:
        raise ValueError(f"divisor must be >= 2, got {divisor!r}")
    deliveries = {line: _split(trace, divisor, duration) for line, trace in base.deliveries.items()}

    def supply(line: Line) -> Supply | None:
        s = line.supply
        if line.id in deliveries or s is None or s.lot_size < 2:
            return None
        lot = max(1, s.lot_size // divisor)
        if s.kanbans is not None:
            return s.model_copy(update={"lot_size": lot, "kanbans": s.kanbans * divisor})
        if s.interval is not None:
            return s.model_copy(update={"lot_size": lot, "interval": s.interval * lot / s.lot_size})
        return None

    lines = []
    for line in base.site.lines:
        new = supply(line)
        lines.append(line if new is None else line.model_copy(update={"supply": new}))
    site = base.site.model_copy(update={"lines": lines})
    return Variant(
        f"lots /{divisor}",
        f"supplier lots {divisor} times smaller, {divisor} times as often",
        site,
        deliveries,
    )


# ---------------------------------------------------------------- suggested cap


@dataclass(frozen=True)
class Suggestion:
    """The smallest WIP limit of one kind that keeps a line's throughput within ``tolerance`` of today's."""

    line: str
    kind: str  # "conwip" or "kanban"
    level: int | None
    tolerance: float
    today: dict[str, Estimate]
    with_cap: dict[str, Estimate] | None
    evaluations: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "kind": self.kind,
            "level": self.level,
            "tolerance": self.tolerance,
            "today": {f: e.as_dict() for f, e in self.today.items()},
            "with_cap": {f: e.as_dict() for f, e in self.with_cap.items()} if self.with_cap else None,
            "evaluations": self.evaluations,
        }


def suggest_cap(
    base: Variant,
    line_id: str,
    kind: str,
    seeds: Sequence[int],
    duration: float,
    tolerance: float = 0.05,
    today: dict[str, Estimate] | None = None,
    upper: int | None = None,
) -> Suggestion:
    """Binary search for the smallest CONWIP level (``kind="conwip"``) or uniform buffer cap (``"kanban"``).

    Throughput grows with the limit (in expectation; with common random numbers nearly always run by run),
    so the search looks for the smallest level whose mean throughput over ``seeds`` is at least
    ``(1 - tolerance)`` x today's. Only line ``line_id`` is simulated (lines do not interact).
    """
    if kind not in ("conwip", "kanban"):
        raise ValueError(f"kind must be conwip or kanban, got {kind!r}")
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance!r}")
    line = base.site.line(line_id)
    single = Variant(
        base.name,
        base.description,
        base.site.model_copy(update={"lines": [line]}),
        {k: v for k, v in base.deliveries.items() if k == line_id},
    )
    today = today or run_variant(single, seeds, duration)[line_id]
    goal = (1 - tolerance) * today["throughput_per_hour"].mean
    evaluations = 0
    cache: dict[int, dict[str, Estimate]] = {}

    def at(level: int) -> dict[str, Estimate]:
        nonlocal evaluations
        if level not in cache:
            evaluations += 1
            variant = (
                conwip(single, {line_id: level})
                if kind == "conwip"
                else kanban_caps(single, {line_id: level})
            )
            cache[level] = run_variant(variant, seeds, duration)[line_id]
        return cache[level]

    hi = upper or max(2, math.ceil(today["released_wip"].mean) + 1)
    for _ in range(4):
        if at(hi)["throughput_per_hour"].mean >= goal:
            break
        hi *= 2
    else:
        return Suggestion(line_id, kind, None, tolerance, today, None, evaluations)
    lo = 1
    while lo < hi:
        mid = (lo + hi) // 2
        if at(mid)["throughput_per_hour"].mean >= goal:
            hi = mid
        else:
            lo = mid + 1
    return Suggestion(line_id, kind, hi, tolerance, today, at(hi), evaluations)
