"""The analytic queueing model: what the service times predict before anything runs.

Not the discrete-event simulator (:mod:`flake_lib.serving.simulation`, which runs the real frontend in
virtual time): a closed-form replay of a schedule where each instance is a FIFO server with a fixed
service time per model (Lindley's recursion), for the emulated mode's independent devices
(:func:`latencies`, and from it :func:`predicted_capacity` and :func:`fig6_prediction`), and the
utilisation bound of the native mode's shared CPU (:func:`predict_native_ratio`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import methods, stats
from .capacity import find_capacity


def predict_native_ratio(service_ms: dict[str, float], k: int = 2) -> dict:
    """Flake / PM capacity ratio on the shared host CPU, from the measured service times.

    Per query the worker CPUs do ``t_F + t_P / k`` of inference (one parity query per ``k`` queries).
    If the workers' CPUs saturate first, capacity ∝ ``1 / (t_F + t_P/k)``, so the ratio is
    ``(t_F + t_PM/k) / (t_F + t_Flake/k)`` (``high``); if the frontend's core (the same work per query
    for both, plus one encoded parity query per group) saturates first, the ratio is 1.0 (``low``).
    """
    f, pm, fl = service_ms["F"], service_ms["PM"], service_ms["Flake"]
    return {"low": 1.0, "high": (f + pm / k) / (f + fl / k),
            "worker_ms_per_query": {"pm": f + pm / k, "flake": f + fl / k}}


def _fifo(times: np.ndarray, service: np.ndarray) -> np.ndarray:
    """Finish times of a FIFO server (Lindley's recursion) for requests at sorted ``times``."""
    finish = np.empty(len(times))
    free = -math.inf
    for j, (t, s) in enumerate(zip(times, service)):
        free = max(t, free) + s
        finish[j] = free
    return finish


def _servers(times: np.ndarray, service: np.ndarray, k: int) -> np.ndarray:
    """Finish times of ``k`` servers sharing one FIFO queue (a request goes to the first server free)."""
    free = np.full(k, -math.inf)
    finish = np.empty(len(times))
    for j, (t, s) in enumerate(zip(times, service)):
        server = int(np.argmin(free))
        free[server] = max(t, free[server]) + s
        finish[j] = free[server]
    return finish


def latencies(method: str, arrivals: np.ndarray, delays_s: np.ndarray, service_s: dict[str, float],
             bound_s: float | None, k: int = 2, instances: int = 1, dispatch: str = "round_robin") -> np.ndarray:
    """Latency (ms) of every query under a queueing model of the serving system with independent
    devices (the emulated mode): each instance a FIFO server with a fixed service time per model
    (``service_s``: ``F``, ``PM``, ``Flake``, ``NKD``), stragglers occupying their deployed instance
    for their delay, the timing bound ``bound_s`` (``None``: eager), ParM's decoding, Flake's partner
    recovery when two members of a group are stuck, replicas/students re-running unavailable queries.
    Not modelled: the host CPU, the frontend, pauses, kills, deadlines and the recovery budget. Each
    method's rule is its registry entry's ``queueing`` (:mod:`flake_lib.methods`); a method without one
    (``equal``, ``approxifer``) is refused, not treated as no redundancy. ``dispatch``: ``round_robin``
    (query ``i`` on deployed instance ``i mod k``) or ``single_queue`` (the ``k`` deployed instances share
    one FIFO queue).
    """
    spec = methods.get(method)
    if spec.redundant is not None and spec.queueing is None:
        raise ValueError(f"the queueing model has no rule for {method!r} (its registry entry has no queueing rule)")
    n = len(arrivals)
    arrivals = np.asarray(arrivals, dtype=float)
    bound = 0.0 if bound_s is None else bound_s
    finish = np.empty(n)
    if dispatch == "single_queue":
        finish = _servers(arrivals, np.asarray(delays_s, dtype=float) + service_s["F"], k)
    else:
        for j in range(k):
            on = np.arange(j, n, k)
            finish[on] = _fifo(arrivals[on], delays_s[on] + service_s["F"])
    answer = finish.copy()
    if spec.queueing == "rerun":
        late = np.flatnonzero(finish > arrivals + bound)
        model = spec.model
        at = arrivals[late] + bound
        order = np.argsort(at, kind="stable")
        done = np.empty(len(late))
        for j in range(instances):
            mine = order[j::instances]
            done[mine] = _fifo(at[mine], np.full(len(mine), service_s[model]))
        answer[late] = np.minimum(finish[late], done)
    elif spec.queueing in ("parity", "partner"):
        groups = n // k
        t_p = service_s[spec.model]
        members = np.arange(groups * k).reshape(groups, k)
        sent = arrivals[members[:, -1]]

        def parity_finish(extra_at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            times = np.concatenate([sent, extra_at])
            order = np.argsort(times, kind="stable")
            done = np.empty(len(times))
            for j in range(instances):
                mine = order[j::instances]
                done[mine] = _fifo(times[mine], np.full(len(mine), t_p))
            return done[:groups], done[groups:]

        p_done, _ = parity_finish(np.empty(0))
        f = finish[members]
        others = np.stack([np.delete(f, j, axis=1).max(axis=1) for j in range(k)], axis=1)
        decode = np.maximum(p_done[:, None], others)
        unavailable_at = arrivals[members] + bound
        stuck = f > unavailable_at
        rebuilt = np.where(stuck, np.maximum(unavailable_at, decode), np.inf)
        if spec.queueing == "partner":
            two = stuck.sum(axis=1) >= 2
            gs, js = np.nonzero(stuck & two[:, None])
            when = np.max(np.where(stuck, unavailable_at, -np.inf), axis=1)[gs]
            if len(gs):
                p_done, partner_done = parity_finish(when)
                decode = np.maximum(p_done[:, None], others)
                rebuilt = np.where(stuck, np.maximum(unavailable_at, decode), np.inf)
                rebuilt[gs, js] = np.minimum(rebuilt[gs, js], partner_done)
        answer[members] = np.minimum(f, rebuilt)
    return 1000 * (answer - arrivals)


def predicted_capacity(method: str, schedule_at, levels, times_ms: dict[str, float], *, bound_ms: float | None,
                       tail_bound_ms: float, statistic: str, k: int = 2) -> dict:
    """The capacity (:func:`~.capacity.find_capacity`, bracketed within 2 %) the queueing model predicts
    for ``method`` on the sweep's own schedules (``schedule_at(qps)``) with device times ``times_ms``."""
    service_s = {m: t / 1000 for m, t in times_ms.items()}

    def tail(qps: float) -> float:
        schedule = schedule_at(qps)
        latency = latencies(method, schedule.arrivals, schedule.plan.delays_s, service_s,
                            None if bound_ms is None else bound_ms / 1000, k=k)
        return stats.tail_summary(latency)[statistic]

    return find_capacity(tail, levels, tail_bound_ms, tolerance=0.02, max_refinements=12)


def fig6_prediction(entries, arrivals: np.ndarray, delays_s: np.ndarray, tags: np.ndarray,
                    times_ms: dict[str, float], *, bound_ms: float, k: int = 2) -> pd.DataFrame:
    """Fig. 6 as the queueing model predicts it: per ``(method, instances)`` of ``entries`` and number
    unavailable ``m``, the median latency of the ``m``-burst queries (``method, instances, n_unavailable,
    median_ms``)."""
    rows = []
    for method, instances in entries:
        latency = latencies(method, arrivals, delays_s, {m: t / 1000 for m, t in times_ms.items()}, bound_ms / 1000,
                            k=k, instances=instances)
        for m in sorted(set(np.asarray(tags)[np.asarray(tags) > 0])):
            rows.append({"method": method, "instances": instances, "n_unavailable": int(m),
                         "median_ms": float(np.median(latency[tags == m]))})
    return pd.DataFrame(rows)


def predict_block(methods, schedules, times_ms: dict[str, float], *, bound_ms: float | None, k: int = 2,
                  dispatch: str = "round_robin") -> pd.DataFrame:
    """What the queueing model predicts for one block of Table I, before it runs: per method, the
    median over the block's schedules of each schedule's median, p99.9 and maximum latency (ms), and
    GPM and GMM from them. The same arrivals and injected delays as the runs; not modelled: the host CPU,
    the frontend and the link, pauses, kills, deadlines and admission (see :func:`latencies`)."""
    service_s = {m: t / 1000 for m, t in times_ms.items()}
    rows = []
    for method in methods:
        runs = [stats.tail_summary(latencies(method, s.arrivals, s.plan.delays_s, service_s,
                                             None if bound_ms is None else bound_ms / 1000, k=k, dispatch=dispatch))
                for s in schedules]
        row = {"method": method, **{f"predicted_{key}": float(np.median([r[key] for r in runs]))
                                    for key in ("median_ms", "p999_ms", "max_ms", "gpm_ms", "gmm_ms")}}
        rows.append(row)
    return pd.DataFrame(rows)
