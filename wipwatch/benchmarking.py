"""Internal benchmarking of a line (Factory Physics, Hopp & Spearman, ch. 7; docs/benchmarking.md).

A line is summed up by two numbers: the bottleneck rate ``r_b`` (parts per second of the station with the
highest long-run utilisation) and the raw process time ``T0`` (seconds a part spends in process when it
never waits). Their product is the critical WIP ``W0 = r_b x T0``. At a WIP level ``w`` (parts):

=====================  ==============================  ===============================
case                   throughput TH(w)                cycle time CT(w)
=====================  ==============================  ===============================
best                   ``min(w / T0, r_b)``            ``max(T0, w / r_b)``
practical worst (PWC)  ``w / (W0 + w - 1) x r_b``      ``T0 + (w - 1) / r_b``
worst                  ``1 / T0``                      ``w x T0``
=====================  ==============================  ===============================

A line above the PWC throughput at its WIP is in the "good" region, below it in the "bad" one.
``T0`` and ``r_b`` come from per-station effective process times ``te`` (including downtime and set-ups)
and machine counts: ``r_i = m_i / (v_i te_i)`` with ``v_i`` the visits per part (1 on a serial line,
a share on parallel alternatives), ``r_b = min r_i`` and ``T0 = sum v_i te_i``. ``site_stations`` gives
each station's ``te`` and visits from the site file, ``station_capacity`` replaces ``te`` by an observed one
where the station clock (or the dwell time) suffices.

Units: seconds and parts per second throughout; callers convert to hours for display.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from wipwatch.site import Line, LocationKind

__all__ = [
    "LineBenchmark",
    "OperatingPoint",
    "StationCapacity",
    "StationObservation",
    "Verdict",
    "best_case",
    "critical_wip",
    "line_benchmark",
    "nominal_te_s",
    "observed_te_s",
    "practical_worst_case",
    "pwc_wip_for_throughput",
    "site_stations",
    "station_capacity",
    "verdict",
    "worst_case",
]


def _positive(name: str, value: float) -> None:
    if not value > 0 or math.isinf(value):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def _wip(w: float) -> None:
    if not w >= 0 or math.isinf(w):
        raise ValueError(f"w must be >= 0 and finite, got {w!r}")


def critical_wip(r_b: float, t0: float) -> float:
    """``W0 = r_b x T0``: the WIP at which a line without variability reaches full throughput."""
    _positive("r_b", r_b)
    _positive("t0", t0)
    return r_b * t0


def best_case(w: float, r_b: float, t0: float) -> tuple[float, float]:
    """Best-case ``(TH, CT)`` at WIP ``w``: ``(min(w/T0, r_b), max(T0, w/r_b))``.

    With ``w = 0`` the throughput is 0 and the cycle time ``T0`` (an empty line still takes T0).
    """
    _wip(w)
    _positive("r_b", r_b)
    _positive("t0", t0)
    return min(w / t0, r_b), max(t0, w / r_b)


def practical_worst_case(w: float, r_b: float, t0: float) -> tuple[float, float]:
    """Practical-worst-case ``(TH, CT)`` at WIP ``w >= 1``: ``(w/(W0+w-1) r_b, T0 + (w-1)/r_b)``.

    The PWC is a balanced line of single exponential machines with the same ``r_b`` and ``T0``
    (Hopp & Spearman's maximum-randomness case).
    """
    _positive("r_b", r_b)
    _positive("t0", t0)
    if not w >= 1 or math.isinf(w):
        raise ValueError(f"w must be >= 1 for the practical worst case, got {w!r}")
    w0 = r_b * t0
    return w / (w0 + w - 1) * r_b, t0 + (w - 1) / r_b


def worst_case(w: float, r_b: float, t0: float) -> tuple[float, float]:
    """Worst-case ``(TH, CT)`` at WIP ``w``: ``(1/T0, w x T0)`` (every part waits for all the others).

    ``r_b`` is not used by the formulas; it is checked so all three cases take the same arguments.
    """
    _wip(w)
    _positive("r_b", r_b)
    _positive("t0", t0)
    return 1 / t0, w * t0


def pwc_wip_for_throughput(th: float, r_b: float, t0: float) -> float:
    """The WIP at which the practical worst case reaches throughput ``th``: ``th (W0 - 1) / (r_b - th)``.

    Solves ``th = w / (W0 + w - 1) x r_b`` for ``w``; never below 1 (the PWC curve starts at w = 1).
    Returns ``inf`` when ``th >= r_b`` (no finite WIP gets there).
    """
    _positive("r_b", r_b)
    _positive("t0", t0)
    if not th >= 0 or math.isinf(th):
        raise ValueError(f"th must be >= 0 and finite, got {th!r}")
    if th >= r_b:
        return math.inf
    return max(1.0, th * (r_b * t0 - 1) / (r_b - th))


@dataclass(frozen=True, slots=True)
class StationCapacity:
    """One station as the benchmark sees it.

    Attributes:
        station: location id.
        machines: identical machines in parallel (``m``).
        te_s: effective process time of one part on one machine, seconds (downtime and set-ups included).
        visits: visits per part leaving the line (1 on a serial route; a share on parallel alternatives).
    """

    station: str
    machines: int
    te_s: float
    visits: float = 1.0

    def __post_init__(self) -> None:
        if self.machines < 1:
            raise ValueError(f"machines of {self.station!r} must be >= 1, got {self.machines!r}")
        _positive(f"te_s of {self.station!r}", self.te_s)
        _positive(f"visits of {self.station!r}", self.visits)

    @property
    def rate(self) -> float:
        """Parts per second of the line this station can carry: ``m / (v x te)``."""
        return self.machines / (self.visits * self.te_s)


@dataclass(frozen=True, slots=True)
class LineBenchmark:
    """``r_b`` (parts/s), ``T0`` (s), ``W0`` (parts) and which station is the bottleneck."""

    r_b: float
    t0: float
    w0: float
    bottleneck: str


def line_benchmark(stations: Sequence[StationCapacity]) -> LineBenchmark:
    """``r_b = min m_i/(v_i te_i)``, ``T0 = sum v_i te_i``, ``W0 = r_b T0``; ties go to the first station."""
    if not stations:
        raise ValueError("stations must not be empty: a line without stations has no benchmark")
    bottleneck = min(stations, key=lambda s: s.rate)
    t0 = sum(s.visits * s.te_s for s in stations)
    return LineBenchmark(bottleneck.rate, t0, bottleneck.rate * t0, bottleneck.station)


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """Where a line runs: time-average WIP (parts), throughput (parts/s), mean lead time (s)."""

    wip: float
    throughput: float
    lead_time_s: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """The operating point against the benchmark curves, and what a lower WIP would give.

    Attributes:
        region: ``good`` (throughput above the PWC at this WIP), ``bad`` (below it) or ``idle``
            (nothing shipped).
        best_th, pwc_th, worst_th: throughputs of the three cases at the line's WIP (parts/s).
        best_ct, pwc_ct, worst_ct: cycle times of the three cases at the line's WIP (s).
        target_share: share of today's throughput the suggestion keeps (e.g. 0.95).
        wip_needed: whole parts of WIP at which the PWC reaches ``target_share`` of today's throughput
            (``None`` when no finite WIP does, e.g. today's throughput is at or above ``r_b``).
        lead_time_at_wip_needed_s: the PWC cycle time at ``wip_needed``.
        text: one plain-language sentence.
    """

    region: str
    best_th: float
    pwc_th: float
    worst_th: float
    best_ct: float
    pwc_ct: float
    worst_ct: float
    target_share: float
    wip_needed: int | None
    lead_time_at_wip_needed_s: float | None
    text: str


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def verdict(
    point: OperatingPoint, bench: LineBenchmark, target_share: float = 0.95, demand: float | None = None
) -> Verdict:
    """Compare ``point`` with the curves at its WIP and find the WIP that keeps ``target_share`` of output.

    The suggested WIP is read off the practical-worst-case curve, so it is conservative: a line with less
    variability than the PWC needs less. Curves at a WIP below 1 use ``w = 1`` for the PWC. With customer
    ``demand`` (parts/s) and a throughput within 5 % of it, the text says that orders set the output.
    """
    if not 0 < target_share <= 1:
        raise ValueError(f"target_share must be in (0, 1], got {target_share!r}")
    _wip(point.wip)
    if not point.throughput >= 0 or not point.lead_time_s >= 0:
        raise ValueError(f"throughput and lead_time_s must be >= 0, got {point!r}")
    r_b, t0 = bench.r_b, bench.t0
    best_th, best_ct = best_case(point.wip, r_b, t0)
    pwc_th, pwc_ct = practical_worst_case(max(point.wip, 1.0), r_b, t0)
    worst_th, worst_ct = worst_case(point.wip, r_b, t0)
    per_hour = 3600.0
    if point.throughput == 0:
        text = f"ships nothing at {point.wip:.0f} parts of WIP (r_b {r_b * per_hour:.1f}/h, T0 {_hours(t0)})"
        return Verdict(
            "idle", best_th, pwc_th, worst_th, best_ct, pwc_ct, worst_ct, target_share, None, None, text
        )
    region = "good" if point.throughput >= pwc_th else "bad"
    target = target_share * point.throughput
    w_needed = pwc_wip_for_throughput(target, r_b, t0)
    share = f"{target_share * 100:.0f} %"
    head = (
        f"runs at {point.wip:.0f} parts of WIP and {point.throughput * per_hour:.1f} parts/h "
        f"({'better' if region == 'good' else 'worse'} than the practical worst case, "
        f"{pwc_th * per_hour:.1f}/h at that WIP; W0 = {bench.w0:.1f})"
    )
    if math.isinf(w_needed):
        text = (
            f"{head}; today's output is at the estimated bottleneck rate, so no lower WIP keeps {share} of it"
        )
        return Verdict(
            region, best_th, pwc_th, worst_th, best_ct, pwc_ct, worst_ct, target_share, None, None, text
        )
    wip_needed = math.ceil(w_needed - 1e-9)
    _, ct_needed = practical_worst_case(wip_needed, r_b, t0)
    if wip_needed >= point.wip:
        text = f"{head}; it needs its WIP: even the practical worst case would need {wip_needed} parts"
    else:
        text = (
            f"runs at {point.wip:.0f} parts of WIP where {wip_needed} would give {share} of the same output; "
            f"lead time could fall from {_hours(point.lead_time_s)} to {_hours(ct_needed)} "
            f"({region} region: {point.throughput * per_hour:.1f}/h vs practical worst case "
            f"{pwc_th * per_hour:.1f}/h at that WIP; r_b {r_b * per_hour:.1f}/h, T0 {_hours(t0)}, "
            f"W0 {bench.w0:.1f})"
        )
    if demand is not None and point.throughput >= 0.95 * demand:
        text += f"; orders ({demand * per_hour:.1f}/h) set the output, not the line"
    return Verdict(
        region,
        best_th,
        pwc_th,
        worst_th,
        best_ct,
        pwc_ct,
        worst_ct,
        target_share,
        wip_needed,
        ct_needed,
        text,
    )


def nominal_te_s(
    process_s: float,
    mtbf_s: float | None = None,
    mttr_s: float | None = None,
    setup_s: float = 0.0,
    parts_per_setup: float = math.inf,
) -> float:
    """Effective process time from a station's description: ``t0 / A + ts / Ns``.

    ``A = mtbf / (mtbf + mttr)`` is the availability under operation-dependent failures (1 without), ``ts``
    the mean set-up time and ``Ns`` the mean number of parts between set-ups (Hopp & Spearman, ch. 8).
    """
    _positive("process_s", process_s)
    availability = 1.0
    if mtbf_s is not None or mttr_s is not None:
        if mtbf_s is None or mttr_s is None:
            raise ValueError("mtbf_s and mttr_s come together (both or neither)")
        _positive("mtbf_s", mtbf_s)
        _positive("mttr_s", mttr_s)
        availability = mtbf_s / (mtbf_s + mttr_s)
    if setup_s < 0:
        raise ValueError(f"setup_s must be >= 0, got {setup_s!r}")
    if not parts_per_setup > 0:
        raise ValueError(f"parts_per_setup must be > 0, got {parts_per_setup!r}")
    return process_s / availability + setup_s / parts_per_setup


def observed_te_s(working_s: float, changeover_s: float, down_s: float, departures: int) -> float | None:
    """Effective process time of a single-machine station from its clock: occupied seconds per departure.

    ``(working + changeover + down) / departures``: downtime and set-ups happen with a part on the machine,
    blocked and starved time does not count. None before the first departure.
    """
    for name, value in (("working_s", working_s), ("changeover_s", changeover_s), ("down_s", down_s)):
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")
    if departures < 0:
        raise ValueError(f"departures must be >= 0, got {departures!r}")
    if departures == 0:
        return None
    return (working_s + changeover_s + down_s) / departures


@dataclass(frozen=True, slots=True)
class StationObservation:
    """What the live metrics (or a recording) say about one station, beside its site-file description.

    Attributes:
        station: location id.
        machines: from the site file.
        nominal_te_s: effective process time from the site file (:func:`nominal_te_s`).
        nominal_visits: visits per part from the routes (parallel alternatives share evenly).
        departures: parts that left the station over the observed time.
        working_s, changeover_s, down_s: the station clock's seconds in those states.
        mean_dwell_s: mean time a part held the station (a machine), blocked time included.
    """

    station: str
    machines: int
    nominal_te_s: float
    nominal_visits: float = 1.0
    departures: int = 0
    working_s: float = 0.0
    changeover_s: float = 0.0
    down_s: float = 0.0
    mean_dwell_s: float | None = None


#: Fewer departures than this and a station's observed figures are not used.
MIN_DEPARTURES = 10


def station_capacity(obs: StationObservation) -> tuple[StationCapacity, str]:
    """The station's effective time and visits from observations where they suffice, else the site file.

    Single machine: occupied seconds per departure (:func:`observed_te_s`), exact. Several machines: the
    station clock shows a station working while any machine works, so it cannot give one machine's time;
    the mean dwell is used instead (exact while the station is never blocked, an upper bound otherwise).
    Visits come from the routes (:func:`site_stations`). Returns the capacity and its source
    (``observed``, ``dwell`` or ``site``).
    """
    te: float | None = None
    source = "site"
    if obs.departures >= MIN_DEPARTURES:
        if obs.machines == 1:
            te = observed_te_s(obs.working_s, obs.changeover_s, obs.down_s, obs.departures)
            source = "observed"
        elif obs.mean_dwell_s:
            te, source = obs.mean_dwell_s, "dwell"
    if not te:
        te, source = obs.nominal_te_s, "site"
    visits = obs.nominal_visits
    return StationCapacity(obs.station, obs.machines, te, visits), source


def site_stations(line: Line) -> list[StationObservation]:
    """The stations of ``line`` as the site file describes them, with nothing observed yet.

    ``te = t0 / A + ts / Ns`` (:func:`nominal_te_s`) with ``Ns`` the parts between SKU switches: each
    supplier lot is one SKU drawn by share, so a lot of L parts switches with probability ``1 - sum p^2``
    and ``Ns = L / (1 - sum p^2)`` (no switches with one SKU). Visits: the flow from the first location
    split over each location's ``next`` alternatives in proportion to their capacity ``m / te`` (a part
    joins the one with most room, so alternatives share the load as one pooled station; non-stations
    count as equal), so every alternative shows the pooled rate.
    """
    shares = [s.share for s in line.skus or []]
    switch = 1 - sum((s / sum(shares)) ** 2 for s in shares) if len(shares) > 1 else 0.0
    lot = line.supply.lot_size if line.supply is not None else 1
    parts_per_setup = lot / switch if switch > 0 else math.inf
    te: dict[str, float] = {}
    for loc in line.locations:
        if loc.kind is LocationKind.STATION and loc.process_time is not None:
            failures = loc.breakdowns
            te[loc.id] = nominal_te_s(
                loc.process_time.mean,
                failures.mtbf if failures else None,
                failures.mttr if failures else None,
                loc.changeover.mean if loc.changeover else 0.0,
                parts_per_setup,
            )
    weight = {loc.id: loc.machines / te[loc.id] if loc.id in te else 1.0 for loc in line.locations}
    flow = {loc.id: 0.0 for loc in line.locations}
    flow[line.locations[0].id] = 1.0
    for loc_id in _topological(line):
        successors = line.successors(loc_id)
        total = sum(weight[t] for t in successors)
        for target in successors:
            flow[target] += flow[loc_id] * weight[target] / total
    return [
        StationObservation(loc.id, loc.machines, te[loc.id], flow[loc.id] or 1.0)
        for loc in line.locations
        if loc.id in te
    ]


def _topological(line: Line) -> list[str]:
    seen: set[str] = set()
    order: list[str] = []

    def visit(loc_id: str) -> None:
        if loc_id in seen:
            return
        seen.add(loc_id)
        for target in line.successors(loc_id):
            visit(target)
        order.append(loc_id)

    for loc in line.locations:
        visit(loc.id)
    return order[::-1]
