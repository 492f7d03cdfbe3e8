"""The runs of the latency experiment, each a function that returns what it measured.

- :func:`hedge_delay_ms`: the hedging delay from a calibration run.
- :func:`run_load_sweep`: every method at every level of a load sweep, then each method's capacity at the
  tail objective (:mod:`.capacity`).
- :func:`block`: one block of Table I (a regime, a mode), methods interleaved in every repeat, with the
  no-fault control.
- :func:`capacity_repeats`: each method's capacity at the tail objective, every level repeated.
- :func:`settings`: methods under several named settings (admission, straggler cap, device times).
- :func:`repeated`: methods repeated at one point (the knee).
- :func:`bound_sweep`: the timing bound from eager decoding up, at named points.
- :func:`fig6`: several queries unavailable at the same moment (Fig. 6).
- :func:`engine_comparison`: the same schedule through two engines (worker processes, Ray actors).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from .analysis import BOUND_COLUMNS, FIG6_COLUMNS, SWEEP_COLUMNS, TABLE1_COLUMNS, fig6_rows, ordered, tail_attribution
from .bench import Bench
from .capacity import find_capacity
from .faults import FaultPlan
from .roles import role_map
from .schedules import Schedule, abba_order, rotated_orders


def hedge_delay_ms(bench: Bench, schedule: Schedule, bound_ms: float,
                   percentile: float = 95.0) -> tuple[float, dict]:
    """The hedging delay: the ``percentile`` latency of ``none`` in a calibration run on ``schedule``
    (same level and faults as the repeats, its own seed), run before them."""
    frame, info = bench.run("none", schedule, bound_ms=bound_ms)
    latency = frame["latency_ms"].astype(float).fillna(np.inf)
    return float(np.percentile(latency, percentile, method="lower")), info


def run_load_sweep(bench: Bench, methods: Sequence[str], levels: Sequence[float],
                   schedule_at: Callable[[float], Schedule], *, bound_ms: float, tail_bound_ms: float,
                   statistic: str, tolerance: float = 0.10, max_refinements: int = 3,
                   refine: Sequence[str] | None = None,
                   progress: Callable[[str], None] | None = None) -> tuple[list[dict], dict]:
    """Every method at every level (the same schedule per level, the method order rotated from level
    to level), then the capacity of each method of ``refine`` (default: all) refined near its knee
    (:func:`find_capacity`); the others keep the bracket the levels give. Returns the sweep rows and
    ``{method: capacity record}``; a record's ``failed_queries`` holds ``[qps, queries nothing answered]``
    per level tried (a level with failed queries has an infinite statistic: it fails the objective)."""
    rows: list[dict] = []
    measured: dict[tuple[str, float], float] = {}
    schedules: dict[float, Schedule] = {}

    def schedule(qps: float) -> Schedule:
        if qps not in schedules:
            schedules[qps] = schedule_at(qps)
        return schedules[qps]

    def measure(method: str, qps: float) -> float:
        if (method, qps) not in measured:
            frame, info = bench.run(method, schedule(qps), bound_ms=bound_ms)
            info.update(repeat=0, refined=qps not in levels)
            rows.append(info)
            measured[(method, qps)] = info[statistic]
            if progress:
                progress(f"{bench.mode} {qps:7.1f} qps {method:6s}: {statistic} {info[statistic]:8.2f} ms, "
                         f"CPU {info['cpu_percent']:.0f} %, wall {info['wall_s']:.1f} s")
        return measured[(method, qps)]

    for j, qps in enumerate(sorted(levels)):
        for method in rotated_orders(methods, j + 1)[j]:
            measure(method, float(qps))
    capacities = {m: find_capacity(lambda q, m=m: measure(m, q), levels, tail_bound_ms, tolerance=tolerance,
                                   max_refinements=max_refinements if refine is None or m in refine else 0)
                  for m in methods}
    for m, record in capacities.items():  # a level whose statistic is infinite reached failed queries
        record["failed_queries"] = [[r["qps"], r.get("n_failed", 0)] for r in sorted(rows, key=lambda r: r["qps"])
                                    if r["method"] == m]
    return rows, capacities


def engine_comparison(open_bench: Callable, methods: Sequence[str], schedule: Schedule, *, bound_ms: float,
                      engines: Sequence[str] = ("process", "ray"), repeats: int = 2,
                      log: Callable[[str], None] = print) -> pd.DataFrame:
    """The same methods on the same schedule (arrivals, images, faults) through each engine, in
    :func:`abba_order`; ``open_bench(engine)`` is a context manager yielding a started :class:`Bench` (kept
    for consecutive runs of an engine). One row per run: the run's summary, ``engine`` and ``repeat``."""
    rows = []
    for engine, block in itertools.groupby(abba_order(engines, repeats), key=lambda entry: entry[0]):
        with open_bench(engine) as bench:
            for _, repeat in block:
                for method in methods:
                    _, info = bench.run(method, schedule, bound_ms=bound_ms)
                    info = {k: v for k, v in info.items() if k != "restart_times"}
                    rows.append({"engine": engine, "repeat": repeat, **info})
                    log(f"{engine:7s} repeat {repeat} {method:6s}: median {info['median_ms']:.3f} ms, "
                        f"p99.9 {info['p999_ms']:.2f} ms, GMM {info['gmm_ms']:.1f}, GPM {info['gpm_ms']:.2f}, "
                        f"failed {info['n_failed']}")
    return pd.DataFrame(rows)


def block(bench: Bench, plan: Sequence[Sequence[tuple[str, str]]], schedule_of: Callable[[int], Schedule], *,
          bound_ms: float | None, hedge_ms: float | None = None, dispatch: str | None = None,
          recovery=None, labels: dict | None = None,
          log: Callable[[str], None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One block of Table I: in each repeat ``r`` of ``plan`` (:func:`~.schedules.headline_plan`:
    ``(method, faults)`` entries, interleaved and rotated) every entry serves ``schedule_of(r)`` (the same
    arrivals, images and faults for every method of a repeat; ``faults == "none"``: the no-fault control),
    with ``dispatch`` and admission ``recovery`` (the bench's by default). ``hedge`` uses ``hedge_ms`` as its
    bound. Returns ``(table1, queries)``: one row per run (its summary, ``repeat``, ``order``, the
    ``labels`` given — regime, block — and the tail's attribution as ``tail_*``) and one row per query."""
    rows, frames = [], []
    labels = dict(labels or {})
    for repeat, entries in enumerate(plan):
        schedule = schedule_of(repeat)
        for order, (method, faults) in enumerate(entries):
            frame, info = bench.run(method, schedule, faults=faults == "injected",
                                    bound_ms=hedge_ms if method == "hedge" else bound_ms, dispatch=dispatch,
                                    recovery=recovery)
            injected = schedule.plan if faults == "injected" else FaultPlan.none(schedule.n)
            tail = tail_attribution(frame, injected, role_map(method, k=bench.k), restarts=info["restart_times"],
                                    k=bench.k)
            rows.append({**info, **labels, "repeat": repeat, "order": order,
                         "hedge_ms": hedge_ms if method == "hedge" else np.nan,
                         **{f"tail_{key}": value for key, value in tail.items()}})
            frames.append(frame.assign(repeat=repeat, faults=faults, mode=bench.mode, **labels))
            if log:
                log(f"repeat {repeat} #{order} {method:6s} faults={faults:8s}: p99.9 {info['p999_ms']:7.2f} ms, "
                    f"GPM {info['gpm_ms']:7.2f}, GMM {info['gmm_ms']:7.2f}, CPU {info['cpu_percent']:3.0f} %, "
                    f"unavailable {info['n_unavailable']}, failed {info['n_failed']}, wall {info['wall_s']:.1f} s")
    table = ordered(pd.DataFrame(rows), TABLE1_COLUMNS)
    queries = pd.concat(frames, ignore_index=True).drop(columns=["error"], errors="ignore")
    return table, queries


def repeated(bench: Bench, methods: Sequence[str], repeats: int, schedule_of: Callable[[int], Schedule], *,
             bound_ms: float | None, point: str) -> pd.DataFrame:
    """``methods`` on ``schedule_of(r)`` for ``r < repeats``, interleaved with the order rotated (the knee's
    repeats): one row per run with ``repeat``, ``order`` and ``point``."""
    rows = []
    for repeat, order in enumerate(rotated_orders(methods, repeats)):
        schedule = schedule_of(repeat)
        for position, method in enumerate(order):
            _, info = bench.run(method, schedule, bound_ms=bound_ms)
            rows.append({**info, "repeat": repeat, "order": position, "point": point})
    return ordered(pd.DataFrame(rows), TABLE1_COLUMNS)


def bound_sweep(bench: Bench, methods: Sequence[str], bounds_ms: Sequence[float],
                points: dict[str, Schedule]) -> pd.DataFrame:
    """Every method of ``methods`` at every timing bound of ``bounds_ms`` (0: eager decoding) and no
    redundancy once as the reference, at each named point's schedule (order rotated once). One row per run
    with ``point`` and ``bound_ms`` (NaN: eager)."""
    rows = []
    entries = [(m, b) for m in methods for b in bounds_ms] + [("none", 0.0)]
    for point, schedule in points.items():
        for method, bound in rotated_orders(entries, 2)[1]:
            _, info = bench.run(method, schedule, bound_ms=bound or None)
            rows.append({**info, "point": point, "repeat": 0, "bound_ms": bound or np.nan})
    return ordered(pd.DataFrame(rows), BOUND_COLUMNS)


def fig6(bench: Bench, entries: Sequence[tuple[str, int]], repeats: int, arrivals: np.ndarray, delays_s: np.ndarray,
         tags: np.ndarray, index_of: Callable[[int], np.ndarray], *, bound_ms: float,
         recovery, seed_of: Callable[[int], int] = lambda r: r) -> pd.DataFrame:
    """Fig. 6: each ``(method, instances)`` of ``entries`` on the bursts (:func:`~.schedules.burst_schedule`:
    ``arrivals``, ``delays_s``, ``tags``) in each repeat, with fresh query images ``index_of(r)``, the order
    rotated, under ``recovery`` (the admission the burst gets). One row per method, instances, repeat and
    number unavailable (:func:`~.analysis.fig6_rows`)."""
    rows = []
    for repeat, order in enumerate(rotated_orders(entries, repeats)):
        schedule = Schedule(0.0, arrivals, index_of(repeat), FaultPlan(delays_s), seed_of(repeat), tags=tags)
        for method, instances in order:
            frame, _ = bench.run(method, schedule, bound_ms=bound_ms, instances=instances, recovery=recovery)
            rows += [{"method": method, "instances": instances, "repeat": repeat, **row, "mode": bench.mode}
                     for row in fig6_rows(frame, tags)]
    return ordered(pd.DataFrame(rows), FIG6_COLUMNS)


def settings(bench_of: Callable[[str], Bench], methods: Sequence[str], named: dict[str, dict], *,
             bound_ms: float | None) -> pd.DataFrame:
    """Every method under each named setting: ``named[label]`` holds the ``schedule`` and, optionally,
    the ``recovery`` (admission) and ``dispatch`` of its runs; ``bench_of(label)`` is the bench the setting
    runs on (a setting of the device times needs workers of its own). One row per run, ``setting`` its
    label, methods interleaved with the order rotated from setting to setting."""
    rows = []
    for j, (label, setting) in enumerate(named.items()):
        bench = bench_of(label)
        for order, method in enumerate(rotated_orders(methods, j + 1)[j]):
            _, info = bench.run(method, setting["schedule"], bound_ms=bound_ms, recovery=setting.get("recovery"),
                                dispatch=setting.get("dispatch"))
            rows.append({**info, "setting": label, "repeat": 0, "order": order})
    return ordered(pd.DataFrame(rows), ["setting", *TABLE1_COLUMNS])


def capacity_repeats(bench: Bench, methods: Sequence[str], levels: Sequence[float], repeats: int,
                     schedule_at: Callable[[float, int], Schedule], *, bound_ms: float | None, statistic: str,
                     tail_bound_ms: float) -> tuple[pd.DataFrame, dict]:
    """Capacity at the tail objective with run-to-run variation: every method at every level in every
    repeat (``schedule_at(qps, repeat)``: a fresh schedule per repeat, the same for every method; the
    order rotated), no bisection. Per repeat, a method's capacity is the highest level before the first
    that failed (:func:`~.capacity.repeat_capacity`); the record per method (:func:`~.capacity.summarise_repeats`)
    holds every repeat's, their median and range, and the levels whose outcome was not monotone in load.
    Returns the runs and ``{method: record}``."""
    from .capacity import summarise_repeats

    rows = []
    for repeat in range(repeats):
        for j, qps in enumerate(sorted(levels)):
            schedule = schedule_at(float(qps), repeat)
            for method in rotated_orders(methods, repeat + j + 1)[(repeat + j) % max(len(methods), 1)]:
                _, info = bench.run(method, schedule, bound_ms=bound_ms)
                rows.append({**info, "repeat": repeat, "qps": float(qps)})
    runs = ordered(pd.DataFrame(rows), SWEEP_COLUMNS)
    return runs, {m: summarise_repeats(runs[runs["method"] == m], statistic, tail_bound_ms) for m in methods}
