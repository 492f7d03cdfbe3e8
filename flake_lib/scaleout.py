"""Past one machine: the discrete-event model of the serving system, calibrated on one load of notebook
04's sweep, validated on the others, then used for what this machine cannot run (notebook 07).

The model is the real frontend and policies over :class:`flake_lib.serving.simulation.SimulatedTransport`
(:meth:`flake_lib.latency.bench.Bench.simulated`): no rule of any method is written a second time. Its inputs:

- **service times**: samples measured on the workers' CPUs (:func:`flake_lib.latency.bench.measure_service_ms`);
- **placement**: ``native`` — every worker on the one CPU the workers share here (``cpus = 1``);
  ``emulated`` — each worker its own device (``cpus = None``) padded to notebook 04's assumed device time;
- **the link**: the one-way time of a message, measured through the real transport as a function of
  how long the receiver was idle (:func:`flake_lib.latency.bench.measure_link_ms`: a process and a core
  that slept wake up slower), plus one offset, ``link_ms``, fitted at one load (:func:`calibrate`);
  the frontend's own time per message, ``frontend_ms``, is a stated parameter;
- **shared cores**: natively the workers share one core by time slicing (``sharing="time"``,
  processor sharing) or first come first served (``"fifo"``).

:func:`validation` compares the model with every other measured level (median and p99, each within
``max(15 %, the spread measured across repeats)``); :func:`fleet` runs fleets of many instances.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from . import latency as lt
from . import methods, serving

#: The relative error a modelled statistic may have (or the spread across measured repeats, if larger).
TOLERANCE = 0.15


def sweep_config(parameters: dict) -> lt.FaultConfig:
    """The load sweep's faults from notebook 04's recorded parameters (stragglers and pauses, no kill)."""
    return lt.FaultConfig(straggler_rate_per_s=parameters["straggler_rate_per_s"],
                          reference_ms=parameters["straggler_reference_ms"],
                          cap_ms=parameters.get("straggler_cap_ms", 1000.0),
                          pause_rate_per_s=parameters["pause_rate_per_s"], pause_ms=parameters["pause_ms"], kills=0)


def recovery_budget(parameters: dict) -> serving.RecoveryBudget:
    """The admission notebook 04 ran with (its recorded ``recovery`` parameters), sized by the model's own
    service times when the bench runs (:meth:`flake_lib.latency.bench.Bench.admission`)."""
    budget = parameters.get("recovery") or {}
    return serving.RecoveryBudget(max_utilisation=budget.get("max_utilisation", 0.8),
                                  window_s=budget.get("window_s", 1.0), max_queue=budget.get("max_queue"))


def model_bench(mode: str, methods: Sequence[str], service_ms: dict, parameters: dict, *, link_ms: float,
                frontend_ms: float, link_curve_ms: pd.DataFrame | None = None, sharing: str = "time",
                cpus: int | None | str = "mode", images: np.ndarray | None = None,
                k: int = 2, instances: int = 1, drain_s: float = 2.0, seed: int = 0) -> lt.Bench:
    """A simulated :class:`~flake_lib.latency.bench.Bench` for ``mode`` with notebook 04's settings
    (``parameters``): recovery budget, restart delay, emulated device times; ``cpus="mode"``: one shared
    core natively (as the workers had here, shared by ``sharing``), a device each in emulated mode;
    ``link_ms`` plus the measured ``link_curve_ms`` per message."""
    if images is None:
        images = np.zeros((64, 3, 8, 8), np.float32)  # the model computes nothing: only the shapes matter
    workers = []
    for method in methods:
        workers += [w for w in lt.workers_for([method], instances, k) if w not in workers]
    return lt.Bench.simulated(
        mode, workers, service_ms, images, np.zeros(len(images), int), k=k,
        cpus=(1 if mode == "native" else None) if cpus == "mode" else cpus, sharing=sharing, link_ms=link_ms,
        link_curve_ms=link_curve_ms, frontend_ms=frontend_ms,
        emulated_ms=parameters.get("emulated_ms") if mode == "emulated" else None, drain_s=drain_s,
        restart_delay_s=parameters.get("restart_delay_s", 1.0), recovery=recovery_budget(parameters), seed=seed)


def run_levels(bench: lt.Bench, methods: Sequence[str], levels: Sequence[float],
               schedule_at: Callable[[float], lt.Schedule], bound_ms: float) -> pd.DataFrame:
    """Every method at every level on the model: median, p99, p99.9 (ms), failed queries."""
    rows = []
    for qps in levels:
        schedule = schedule_at(float(qps))
        for method in methods:
            _, info = bench.run(method, schedule, bound_ms=bound_ms)
            rows.append({"qps": float(qps), "method": method, "median_ms": info["median_ms"],
                         "p99_ms": info["p99_ms"], "p999_ms": info["p999_ms"], "n_queries": info["n_queries"],
                         "n_failed": info["n_failed"]})
    return pd.DataFrame(rows)


def calibrate(make_bench: Callable[[float], lt.Bench], methods: Sequence[str], qps: float,
              schedule_at: Callable[[float], lt.Schedule], measured: pd.DataFrame, bound_ms: float,
              grid_ms: Sequence[float]) -> tuple[float, pd.DataFrame]:
    """The ``link_ms`` of ``grid_ms`` whose model gives the smallest mean absolute relative error of the
    median over ``methods`` at load ``qps`` (``measured``: rows of that load with ``method`` and
    ``median_ms``). Returns it and the error of every grid point."""
    target = measured.set_index("method")["median_ms"]
    rows = []
    for link in grid_ms:
        modelled = run_levels(make_bench(float(link)), methods, [qps], schedule_at, bound_ms).set_index("method")
        errors = [abs(modelled.loc[m, "median_ms"] / target[m] - 1) for m in methods if m in target]
        rows.append({"link_ms": float(link), "mean_abs_error_median": float(np.mean(errors))})
    table = pd.DataFrame(rows)
    return float(table.loc[table["mean_abs_error_median"].idxmin(), "link_ms"]), table


def spread(measured: pd.DataFrame, statistic: str) -> pd.Series:
    """Relative spread of ``statistic`` across measured repeats per ``(mode, method, qps)``:
    ``(max − min) / median`` of the finite values (0 where a level ran once; a repeat whose statistic
    reached a failed query, ``inf``, says nothing about the spread)."""
    finite = measured.assign(**{statistic: measured[statistic].where(np.isfinite(measured[statistic]))})
    grouped = finite.groupby(["mode", "method", "qps"])[statistic]
    return ((grouped.max() - grouped.min()) / grouped.median()).fillna(0.0)


def relative_error(model: float, measured: float) -> float:
    """``model / measured − 1``; 0 when both are infinite (both runs had failed queries in the
    statistic: the model predicts the overload that was measured), ``inf`` when only one is."""
    if math.isinf(model) and math.isinf(measured):
        return 0.0
    if math.isinf(model) or math.isinf(measured) or not measured > 0:
        return math.inf
    return model / measured - 1


def validation(modelled: pd.DataFrame, measured: pd.DataFrame, *, calibration_qps: dict[str, float],
               knee_qps: dict[str, float], tolerance: float = TOLERANCE) -> pd.DataFrame:
    """One row per ``(load, mode, method)`` measured in the sweep: measured (the median over repeats) and
    modelled median and p99, relative errors, the tolerance ``max(tolerance, spread across repeats)``,
    ``median_within`` and ``p99_within`` (each statistic), ``within_tolerance`` (both), whether the
    load was the calibration load and whether it is below the knee (a mode whose knee is ``None``, not
    found because no level met the objective in every repeat, has no load below it)."""
    rows = []
    spreads = {s: spread(measured, s) for s in ("median_ms", "p99_ms")}
    typical = measured.groupby(["mode", "method", "qps"])[["median_ms", "p99_ms"]].median()
    for r in modelled.itertuples():
        key = (r.mode, r.method, r.qps)
        if key not in typical.index:
            continue
        row = {"load": r.qps, "mode": r.mode, "method": r.method}
        ok = True
        for s, short in (("median_ms", "median"), ("p99_ms", "p99")):
            meas, model = float(typical.loc[key, s]), float(getattr(r, s))
            error = relative_error(model, meas)
            allowed = max(tolerance, float(spreads[s].get(key, 0.0)))
            row.update({f"measured_{short}_ms": meas, f"modelled_{short}_ms": model,
                        f"relative_error_{short}": error, f"tolerance_{short}": allowed,
                        f"{short}_within": bool(abs(error) <= allowed)})
            ok &= abs(error) <= allowed
        row.update(within_tolerance=bool(ok), calibration=r.qps == calibration_qps.get(r.mode),
                   below_knee=r.qps < knee if (knee := knee_qps.get(r.mode, math.inf)) is not None else False)
        rows.append(row)
    return pd.DataFrame(rows)


def fleet_frontends(total_qps: float, frontend_ms_per_query: float, utilisation: float = 0.5) -> int:
    """Frontends a fleet needs so that none is busier than ``utilisation``:
    ``⌈total_qps · frontend_ms_per_query / 1000 / utilisation⌉``."""
    return max(1, math.ceil(total_qps * frontend_ms_per_query / 1000 / utilisation))




def fleet_run(method: str, *, deployed: int, k: int, per_instance_qps: float, n_queries: int,
              service_ms: dict, parameters: dict, slowdowns: np.ndarray, link_ms: float, frontend_ms: float,
              bound_ms: float, link_curve_ms: pd.DataFrame | None = None, mode: str = "emulated",
              seed: int = 0) -> dict:
    """One frontend over ``deployed`` instances of ``F`` and ``deployed / k`` redundant ones (parity
    models for ``pm``/``flake``, replicas or students for ``srp``/``nkd``, none for ``none``), coding
    groups of ``k``, at ``per_instance_qps`` per deployed instance, on the model. Faults as notebook 04's
    sweep, per instance: stragglers at ``straggler_rate_per_s / 2`` per deployed instance, pauses at
    ``pause_rate_per_s / 3`` per instance. Returns the tail summary and the setting."""
    spec = methods.get(method)
    if not spec.fleet:
        raise ValueError(f"fleet method {method!r}: one of {methods.keys(fleet=True)} (the registry's fleet methods)")
    extra = deployed // k if spec.redundant else 0
    role, model = spec.role or "backup", spec.model or "F"
    names = [f"F{i}" for i in range(deployed)]
    extras = [f"R{i}" for i in range(extra)]
    emulated = parameters.get("emulated_ms") or {}
    transport = lt.simulated_transport(service_ms, cpus=1 if mode == "native" else None, link_ms=link_ms,
                                       link_curve_ms=link_curve_ms, frontend_ms=frontend_ms, seed=seed,
                                       pad_ms=emulated if mode == "emulated" else None)
    transport.start([serving.WorkerSpec(w, "F") for w in names] + [serving.WorkerSpec(w, model) for w in extras])
    qps = per_instance_qps * deployed
    arrivals = serving.poisson_arrivals(qps, n_queries, seed)
    config = lt.FaultConfig(straggler_rate_per_s=parameters["straggler_rate_per_s"] / 2 * deployed,
                            reference_ms=parameters["straggler_reference_ms"],
                            cap_ms=parameters.get("straggler_cap_ms", 1000.0),
                            pause_rate_per_s=parameters["pause_rate_per_s"] / 3 * (deployed + extra),
                            pause_ms=parameters["pause_ms"], roles=tuple(names + extras))
    plan = lt.fault_plan(arrivals, lt.fault_timeline(n_queries / qps, config, slowdowns, lt.stream_seed(seed, "sweep")))
    dep = serving.Deployment(names, **{"parity" if role == "parity" else "backup": extras})
    images = np.zeros((n_queries, 3, 8, 8), np.float32)
    records = serving.serve(transport, method, dep, images, np.zeros(n_queries, int), arrivals,
                            serving.FaultSchedule(plan.delays_s, plan.pauses, []), k=k,
                            timing_bound_s=bound_ms / 1000, drain_s=2.0, recovery=recovery_budget(parameters),
                            restart_delay_s=parameters.get("restart_delay_s", 1.0))
    summary = lt.summarise(pd.DataFrame(records))
    return {"method": method, "deployed": deployed, "redundant": extra, "k": k, "qps": qps,
            "per_instance_qps": per_instance_qps, "n_queries": n_queries, "median_ms": summary["median_ms"],
            "p99_ms": summary["p99_ms"], "p999_ms": summary["p999_ms"], "n_failed": summary["n_failed"]}
