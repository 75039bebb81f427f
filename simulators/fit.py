"""Fit a simulation model of each line to a recorded shift (docs/benchmarking.md, "What-if").

The site file gives the structure (locations, routes, machines, caps, unit values, shift calendar,
release policy); the recording gives the numbers:

- **process times** per station: a distribution (deterministic, exponential, gamma or lognormal, chosen
  by likelihood among those with the sample's mean and coefficient of variation). A single machine that
  reports part-tagged states gives exact process times, repairs (``mttr``; ``mtbf`` = working seconds per
  failure, operation-dependent as the simulator models it) and changeover times. Otherwise (several
  machines, or no state events) the station's dwell time per part is its *effective* process time,
  downtime and set-ups folded in; departures that may have waited for room downstream are left-censored
  and handled by a reverse Kaplan-Meier estimate.
- **deliveries**: replayed as recorded (times, sizes, SKUs), unless they follow a kanban rule (lots of one
  size arriving a fixed lead time after every ``lot_size`` releases), which is then fitted as such.
- **demand**: orders show one by one as shipments of parts that waited in finished goods. Whether there
  is stock depends on past orders only, so the orders seen over the stock periods are a Poisson sample of
  that time: rate = those orders / the stock time, scaled by the site file's demand profile shape if any.
  When finished goods hold stock at the end, the shipments count every order of the shift exactly and
  are used instead. Hours that differ from the shape (chi-square at 1 %) get an
  hourly profile; order gaps with a CV below 0.2 mean deterministic orders. docs/benchmarking.md has the
  reasoning and the limits.

A figure the recording cannot inform (a changeover when no SKU switch happened, breakdowns when the
station worked less than three mean times between failures without one) is taken from the site file and
said so. Otherwise the shift's own figures are used as they are, even when they rest on a few failures:
the model reproduces the shift, not the long run.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from wipwatch.simulators.line import Delivery
from wipwatch.simulators.observation import LineObservation, ShiftObservation, StationSamples
from wipwatch.site import Breakdowns, DemandStep, Line, Location, LocationKind, ProcessTime, Site, Sku, Supply

#: Below this coefficient of variation a process time is taken as deterministic.
DETERMINISTIC_CV = 0.02
#: Fewer samples than this and the site file's description is kept.
MIN_SAMPLES = 5
#: An hour in which finished goods held stock at least this long (seconds) counts its orders.
MIN_STOCK_S = 600.0
_Z99 = 2.326  # one-sided 99 % normal quantile (Wilson-Hilferty chi-square quantile)


@dataclass(frozen=True)
class StationFit:
    """What was fitted for one station, and from what."""

    station: str
    machines: int
    process_time: ProcessTime
    breakdowns: Breakdowns | None
    changeover: ProcessTime | None
    #: ``states`` (single machine, exact), ``dwell`` (effective time from dwell), ``site`` (no data)
    source: Literal["states", "dwell", "site"]
    samples: int
    censored: int = 0
    notes: tuple[str, ...] = ()

    @property
    def effective_s(self) -> float:
        """Mean effective process time on one machine: process / availability (set-ups not included)."""
        te = self.process_time.mean
        if self.breakdowns is not None:
            te *= (self.breakdowns.mtbf + self.breakdowns.mttr) / self.breakdowns.mtbf
        return te

    def as_dict(self) -> dict[str, Any]:
        return {
            "station": self.station,
            "machines": self.machines,
            "process_time": self.process_time.model_dump(exclude_none=True),
            "breakdowns": self.breakdowns.model_dump() if self.breakdowns else None,
            "changeover": self.changeover.model_dump(exclude_none=True) if self.changeover else None,
            "source": self.source,
            "samples": self.samples,
            "censored": self.censored,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class LineFit:
    """A fitted line: its stations, demand, supply and the figures the recording shows."""

    line: Line
    stations: tuple[StationFit, ...]
    deliveries: tuple[Delivery, ...] | None
    observed: dict[str, float]
    #: parts that left each station over the shift (visits per part = departures / shipped)
    departures: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        line = self.line
        return {
            "line": line.id,
            "demand_per_hour": line.demand_per_hour,
            "demand_dist": line.demand_dist,
            "demand_profile": [s.model_dump() for s in line.demand_profile] if line.demand_profile else None,
            "supply": line.supply.model_dump(exclude_defaults=True) if line.supply else None,
            "deliveries_replayed": len(self.deliveries) if self.deliveries is not None else None,
            "skus": [s.model_dump() for s in line.skus or []],
            "stations": [s.as_dict() for s in self.stations],
            "observed": self.observed,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class FittedModel:
    """The site with fitted numbers, the deliveries to replay per line, and the shift's own figures."""

    site: Site
    duration: float
    lines: dict[str, LineFit] = field(default_factory=dict)

    @property
    def deliveries(self) -> dict[str, Sequence[Delivery]]:
        return {k: v.deliveries for k, v in self.lines.items() if v.deliveries is not None}


# ---------------------------------------------------------------- distributions


def _moments(values: Sequence[float], weights: Sequence[float]) -> tuple[float, float]:
    total = sum(weights)
    mean = sum(v * w for v, w in zip(values, weights, strict=True)) / total
    var = sum(w * (v - mean) ** 2 for v, w in zip(values, weights, strict=True)) / total
    if len(values) > 1:
        var *= len(values) / (len(values) - 1)  # unbiased for equal weights
    return mean, math.sqrt(max(var, 0.0)) / mean if mean > 0 else 0.0


def _loglik(dist: str, mean: float, cv: float, values: Sequence[float], weights: Sequence[float]) -> float:
    total = 0.0
    for x, w in zip(values, weights, strict=True):
        x = max(x, 1e-9)
        if dist == "exponential":
            lp = -math.log(mean) - x / mean
        elif dist == "gamma":
            k = 1 / (cv * cv)
            theta = mean / k
            lp = (k - 1) * math.log(x) - x / theta - k * math.log(theta) - math.lgamma(k)
        else:
            s2 = math.log(1 + cv * cv)
            mu = math.log(mean) - s2 / 2
            lp = -math.log(x) - 0.5 * math.log(2 * math.pi * s2) - (math.log(x) - mu) ** 2 / (2 * s2)
        total += w * lp
    return total


def fit_distribution(values: Sequence[float], weights: Sequence[float] | None = None) -> ProcessTime:
    """A process-time distribution with the sample's mean and CV, its family chosen by AIC.

    Deterministic below ``DETERMINISTIC_CV``; otherwise exponential (one parameter), gamma or lognormal
    (two), each with the sample mean (and CV), the one with the lowest AIC wins.

    Raises:
        ValueError: no values, or a value below 0.
    """
    if not values:
        raise ValueError("values must not be empty")
    if min(values) < 0:
        raise ValueError(f"values must be >= 0, got {min(values)!r}")
    w = list(weights) if weights is not None else [1.0] * len(values)
    scale = len(values) / sum(w)  # likelihoods on the scale of the sample size
    w = [x * scale for x in w]
    mean, cv = _moments(values, w)
    if mean <= 0 or cv < DETERMINISTIC_CV or len(values) < 2:
        return ProcessTime(mean=max(mean, 1e-6), dist="deterministic")
    aic = {
        "exponential": 2 - 2 * _loglik("exponential", mean, 1.0, values, w),
        "gamma": 4 - 2 * _loglik("gamma", mean, cv, values, w),
        "lognormal": 4 - 2 * _loglik("lognormal", mean, cv, values, w),
    }
    best = min(aic, key=lambda d: aic[d])
    if best == "exponential":
        return ProcessTime(mean=mean, dist="exponential")
    return ProcessTime(mean=mean, dist=best, cv=cv)  # type: ignore[arg-type]


def left_censored_weights(values: Sequence[float], exact: Sequence[bool]) -> tuple[list[float], list[float]]:
    """Reverse Kaplan-Meier: point masses of a distribution observed as ``max(X, C)``.

    An exact value is X itself; a censored one says only ``X <= value`` (a part that may have waited for
    room downstream finished at or before it left). Mirroring time turns this into right censoring, where
    Kaplan-Meier applies. Mass the estimate cannot place goes to the smallest exact value.

    Returns:
        The exact values and their probability masses (summing to 1); empty if nothing is exact.
    """
    if len(values) != len(exact):
        raise ValueError("values and exact must have the same length")
    items = sorted(zip(values, exact, strict=True), key=lambda p: -p[0])
    at_risk, survival = len(items), 1.0
    points: list[float] = []
    masses: list[float] = []
    i = 0
    while i < len(items):
        value = items[i][0]
        j = i
        events = 0
        while j < len(items) and items[j][0] == value:
            events += items[j][1]
            j += 1
        if events:
            mass = survival * events / at_risk
            points.append(value)
            masses.append(mass)
            survival -= mass
        at_risk -= j - i
        i = j
    if points and survival > 1e-12:
        masses[-1] += survival
    return points, masses


# ---------------------------------------------------------------- stations


def _fit_station(loc: Location, samples: StationSamples) -> StationFit:
    assert loc.process_time is not None
    notes: list[str] = []
    if samples.machines == 1 and samples.part_states and len(samples.process) >= MIN_SAMPLES:
        process = fit_distribution(samples.process)
        working = samples.seconds["working"]
        repairs = samples.repairs
        breakdowns: Breakdowns | None = None
        if repairs and working > 0 and sum(repairs) > 0:
            breakdowns = Breakdowns(mtbf=working / len(repairs), mttr=sum(repairs) / len(repairs))
        elif loc.breakdowns is not None and working < 3 * loc.breakdowns.mtbf:
            breakdowns = loc.breakdowns
            notes.append(f"no failure in {working:.0f} s of work (< 3 mtbf): breakdowns from the site file")
        changeover: ProcessTime | None = None
        if samples.changeovers:
            changeover = fit_distribution(samples.changeovers)
        elif loc.changeover is not None and samples.sku_switches == 0:
            changeover = loc.changeover
            notes.append("no SKU switch seen: changeover from the site file")
        return StationFit(
            loc.id,
            loc.machines,
            process,
            breakdowns,
            changeover,
            "states",
            len(samples.process),
            0,
            tuple(notes),
        )
    exact = sum(samples.dwell_exact)
    if exact >= MIN_SAMPLES:
        return _fit_from_dwell(loc, samples, notes)
    notes.append(f"only {exact} usable samples: the site file's description is kept")
    return StationFit(
        loc.id, loc.machines, loc.process_time, loc.breakdowns, loc.changeover, "site", exact, 0, tuple(notes)
    )


def _fit_from_dwell(loc: Location, samples: StationSamples, notes: list[str]) -> StationFit:
    """Effective process time from dwell times; a changeover as the extra dwell after SKU switches.

    A part that arrives while another SKU is among the last ``machines`` parts may find a machine set up
    for that SKU: the mean extra dwell of those parts over the others is the changeover (when positive
    and seen at least ``MIN_SAMPLES`` times), and the others give the process time.
    """
    dwell, exact, switch = samples.dwell, samples.dwell_exact, samples.dwell_switch
    plain = [i for i in range(len(dwell)) if not switch[i]]
    after_switch = [dwell[i] for i in range(len(dwell)) if switch[i] and exact[i]]
    changeover: ProcessTime | None = None
    if len(after_switch) >= MIN_SAMPLES and sum(exact[i] for i in plain) >= MIN_SAMPLES:
        base_points, base_masses = left_censored_weights([dwell[i] for i in plain], [exact[i] for i in plain])
        base = sum(p * m for p, m in zip(base_points, base_masses, strict=True))
        extra = statistics.fmean(after_switch) - base
        if extra > 0.05 * base:
            family = loc.changeover if loc.changeover is not None else ProcessTime(mean=1.0)
            changeover = family.model_copy(update={"mean": extra})
            notes.append(
                f"changeover {extra:.0f} s: extra dwell of {len(after_switch)} parts after SKU switches"
                + (f" (shape of the site file's {family.dist})" if loc.changeover is not None else "")
            )
            dwell = [dwell[i] for i in plain]
            exact = [exact[i] for i in plain]
    points, masses = left_censored_weights(dwell, exact)
    process = fit_distribution(points, masses)
    notes.append("effective time from dwell: downtime folded into the process time")
    censored = len(exact) - sum(exact)
    return StationFit(
        loc.id, loc.machines, process, None, changeover, "dwell", len(dwell), censored, tuple(notes)
    )


# ---------------------------------------------------------------- demand and supply


def _chi2_quantile_99(df: int) -> float:
    """Wilson-Hilferty approximation of the 99 % quantile of chi-square with ``df`` degrees of freedom."""
    c = 2 / (9 * df)
    return df * (1 - c + _Z99 * math.sqrt(c)) ** 3


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _shape(line: Line, at: float) -> float:
    """The site file's demand factor at second ``at`` (1 without a profile): the shape the level scales."""
    factor = 1.0
    for step in line.demand_profile or []:
        if step.from_hour * 3600 <= at:
            factor = step.factor
    return factor


def _shape_integral(line: Line, lo: float, hi: float) -> float:
    """Integral of :func:`_shape` over ``[lo, hi]`` seconds."""
    edges = sorted(
        {lo, hi, *(s.from_hour * 3600 for s in line.demand_profile or [] if lo < s.from_hour * 3600 < hi)}
    )
    return sum(_shape(line, a) * (b - a) for a, b in itertools.pairwise(edges))


def _fit_demand(obs: LineObservation, notes: list[str]) -> dict[str, Any]:
    line, periods = obs.line, obs.stock_periods
    if not obs.stock_order_times:
        throughput = obs.shipped / obs.duration * 3600
        if obs.shipped and not periods and line.demand_per_hour is not None:
            # never any stock: orders always waited, the recording only says demand >= throughput
            if line.demand_per_hour >= throughput:
                notes.append(f"orders always waited: demand from the site file ({line.demand_per_hour:g}/h)")
                return {}
            notes.append("orders always waited and the site file's demand is below the throughput: none")
        return {"demand_per_hour": None, "demand_profile": None}
    gaps = obs.order_gaps
    dist = "exponential"
    if len(gaps) >= MIN_SAMPLES and _moments(gaps, [1.0] * len(gaps))[1] < 0.2:
        dist = "deterministic"
    # Orders show one by one only while finished goods hold stock (a part that waited leaves when one
    # comes). Whether there is stock depends on past orders only, so the orders seen over the stock
    # periods are a Poisson sample of that exposure (thinning): rate(t) = level x the site file's shape
    # (constant without a profile), the level by maximum likelihood. Counting the parts shipped on
    # arrival in backlog gaps would bias it low: a gap ends sooner when fewer orders came.
    stock_orders = sorted(obs.stock_order_times)
    in_stock = set(stock_orders)
    instant = [t for t in sorted(obs.ship_times) if t not in in_stock]
    if not periods:
        return {}
    tau = periods[-1][1]
    exposure_total = sum(_shape_integral(line, a, b) for a, b in periods)
    if exposure_total <= 0:  # the site file's profile says no orders while there was stock: no shape
        line = line.model_copy(update={"demand_profile": None})
        exposure_total = sum(b - a for a, b in periods)
    if obs.duration - tau <= MIN_STOCK_S:
        # Stock at the end (or nearly): no order waits then, so the shipments count every order of the
        # shift exactly, backlogs included. A last stock period that ends earlier would not do: it ends
        # when orders outrun production, so counting up to it favours the quiet stretches.
        served = sum(1 for t in obs.ship_times if t <= tau)
        level = served / _shape_integral(line, 0.0, tau)
    else:
        level = len(stock_orders) / exposure_total
    hours = math.ceil(tau / 3600)
    counts, expected, exposure = [0.0] * hours, [0.0] * hours, [0.0] * hours
    for h in range(hours):
        lo, hi = h * 3600.0, (h + 1) * 3600.0
        exposure[h] = sum(_overlap(lo, hi, a, b) for a, b in periods)
        expected[h] = level * sum(
            _shape_integral(line, max(lo, a), min(hi, b)) for a, b in periods if b > lo and a < hi
        )
        counts[h] = sum(1 for t in stock_orders if lo < t <= hi)
    usable = [h for h in range(hours) if exposure[h] >= MIN_STOCK_S and expected[h] > 0]
    chi2 = sum((counts[h] - expected[h]) ** 2 / expected[h] for h in usable)
    varies = dist == "exponential" and len(usable) >= 2 and chi2 > _chi2_quantile_99(len(usable) - 1)
    edges = {
        0.0,
        *(s.from_hour * 3600 for s in line.demand_profile or [] if s.from_hour * 3600 < obs.duration),
    }
    if varies:
        edges |= {h * 3600.0 for h in range(hours)}
        notes.append(f"orders differ from the expected shape by hour (chi-square {chi2:.1f}): hourly profile")
    after = obs.duration - tau
    floor = sum(1 for t in instant if t > tau) / after if after > 0 else 0.0
    if after >= MIN_STOCK_S:
        edges.add(tau)
        notes.append(f"orders waited from {tau / 3600:.2f} h on: demand at least {floor * 3600:.1f}/h then")
    steps: list[tuple[float, float]] = []
    for at in sorted(edges):
        h = int(at // 3600)
        rate = counts[h] / exposure[h] if varies and h in usable else level * _shape(line, at)
        if after >= MIN_STOCK_S and at >= tau:
            rate = max(rate, floor)
        if not steps or steps[-1][1] != rate:
            steps.append((at, rate))
    base = max(r for _, r in steps)
    if base <= 0:
        return {"demand_per_hour": None, "demand_profile": None}
    if len(steps) == 1:
        return {"demand_per_hour": base * 3600, "demand_dist": dist, "demand_profile": None}
    profile = [DemandStep(from_hour=at / 3600, factor=r / base) for at, r in steps]
    return {"demand_per_hour": base * 3600, "demand_dist": dist, "demand_profile": profile}


def _kanban_rule(lots: list[Delivery], releases: list[float]) -> Supply | None:
    """Kanban supply if every lot has one size L (simultaneous lots of one SKU merge: multiples of L
    count as several) and lot k after the initial ones came a constant lead time after release k x L."""
    size = min(n for _, n, _ in lots)
    if any(n % size for _, n, _ in lots):
        return None
    units = [t for t, n, _ in lots for _ in range(n // size)]
    initial = sum(1 for t in units if t <= 1e-6)
    if initial < 1 or len(units) - initial < MIN_SAMPLES:
        return None
    leads = []
    for j, t in enumerate(units[initial:], start=1):
        if j * size > len(releases):
            return None
        leads.append(t - releases[j * size - 1])
    if min(leads) < -1e-6 or max(leads) - min(leads) > max(1.0, 0.05 * max(leads)):
        return None
    return Supply(kanbans=initial, lot_size=size, lead_time=max(sum(leads) / len(leads), 0.0))


def _fit_supply(obs: LineObservation, notes: list[str]) -> tuple[Supply | None, tuple[Delivery, ...] | None]:
    lots = [(float(t), int(n), str(s)) for t, n, s in obs.lots]
    if not lots:
        notes.append("no delivery recorded: the site file's supply is kept")
        return None, None
    kanban = _kanban_rule(lots, obs.releases)
    if kanban is not None:
        notes.append(
            f"deliveries follow a kanban rule: {kanban.kanbans} cards of {kanban.lot_size}, "
            f"{kanban.lead_time:.0f} s lead time"
        )
        return kanban, None
    sizes = [n for _, n, _ in lots]
    modal = max(set(sizes), key=sizes.count)
    notes.append(f"{len(lots)} deliveries replayed as recorded")
    return Supply(at=[t for t, _, _ in lots], lot_size=modal), tuple(lots)


def _fit_skus(obs: LineObservation) -> list[Sku] | None:
    parts: dict[str, int] = {}
    for _, n, sku in obs.lots:
        parts[str(sku)] = parts.get(str(sku), 0) + int(n)
    if not parts:
        return None
    return [Sku(id=sku, share=n / sum(parts.values())) for sku, n in sorted(parts.items())]


# ---------------------------------------------------------------- the model


def fit_line(obs: LineObservation) -> LineFit:
    """Fit one line of a recorded shift (see the module docstring)."""
    line = obs.line
    notes: list[str] = []
    if obs.started_with_wip:
        notes.append(
            f"{obs.started_with_wip} parts were on the line before the start: the model starts empty"
        )
    stations = tuple(
        _fit_station(loc, obs.stations[loc.id]) for loc in line.locations if loc.kind is LocationKind.STATION
    )
    by_id = {s.station: s for s in stations}
    locations = [
        loc.model_copy(
            update={
                "process_time": by_id[loc.id].process_time,
                "breakdowns": by_id[loc.id].breakdowns,
                "changeover": by_id[loc.id].changeover,
            }
        )
        if loc.id in by_id
        else loc
        for loc in line.locations
    ]
    update: dict[str, Any] = {"locations": locations, **_fit_demand(obs, notes)}
    supply, deliveries = _fit_supply(obs, notes)
    if supply is not None:
        update["supply"] = supply
    skus = _fit_skus(obs)
    if skus is not None:
        update["skus"] = skus
    departures = {k: v.departures for k, v in obs.stations.items()}
    return LineFit(
        line.model_copy(update=update), stations, deliveries, obs.summary(), departures, tuple(notes)
    )


def fit_shift(shift: ShiftObservation) -> FittedModel:
    """Fit every line of ``shift``; the returned site runs with ``simulate_site(..., deliveries=...)``."""
    lines = {line.id: fit_line(shift.lines[line.id]) for line in shift.site.lines}
    site = shift.site.model_copy(update={"lines": [lines[line.id].line for line in shift.site.lines]})
    return FittedModel(site, shift.duration, lines)
