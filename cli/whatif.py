"""``wipwatch benchmark`` and ``wipwatch whatif``: where improvement pays (docs/benchmarking.md).

The CLI layer's glue between the live metrics or a recording (``recorder/``), the benchmark formulas
(``wipwatch/benchmarking.py``) and the what-if runs (``simulators/fit.py``, ``simulators/whatif.py``);
``main.py`` registers the two commands.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.table import Table

from wipwatch.benchmarking import (
    LineBenchmark,
    OperatingPoint,
    StationObservation,
    best_case,
    line_benchmark,
    practical_worst_case,
    site_stations,
    station_capacity,
    verdict,
    worst_case,
)
from wipwatch.cli.options import SiteOpt, console, err_console, parse_duration
from wipwatch.errors import RecordingError, SiteFileError
from wipwatch.events import Event
from wipwatch.measurements import FLOW_TIME, LEAD_TIME, STATION, THROUGHPUT
from wipwatch.settings import Settings, load_settings
from wipwatch.site import Scenario, Site, load_site

if TYPE_CHECKING:
    from wipwatch.simulators.observation import ShiftObservation
    from wipwatch.simulators.whatif import Estimate

StartOpt = Annotated[
    str | None, typer.Option(help="shift start, ISO 8601 with timezone (default: the first event)")
]
DurationOpt = Annotated[
    str | None, typer.Option(help="time observed from the start, e.g. 8h (default: up to the last event)")
]


def _start(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"--start {text!r} is not ISO 8601, e.g. 2026-11-25T06:00:00+00:00"
        ) from None
    if moment.tzinfo is None:
        raise typer.BadParameter("--start needs a timezone, e.g. 2026-11-25T06:00:00+00:00")
    return moment


def _seconds(text: str | None) -> float | None:
    if text is None:
        return None
    seconds = parse_duration(text)
    if seconds <= 0:
        raise typer.BadParameter("--duration must be longer than 0")
    return seconds


def read_events(path: Path, site: Site) -> tuple[list[Event], int, list[str]]:
    """The site's v1 events of a recording in file order (each event id once), how many messages were not
    (``simulators.observation.site_events``), and the parts of the file the reader could not read (line
    number and reason; a damaged file still yields every readable message).

    Raises:
        RecordingError: unreadable file, unknown format, or no event of the site at all.
    """
    from wipwatch.recorder.formats import read_recording
    from wipwatch.simulators.observation import site_events

    reader = read_recording(path)
    events, ignored = site_events((message.payload for message in reader), site)
    unreadable = [str(skip) for skip in reader.skipped]
    if not events:
        raise RecordingError(
            f"{path}: no event of site {site.site!r} with a location of the site file "
            f"({ignored} messages ignored, {len(unreadable)} lines unreadable); is it the right --site?"
        )
    return events, ignored, unreadable


def read_shift(path: Path, site: Site, start: str | None, duration: str | None) -> ShiftObservation:
    """A recording's events of ``site`` replayed through per-line counters; skipped lines reported."""
    from wipwatch.simulators.observation import observe

    if not path.is_file():
        raise RecordingError(f"{path}: no such recording")
    events, ignored, unreadable = read_events(path, site)
    if ignored:
        err_console.print(f"{path}: {ignored} messages are not events of site {site.site} (ignored)")
    if unreadable:
        err_console.print(
            f"{path}: {len(unreadable)} lines unreadable, the figures miss their events "
            f"(first: {unreadable[0]})",
            markup=False,
            highlight=False,
        )
    return observe(events, site, _start(start), _seconds(duration), ignored)


# ---------------------------------------------------------------- benchmark


def _line_inputs_from_shift(
    shift: ShiftObservation,
) -> dict[str, tuple[list[StationObservation], dict[str, Any]]]:
    out = {}
    for line in shift.site.lines:
        obs = shift.lines[line.id]
        summary = obs.summary()
        stations = []
        for nominal in site_stations(line):
            seen = obs.stations[nominal.station]
            stations.append(
                replace(
                    nominal,
                    departures=seen.departures,
                    working_s=seen.seconds["working"],
                    changeover_s=seen.seconds["changeover"],
                    down_s=seen.seconds["down"],
                    mean_dwell_s=seen.mean_dwell_s,
                )
            )
        point = {
            "wip": summary["avg_wip"],
            "throughput_per_hour": summary["throughput_per_hour"],
            "lead_time_s": summary["mean_lead_time_s"],
        }
        out[line.id] = (stations, point)
    return out


def _line_inputs_from_influx(
    settings: Settings, site: Site
) -> dict[str, tuple[list[StationObservation], dict[str, Any]]]:
    """The latest station clocks, departures, dwell means and line figures of ``site`` from InfluxDB."""
    from wipwatch.influx import InfluxTarget, query, rows

    target = InfluxTarget.from_settings(settings)
    where = f"WHERE \"site\" = '{site.site}'"

    def latest(
        sql: str, keys: tuple[str, ...] = ("line", "location")
    ) -> dict[tuple[str, ...], dict[str, Any]]:
        return {tuple(r[k] for k in keys): r for r in rows(query(target, sql))}

    by_loc = 'GROUP BY "line", "location"'
    clocks = latest(
        'SELECT last("working_s") AS "working_s", last("changeover_s") AS "changeover_s", '
        f'last("down_s") AS "down_s" FROM "{STATION}" {where} {by_loc}'
    )
    totals = latest(f'SELECT last("total") AS "total" FROM "{THROUGHPUT}" {where} {by_loc}')
    dwell = latest(f'SELECT last("mean_s") AS "mean_s" FROM "{FLOW_TIME}" {where} {by_loc}')
    lead = latest(
        'SELECT last("avg_wip") AS "avg_wip", last("littles_law_s") AS "littles_law_s", '
        f'last("measured_s") AS "measured_s" FROM "{LEAD_TIME}" {where} GROUP BY "line"',
        ("line",),
    )
    out = {}
    for line in site.lines:
        stations = []
        for nominal in site_stations(line):
            key = (line.id, nominal.station)
            clock = clocks.get(key, {})
            stations.append(
                replace(
                    nominal,
                    departures=int((totals.get(key) or {}).get("total") or 0),
                    working_s=float(clock.get("working_s") or 0.0),
                    changeover_s=float(clock.get("changeover_s") or 0.0),
                    down_s=float(clock.get("down_s") or 0.0),
                    mean_dwell_s=(dwell.get(key) or {}).get("mean_s"),
                )
            )
        figures = lead.get((line.id,), {})
        wip, littles = figures.get("avg_wip"), figures.get("littles_law_s")
        point = {
            "wip": wip,
            "throughput_per_hour": wip / littles * 3600 if wip is not None and littles else None,
            "lead_time_s": figures.get("measured_s"),
        }
        out[line.id] = (stations, point)
    return out


def _curve_points(bench: LineBenchmark, wip: float | None) -> list[dict[str, float]]:
    top = max(3 * bench.w0, (wip or 0) * 1.1, 2.0)
    levels = sorted(
        {1, *range(1, math.ceil(3 * bench.w0) + 1), *(round(top * k / 20) for k in range(1, 21))} - {0}
    )
    points = []
    for w in levels:
        best = best_case(w, bench.r_b, bench.t0)
        pwc = practical_worst_case(w, bench.r_b, bench.t0)
        worst = worst_case(w, bench.r_b, bench.t0)
        points.append(
            {
                "wip": float(w),
                "best_th_per_hour": best[0] * 3600,
                "best_ct_s": best[1],
                "pwc_th_per_hour": pwc[0] * 3600,
                "pwc_ct_s": pwc[1],
                "worst_th_per_hour": worst[0] * 3600,
                "worst_ct_s": worst[1],
            }
        )
    return points


def benchmark_report(
    site: Site, inputs: dict[str, tuple[list[StationObservation], dict[str, Any]]], share: float
) -> dict[str, Any]:
    """The benchmark of every line: r_b, T0, W0, stations, operating point, curves and verdict."""
    lines = []
    for line in site.lines:
        observations, point = inputs[line.id]
        capacities = [station_capacity(o) for o in observations]
        bench = line_benchmark([c for c, _ in capacities])
        entry: dict[str, Any] = {
            "line": line.id,
            "r_b_per_hour": bench.r_b * 3600,
            "t0_s": bench.t0,
            "w0": bench.w0,
            "bottleneck": bench.bottleneck,
            "stations": [
                {
                    "station": c.station,
                    "machines": c.machines,
                    "te_s": c.te_s,
                    "visits": c.visits,
                    "rate_per_hour": c.rate * 3600,
                    "source": source,
                }
                for c, source in capacities
            ],
            "operating_point": point,
            "curves": _curve_points(bench, point["wip"]),
        }
        if point["wip"] is not None and point["throughput_per_hour"] is not None and point["lead_time_s"]:
            demand = line.demand_per_hour / 3600 if line.demand_per_hour else None
            op = OperatingPoint(point["wip"], point["throughput_per_hour"] / 3600, point["lead_time_s"])
            v = verdict(op, bench, share, demand)
            entry |= {
                "region": v.region,
                "at_wip": {
                    "best": {"throughput_per_hour": v.best_th * 3600, "cycle_time_s": v.best_ct},
                    "practical_worst": {"throughput_per_hour": v.pwc_th * 3600, "cycle_time_s": v.pwc_ct},
                    "worst": {"throughput_per_hour": v.worst_th * 3600, "cycle_time_s": v.worst_ct},
                },
                "target_share": v.target_share,
                "wip_needed": v.wip_needed,
                "lead_time_at_wip_needed_s": v.lead_time_at_wip_needed_s,
                "verdict": f"{line.id}: {v.text}",
            }
        else:
            entry["verdict"] = f"{line.id}: no operating point yet (no WIP, throughput or lead time measured)"
        lines.append(entry)
    return {"site": site.site, "lines": lines}


def benchmark(
    site: SiteOpt = None,
    influx_url: Annotated[str | None, typer.Option(help="InfluxDB URL")] = None,
    recording: Annotated[
        Path | None, typer.Option("--recording", help="compute from this recording instead of InfluxDB")
    ] = None,
    start: StartOpt = None,
    duration: DurationOpt = None,
    share: Annotated[float, typer.Option(help="share of today's output the suggested WIP keeps")] = 0.95,
    as_json: Annotated[bool, typer.Option("--json", help="print the benchmark as JSON")] = False,
) -> None:
    """Factory Physics internal benchmark of each line: r_b, T0, W0, the line beside best/PWC/worst case."""
    if not 0 < share <= 1:
        raise typer.BadParameter(f"--share must be in (0, 1], got {share}")
    settings = load_settings(site_file=site, influx_url=influx_url)
    site_model = load_site(settings.site_file)
    if recording is not None:
        inputs = _line_inputs_from_shift(read_shift(recording, site_model, start, duration))
        source = str(recording)
    else:
        inputs = _line_inputs_from_influx(settings, site_model)
        source = f"{settings.influx_url} database {settings.influx_db}"
    report = benchmark_report(site_model, inputs, share) | {"source": source}
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
        return
    for line in report["lines"]:
        table = Table(
            title=f"{line['line']}: r_b {line['r_b_per_hour']:.1f}/h ({line['bottleneck']}), "
            f"T0 {line['t0_s'] / 60:.1f} min, W0 {line['w0']:.1f}"
        )
        for col in ("station", "machines", "te s", "visits", "rate /h", "from"):
            table.add_column(col, justify="left" if col in ("station", "from") else "right")
        for s in line["stations"]:
            table.add_row(
                s["station"], str(s["machines"]), f"{s['te_s']:.1f}", f"{s['visits']:.2f}",
                f"{s['rate_per_hour']:.1f}", s["source"],
            )  # fmt: skip
        console.print(table)
        console.print(line["verdict"], highlight=False, markup=False)


# ---------------------------------------------------------------- whatif


def _scenarios_file(path: Path) -> dict[str, Scenario]:
    """Scenarios in a YAML file: a mapping of name to {description, release, supply, lines}."""
    from pydantic import ValidationError

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SiteFileError(str(path), [f"cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise SiteFileError(str(path), [f"not valid YAML ({exc})"]) from None
    if not isinstance(data, dict):
        raise SiteFileError(str(path), ["expected a mapping of scenario name to {release, supply, lines}"])
    scenarios = {}
    for name, body in data.items():
        try:
            scenarios[str(name)] = Scenario.model_validate(body)
        except ValidationError as exc:
            problems = [f"{name}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
            raise SiteFileError(str(path), problems) from None
    return scenarios


def _cell(e: Estimate, scale: float = 1.0, digits: int = 1) -> str:
    return f"{e.mean / scale:.{digits}f} [{e.low / scale:.{digits}f}-{e.high / scale:.{digits}f}]"


def whatif(
    recording: Annotated[Path, typer.Option("--recording", help="a recorded shift (record, dry-run, ...)")],
    site: SiteOpt = None,
    start: StartOpt = None,
    duration: DurationOpt = None,
    seeds: Annotated[int, typer.Option(help="simulation runs per alternative (confidence intervals)")] = 10,
    tolerance: Annotated[
        float, typer.Option(help="suggested cap: keep throughput within this share of today's")
    ] = 0.05,
    faster: Annotated[float, typer.Option(help="faster-bottleneck alternative: share of time saved")] = 0.2,
    lots: Annotated[int, typer.Option(help="smaller-lots alternative: divide supplier lots by this")] = 2,
    scenarios: Annotated[
        Path | None, typer.Option("--scenarios", help="YAML: more alternatives, as the site file's scenarios")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
) -> None:
    """Fit a model of each line to a recorded shift, check it, and simulate alternatives over seeds."""
    from wipwatch.simulators import whatif as wi
    from wipwatch.simulators.fit import fit_shift

    if seeds < 2:
        raise typer.BadParameter("--seeds must be at least 2 (a confidence interval needs two runs)")
    if not 0 <= tolerance < 1:
        raise typer.BadParameter(f"--tolerance must be in [0, 1), got {tolerance}")
    if not 0 < faster < 1:
        raise typer.BadParameter(f"--faster must be in (0, 1), got {faster}")
    if lots < 2:
        raise typer.BadParameter(f"--lots must be 2 or more, got {lots}")
    settings = load_settings(site_file=site)
    site_model = load_site(settings.site_file)
    extra = _scenarios_file(scenarios) if scenarios is not None else {}
    shift = read_shift(recording, site_model, start, duration)
    model = fit_shift(shift)
    runs = list(range(1, seeds + 1))
    span = shift.duration

    def status(text: str) -> None:
        if not as_json:
            err_console.print(text, highlight=False)

    base = wi.as_run(model)
    status(f"fitted {len(model.lines)} line(s) to {span / 3600:.2f} h of {recording}; simulating as run")
    results: dict[str, dict[str, dict[str, Estimate]]] = {"as-run": wi.run_variant(base, runs, span)}
    variants: list[wi.Variant] = []
    suggestions = []
    for line in model.site.lines:
        for kind in ("conwip", "kanban"):
            status(f"searching the smallest {kind} limit for {line.id}")
            suggestions.append(
                wi.suggest_cap(base, line.id, kind, runs, span, tolerance, results["as-run"][line.id])
            )
    conwip_levels = {s.line: s.level for s in suggestions if s.kind == "conwip" and s.level is not None}
    kanban_levels = {s.line: s.level for s in suggestions if s.kind == "kanban" and s.level is not None}
    if conwip_levels:
        variants.append(wi.conwip(base, conwip_levels))
    if kanban_levels:
        variants.append(wi.kanban_caps(base, kanban_levels))
    variants.append(wi.faster_bottleneck(base, model, faster))
    variants.append(wi.smaller_lots(base, lots, span))
    for name, scenario in {**site_model.scenarios, **extra}.items():
        variants.append(wi.with_scenario(base, name, scenario))
    for variant in variants:
        status(f"simulating {variant.name}")
        results[variant.name] = wi.run_variant(variant, runs, span)
    descriptions = {"as-run": base.description} | {v.name: v.description for v in variants}
    report = {
        "site": site_model.site,
        "recording": str(recording),
        "duration_s": span,
        "seeds": seeds,
        "fit": {line_id: fit.as_dict() for line_id, fit in model.lines.items()},
        "alternatives": {
            name: {"description": descriptions[name]}
            | {line: {f: e.as_dict() for f, e in figures.items()} for line, figures in per_line.items()}
            for name, per_line in results.items()
        },
        "suggestions": [s.as_dict() for s in suggestions],
    }
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
        return
    _print_whatif(model, results, descriptions, suggestions, site_model.currency, tolerance)


def _print_whatif(
    model: Any,
    results: dict[str, dict[str, dict[str, Estimate]]],
    descriptions: dict[str, str],
    suggestions: list[Any],
    currency: str,
    tolerance: float,
) -> None:
    for line_id, fit in model.lines.items():
        table = Table(title=f"{line_id}: fitted model")
        for col in ("station", "machines", "process time", "breakdowns", "changeover", "from"):
            table.add_column(col)
        for s in fit.stations:
            pt = s.process_time
            table.add_row(
                s.station,
                str(s.machines),
                f"{pt.dist} {pt.mean:.1f} s" + (f" cv {pt.cv:.2f}" if pt.cv else ""),
                f"mtbf {s.breakdowns.mtbf:.0f} s, mttr {s.breakdowns.mttr:.0f} s" if s.breakdowns else "-",
                f"{s.changeover.mean:.0f} s" if s.changeover else "-",
                f"{s.source} ({s.samples})",
            )
        console.print(table)
        for note in fit.notes + tuple(n for s in fit.stations for n in s.notes):
            console.print(f"  {note}", highlight=False, markup=False)
        check = Table(title=f"{line_id}: recorded shift vs the fitted model simulated as run (95 % CI)")
        for col in ("figure", "recorded", "simulated", "deviation"):
            check.add_column(col, justify="left" if col == "figure" else "right")
        for figure in ("throughput_per_hour", "avg_wip", "mean_lead_time_s", "money_tied_up"):
            recorded = fit.observed[figure]
            est = results["as-run"][line_id][figure]
            deviation = f"{(est.mean / recorded - 1) * 100:+.1f} %" if recorded else "-"
            check.add_row(figure, f"{recorded:.1f}", _cell(est), deviation)
        console.print(check)
        table = Table(title=f"{line_id}: alternatives (mean over seeds [95 % CI])")
        for col in ("alternative", "TH /h", "WIP", "released WIP", "lead time min", f"tied up {currency}"):
            table.add_column(col, justify="left" if col == "alternative" else "right")
        for name, per_line in results.items():
            f = per_line[line_id]
            table.add_row(
                name,
                _cell(f["throughput_per_hour"]),
                _cell(f["avg_wip"]),
                _cell(f["released_wip"]),
                _cell(f["mean_lead_time_s"], 60),
                _cell(f["money_tied_up"], 1, 0),
            )
        console.print(table)
        for name in results:
            if name != "as-run":
                console.print(f"  {name}: {descriptions[name]}", highlight=False, markup=False)
        for s in suggestions:
            if s.line != line_id:
                continue
            kind = "CONWIP level" if s.kind == "conwip" else "kanban cap per buffer"
            if s.level is None or s.with_cap is None:
                console.print(f"  no {kind} keeps throughput within {tolerance * 100:.0f} % of today's")
                continue
            t, c = s.today, s.with_cap
            console.print(
                f"  suggested {kind}: {s.level} keeps throughput within {tolerance * 100:.0f} % "
                f"({c['throughput_per_hour'].mean:.1f}/h vs {t['throughput_per_hour'].mean:.1f}/h); "
                f"WIP {t['avg_wip'].mean:.1f} -> {c['avg_wip'].mean:.1f} (released "
                f"{t['released_wip'].mean:.1f} -> {c['released_wip'].mean:.1f}), lead time "
                f"{t['mean_lead_time_s'].mean / 60:.1f} -> {c['mean_lead_time_s'].mean / 60:.1f} min, "
                f"tied up {t['money_tied_up'].mean:.0f} -> {c['money_tied_up'].mean:.0f} {currency}",
                highlight=False,
            )
