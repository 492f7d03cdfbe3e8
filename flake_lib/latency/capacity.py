"""Capacity at a tail objective (the MLPerf Inference server scenario): the highest Poisson rate whose
tail statistic stays under a bound, bracketed by refining between the last level that met it and the
first that did not; censored when every level met it. A level with failed queries (an infinite
statistic) fails the objective.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence


def find_capacity(measure: Callable[[float], float], levels: Sequence[float], bound_ms: float, *,
                  tolerance: float = 0.10, max_refinements: int = 6) -> dict:
    """The highest Poisson rate whose tail statistic ``measure(qps)`` stays within ``bound_ms``.

    Every level of ``levels`` is measured (``measure`` should cache); the capacity lies between the
    last level that met the objective before the first that did not, and is refined by bisection
    until ``high / low ≤ 1 + tolerance`` (or ``max_refinements`` more runs). Returns
    ``capacity_qps`` (the highest rate that met it), ``censored`` (every level met it:
    ``capacity_qps = None``, ``bracket_qps = [top level, None]``), ``bracket_qps`` ``[low, high]``
    (``low = None`` when even the lowest level failed), ``levels_tried`` ``[[qps, statistic], …]`` and
    ``bracketed`` (the bracket is within the tolerance). A level above the first failure that meets
    the objective again (noise) does not move the capacity.
    """
    tried: dict[float, float] = {}

    def at(qps: float) -> float:
        if qps not in tried:
            tried[qps] = float(measure(qps))
        return tried[qps]

    grid = sorted(float(q) for q in levels)
    if not grid:
        raise ValueError("no load level to try")
    for qps in grid:
        at(qps)
    failing = [q for q in grid if not tried[q] <= bound_ms]  # NaN or inf fails
    if not failing:
        return {"capacity_qps": None, "censored": True, "bracket_qps": [grid[-1], None],
                "bracketed": False, "levels_tried": [[q, tried[q]] for q in sorted(tried)]}
    high = failing[0]
    passing = [q for q in grid if q < high]
    if not passing:
        return {"capacity_qps": None, "censored": False, "bracket_qps": [None, high],
                "bracketed": False, "levels_tried": [[q, tried[q]] for q in sorted(tried)]}
    low = passing[-1]
    steps = 0
    while high / low > 1 + tolerance and steps < max_refinements:
        mid = float(round(math.sqrt(low * high), 1))
        if mid <= low or mid >= high:
            break
        if at(mid) <= bound_ms:
            low = mid
        else:
            high = mid
        steps += 1
    return {"capacity_qps": low, "censored": False, "bracket_qps": [low, high],
            "bracketed": high / low <= 1 + tolerance,
            "levels_tried": [[q, tried[q]] for q in sorted(tried)]}


def capacity_ratio(a: dict, b: dict) -> dict:
    """``capacity(a) / capacity(b)`` with the interval the brackets give (``low_a / high_b``,
    ``high_a / low_b``); ``None`` where a capacity is censored or below the lowest level."""
    note = []
    if a.get("censored") or b.get("censored"):
        note.append("a capacity is censored (met the objective at every level tried)")
    if a.get("capacity_qps") is None or b.get("capacity_qps") is None:
        if not note:
            note.append("a capacity lies below the lowest level tried")
        return {"ratio": None, "low": None, "high": None, "note": "; ".join(note)}
    (la, ha), (lb, hb) = a["bracket_qps"], b["bracket_qps"]
    return {"ratio": a["capacity_qps"] / b["capacity_qps"], "low": la / hb, "high": ha / lb,
            "note": "ratio of the highest rates that met the objective; interval from the brackets"}


def _ratio(caps: dict) -> dict:
    """Flake / PM: paired by repeat when the records have repeats, else from the brackets."""
    if not {"flake", "pm"} <= set(caps):
        return {"ratio": None, "low": None, "high": None, "note": "Flake or PM not swept"}
    if "per_repeat" in caps["flake"]:
        return repeats_ratio(caps["flake"], caps["pm"])
    return capacity_ratio(caps["flake"], caps["pm"])


def capacity_record(capacities: dict[str, dict[str, dict]], *, statistic: str, tail_bound_ms: float,
                    seconds_per_level: float, timing_bound_ms: float | None, predicted: dict[str, dict],
                    device_ms: dict[str, dict[str, float]], device_ms_note: dict[str, str]) -> dict:
    """``latency/capacity.json``: the objective, and per mode each method's capacity record, the Flake / PM
    ratio, what was predicted for it (``predicted[mode]``: a ratio record) and the device times used."""
    return {"objective": {"statistic": statistic, "bound_ms": tail_bound_ms}, "seconds_per_level": seconds_per_level,
            "timing_bound_ms": timing_bound_ms,
            "modes": {mode: {"methods": caps,
                             "flake_over_pm": _ratio(caps),
                             "predicted_flake_over_pm": predicted.get(mode),
                             "device_ms": device_ms.get(mode), "device_ms_note": device_ms_note.get(mode)}
                      for mode, caps in capacities.items()}}


def repeat_capacity(statistic_by_level: dict[float, float], bound_ms: float) -> dict:
    """One repeat's capacity on a grid of levels: the highest level before the first whose statistic
    fails the bound (``None`` when the lowest fails), ``censored`` when none fails, and
    ``non_monotone``: levels above the first failure that met the bound again."""
    levels = sorted(statistic_by_level)
    failing = [q for q in levels if not statistic_by_level[q] <= bound_ms]  # NaN and inf fail
    if not failing:
        return {"capacity_qps": levels[-1] if levels else None, "censored": True, "non_monotone": []}
    first = failing[0]
    below = [q for q in levels if q < first]
    return {"capacity_qps": below[-1] if below else None, "censored": False,
            "non_monotone": [q for q in levels if q > first and statistic_by_level[q] <= bound_ms]}


def summarise_repeats(runs, statistic: str, bound_ms: float) -> dict:
    """A method's capacity over repeats (``runs``: its rows with ``repeat``, ``qps`` and ``statistic``):
    each repeat's (:func:`repeat_capacity`), their median, ``low``/``high`` (the range over repeats: the
    run-to-run interval), ``censored`` (a repeat met the objective at every level), ``non_monotone``
    (``[repeat, qps]`` of levels that met it again above a failure), ``levels`` and ``repeats``."""
    per = {}
    for repeat, part in runs.groupby("repeat"):
        per[int(repeat)] = repeat_capacity(dict(zip(part["qps"].astype(float), part[statistic].astype(float))),
                                           bound_ms)
    values = [r["capacity_qps"] for r in per.values()]
    known = [v for v in values if v is not None]
    return {"per_repeat": [r["capacity_qps"] for _, r in sorted(per.items())],
            "capacity_qps": float(sorted(known)[len(known) // 2]) if known and len(known) == len(values) else None,
            "low": min(known) if known else None, "high": max(known) if known else None,
            "censored": any(r["censored"] for r in per.values()),
            "non_monotone": [[rep, q] for rep, r in sorted(per.items()) for q in r["non_monotone"]],
            "levels": sorted(set(runs["qps"].astype(float))), "repeats": len(per)}


def repeats_ratio(a: dict, b: dict) -> dict:
    """``capacity(a) / capacity(b)`` paired by repeat (the same schedules): the per-repeat ratios, their
    geometric mean and the t interval of their logarithms (:func:`flake_lib.stats.log_ratio_interval`),
    and their range. ``None`` where a repeat's capacity is censored or below the lowest level."""
    from .. import stats

    pairs = [(x, y) for x, y in zip(a.get("per_repeat", []), b.get("per_repeat", [])) if x and y]
    if a.get("censored") or b.get("censored") or not pairs or len(pairs) < len(a.get("per_repeat", [])):
        return {"ratio": None, "low": None, "high": None, "per_repeat": [x / y for x, y in pairs],
                "note": "a capacity is censored (met the objective at every level) or below the lowest level"}
    r = stats.log_ratio_interval([x for x, _ in pairs], [y for _, y in pairs])
    ratios = [x / y for x, y in pairs]
    return {"ratio": r["ratio"], "low": r["low"], "high": r["high"], "min": min(ratios), "max": max(ratios),
            "per_repeat": ratios, "n": r["n"],
            "note": "geometric mean of the per-repeat ratios; 95 % t interval of their logarithms"}
