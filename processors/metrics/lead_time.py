"""Lead time by Little's Law and the value-added ratio (DESIGN.md, Metrics: "Little's Law").

Little's Law, in Factory Physics (Hopp & Spearman) notation ``WIP = TH x CT``, holds for long-run
averages of any stable system, whatever the distributions; so the lead (cycle) time it implies,
``CT = WIP / TH``, is shown beside the measured flow time as a consistency check::

    littles_law_s     = avg_wip / throughput_per_hour * 3600      seconds
    value_added_ratio = value_added_s / lead_time_s                (processing time / total lead time)
"""

from __future__ import annotations


def littles_law_s(avg_wip: float, throughput_per_hour: float) -> float | None:
    """Lead time implied by Little's Law, ``CT = WIP / TH``.

    Args:
        avg_wip: Time-average WIP (parts).
        throughput_per_hour: Throughput over the same period (parts per hour).

    Returns:
        Seconds, or None when the throughput is 0 (nothing left: no lead time to speak of).
    """
    if avg_wip < 0:
        raise ValueError(f"avg_wip must be >= 0, got {avg_wip!r}")
    if throughput_per_hour < 0:
        raise ValueError(f"throughput_per_hour must be >= 0, got {throughput_per_hour!r}")
    if throughput_per_hour == 0:
        return None
    return avg_wip / throughput_per_hour * 3600


def value_added_ratio(value_added_s: float, lead_time_s: float | None) -> float | None:
    """Share of the lead time spent on value-adding work (processing).

    Args:
        value_added_s: Processing time of a part (seconds).
        lead_time_s: Total lead time (seconds), measured or from ``littles_law_s``.

    Returns:
        ``value_added_s / lead_time_s``, or None when the lead time is None or 0.
    """
    if value_added_s < 0:
        raise ValueError(f"value_added_s must be >= 0, got {value_added_s!r}")
    if lead_time_s is None or lead_time_s == 0:
        return None
    if lead_time_s < 0:
        raise ValueError(f"lead_time_s must be >= 0, got {lead_time_s!r}")
    return value_added_s / lead_time_s
