"""The latency experiment of notebook 04: who plays which role, schedules, faults, runs, sweeps, Fig. 6.

The serving system itself (workers, transport, frontend, per-method policies) is :mod:`flake_lib.serving`;
this module builds the experiment on top of it, so that notebook 04 holds parameters, narrative and plots.

- **Roles** (:func:`deployment`, :func:`role_map`): every method has the deployed instances ``F0 … F{k−1}``
  and, except ``none``, redundant instances: ``FR*`` (replicas of ``F``: ``srp``, ``hedge``, and the
  extra instances of ``F`` of ParM's equal-resources baseline ``equal``), ``PM*`` (``pm``'s parity model),
  ``FP*`` (Flake's parity model), ``NKD*`` (the NKD student); ``approxifer`` uses ``FR*`` as its
  ``S`` extra instances of ``F`` (coded queries). ``instances`` (1 = equal resources,
  2 = two recovery instances) says how many. Faults name *roles* (``deployed0``, ``redundant0`` …), so
  one schedule is replayed on every method; a fault on a role a method lacks is dropped.
- **Modes** (:func:`worker_specs`): ``native`` runs each model as it is on the host CPU; ``emulated``
  pads each worker's service time to a stated per-model device time by sleeping
  (``WorkerSpec.pad_to_s``: an accelerator busy with the request while the host CPU is free). The
  per-model times are parameters (:func:`emulated_times`: proportional to measured FLOPs, scaled so
  that ``F`` takes a stated time; an assumption, labelled as such).
- **Placement** (:func:`placement`): the frontend (the notebook's process) gets the first
  ``frontend_cores`` CPUs and the workers share the rest; on two cores, one core each.
- **Faults** (:class:`FaultConfig`, :func:`fault_timeline`, :func:`fault_plan`): a seeded timeline of
  stragglers at a rate per second, each delayed ``(s − 1) × reference`` with ``s`` a slowdown ratio of the
  trace (notebook 01) and the reference chosen so that a stated share of the stragglers exceeds the
  timing bound (:func:`straggler_reference_ms`), capped; SIGSTOP windows of any instance at a rate per
  second; SIGKILLs of any instance per run. A straggler delays the first query sent at or after its
  time, so the levels of a load sweep (:func:`level_schedule`: the same duration, one timeline) replay
  the same faults and differ only in load.
- **Runs** (:class:`Bench`): one transport per mode holds every worker the runs need (started once;
  a killed worker is restarted by the frontend or, between runs, here), each run is preceded by a
  barrier that waits until every worker is idle, and returns its records and a one-row summary
  (:func:`summarise`: :func:`flake_lib.stats.tail_summary`, a failed query counting as ``+inf``).
- **Repeats** (:func:`rotated_orders`): methods interleaved inside each repeat, the order rotated
  from one repeat to the next; comparisons paired inside a repeat (:func:`paired_table`).
- **Capacity** (:func:`find_capacity`): the highest Poisson rate whose tail statistic meets the
  objective, bracketed within a tolerance by refining between the last level that met it and the
  first that did not; censored when every level met it.
- **Prediction** (:func:`predict_native_ratio`, :func:`simulate`): what the measured service times
  predict for the capacity ratio Flake / PM before anything is run.
- **Fig. 6** (:func:`burst_schedule`): ``m`` queries with the same intended time whose instances
  stall far beyond the bound, so that all ``m`` are unavailable at the same moment.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import methods, progress, serving, stats

_BARRIER_IDS = itertools.count(-1, -1)  # request ids of barriers: negative, never a frontend's

# ----------------------------------------------------------------------------- roles

#: Outcomes that mean "recovered by redundancy" (not the query's own original answer).
RECOVERED = ("reconstructed", "replica", "student", "hedge")
MODES = ("native", "emulated")


def worker_model(worker: str) -> str:
    """The model a worker serves: ``F0 → F``, ``FR1 → F``, ``PM0 → PM``, ``FP0 → Flake``, ``NKD0 → NKD``."""
    return methods.worker_models()[worker.rstrip("0123456789")]


def deployment(method: str, instances: int = 1, k: int = 2) -> serving.Deployment:
    """Which workers play which role for ``method``: ``k`` deployed instances of ``F`` and ``instances``
    redundant ones (parity for ``pm``/``flake``, backup for the others, none for ``none``)."""
    spec = methods.get(method)
    deployed = [f"F{j}" for j in range(k)]
    extra = [f"{spec.redundant}{j}" for j in range(instances)] if spec.redundant else []
    if spec.role == "parity":  # approxifer: its S extra instances of F take coded queries
        return serving.Deployment(deployed, parity=extra)
    return serving.Deployment(deployed, backup=extra)


def role_map(method: str, instances: int = 1, k: int = 2) -> dict[str, str]:
    """``{role: worker}``: ``deployed0..`` and ``redundant0..`` of ``method``."""
    dep = deployment(method, instances, k)
    roles = {f"deployed{j}": w for j, w in enumerate(dep.deployed)}
    roles.update({f"redundant{j}": w for j, w in enumerate(dep.parity + dep.backup)})
    return roles


def workers_for(methods: Sequence[str], instances: int = 1, k: int = 2) -> list[str]:
    """Every worker the methods need (each once)."""
    names: list[str] = []
    for method in methods:
        dep = deployment(method, instances, k)
        names += [w for w in dep.deployed + dep.parity + dep.backup if w not in names]
    return names


def emulated_times(flops: dict[str, float], f_ms: float) -> dict[str, float]:
    """Per-model device times of the emulation (ASSUMPTION): proportional to each model's FLOPs,
    scaled so that ``F`` takes ``f_ms``: ``t_m = f_ms · flops_m / flops_F``."""
    return {m: f_ms * flops[m] / flops["F"] for m in flops}


def placement(frontend_cores: int = 1) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """``(frontend_cpus, worker_cpus)``: the first ``frontend_cores`` CPUs this process may use go to
    the frontend, the others to the workers (all workers share them). ``(None, None)`` (no pinning)
    where the machine does not allow it or has fewer than two CPUs."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or frontend_cores < 1:
        return None, None
    frontend_cores = min(frontend_cores, len(cpus) - 1)
    return tuple(cpus[:frontend_cores]), tuple(cpus[frontend_cores:])


def worker_specs(names: Sequence[str], model_paths: dict[str, str], mode: str, *,
                 emulated_ms: dict[str, float] | None = None, device: str = "CPU",
                 cpus: tuple[int, ...] | None = None) -> list[serving.WorkerSpec]:
    """One :class:`serving.WorkerSpec` per worker; in ``emulated`` mode padded to its model's device time."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    if mode == "emulated" and not emulated_ms:
        raise ValueError("the emulated mode needs a device time per model (emulated_ms)")
    specs = []
    for name in names:
        model = worker_model(name)
        pad = emulated_ms[model] / 1000 if mode == "emulated" else 0.0
        specs.append(serving.WorkerSpec(name, model_paths[model], device, threads=1, cpus=cpus, pad_to_s=pad))
    return specs


@contextlib.contextmanager
def pinned(cpus: tuple[int, ...] | None):
    """This process on ``cpus`` for the ``with`` block (nothing where there are none or no affinity)."""
    previous = os.sched_getaffinity(0) if cpus and hasattr(os, "sched_setaffinity") else None
    if previous is not None:
        os.sched_setaffinity(0, set(cpus))
    try:
        yield
    finally:
        if previous is not None:
            os.sched_setaffinity(0, previous)


def measure_service_ms(model_path: str, images: np.ndarray, *, device: str = "CPU", n: int = 200,
                       warmup: int = 20, cpus: tuple[int, ...] | None = None, samples: bool = False,
                       pad_ms: float = 0.0) -> dict:
    """Median and p99 time of one inference (batch 1, one thread) of an exported model, in ms, on the
    worker CPUs ``cpus`` (this process is pinned there while it measures); with ``samples``, every
    measured time too (``samples_ms``: the distribution a simulation draws from). Each inference is
    timed as a worker serves it (:func:`~flake_lib.serving.transport.serve_one`); ``pad_ms``: padded to
    that device time by sleeping, as an emulated device's worker is: the time then holds the overshoot."""
    from .runtime import CompiledModel
    from .serving.transport import serve_one

    spec = serving.WorkerSpec("timing", model_path, device, threads=1, pad_to_s=pad_ms / 1000)
    with pinned(cpus):
        model = CompiledModel(model_path, device, threads=1)
        times = []
        for i in range(warmup + n):
            response = serve_one(spec, model, i, images[i % len(images)][None], 0.0)
            if response.error:
                raise RuntimeError(f"{model_path}: {response.error}")
            if i >= warmup:
                times.append(1000 * response.service_s)
    summary = {"service_median_ms": float(np.median(times)), "service_p99_ms": float(np.percentile(times, 99))}
    return {**summary, "samples_ms": [float(t) for t in times]} if samples else summary


def measure_link_ms(model_path: str, images: np.ndarray, gaps_ms: Sequence[float], *, n: int = 100,
                    device: str = "CPU", frontend_cpus: tuple[int, ...] | None = None,
                    worker_cpus: tuple[int, ...] | None = None, seed: int = 0) -> pd.DataFrame:
    """The one-way time of a message between the frontend and a worker process after both were idle
    for a gap, through the real :class:`~flake_lib.serving.ProcessTransport` (pickling, pipes, the
    wake-up of a sleeping process and core). For each gap ``g`` (``n`` times, gaps interleaved in a
    seeded order): wait idle until ``intended = now + g`` (as the frontend waits for an arrival), send
    one query, wait for its answer; ``one_way = (answered − intended − service) / 2`` with the
    worker's own ``service`` time. Returns ``gap_ms, one_way_ms`` (every sample)."""
    transport = serving.ProcessTransport()
    transport.start([serving.WorkerSpec("L0", model_path, device, threads=1, cpus=worker_cpus)])
    rows = []
    try:
        with pinned(frontend_cpus):
            order = np.random.default_rng(seed).permutation(np.repeat(np.asarray(gaps_ms, dtype=float), n))
            for i, gap in enumerate(order):
                intended = time.monotonic() + gap / 1000
                while time.monotonic() < intended:
                    transport.receive(intended - time.monotonic())
                transport.send("L0", i, images[i % len(images)][None])
                message = None
                while not isinstance(message, serving.Response):
                    message = transport.receive(5.0)
                answered = time.monotonic()
                rows.append({"gap_ms": float(gap),
                             "one_way_ms": 1000 * (answered - intended - message.service_s) / 2})
    finally:
        transport.close()
    return pd.DataFrame(rows)


def link_curve(samples_ms: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray] | None:
    """``(gaps_s, one_way_s)``: the median one-way time per gap of :func:`measure_link_ms`'s samples,
    in seconds, as :class:`~flake_lib.serving.simulation.SimulatedTransport` takes it (``None``: none)."""
    if samples_ms is None:
        return None
    by_gap = samples_ms.groupby("gap_ms")["one_way_ms"].median()
    return by_gap.index.to_numpy(float) / 1000, by_gap.to_numpy(float) / 1000


def simulated_transport(service_ms: dict[str, Sequence[float]], *, cpus: int | None = None, sharing: str = "time",
                        link_ms: float = 0.0, link_curve_ms: pd.DataFrame | None = None, frontend_ms: float = 0.0,
                        pad_ms: dict[str, float] | None = None, startup_s: float = 1.0, seed: int = 0):
    """The discrete-event transport (:class:`~flake_lib.serving.simulation.SimulatedTransport`) from
    what is measured in milliseconds: service-time samples per model, the link offset and curve
    (:func:`link_curve`), the frontend's time per message, device times ``pad_ms`` per model."""
    from .serving.simulation import SimulatedTransport

    return SimulatedTransport({m: np.asarray(v) / 1000 for m, v in service_ms.items()}, cpus=cpus, sharing=sharing,
                              pad_s={m: t / 1000 for m, t in pad_ms.items()} if pad_ms else None,
                              link_s=link_ms / 1000, link_curve=link_curve(link_curve_ms),
                              frontend_s=frontend_ms / 1000, startup_s=startup_s, seed=seed)


# ----------------------------------------------------------------------------- faults and schedules

@dataclass(frozen=True)
class FaultConfig:
    """Fault rates per second, laid out on a timeline that does not depend on the load.

    ``straggler_rate_per_s``: straggler events per second (a Poisson process in time); each delays
    the first query sent at or after its time by ``(s − 1) · reference_ms`` (``s`` a trace slowdown
    above 1), capped at ``cap_ms``. ``pause_rate_per_s``: SIGSTOP windows of ``pause_ms`` per second,
    each on a role drawn from ``roles``. ``kills``: SIGKILLs per run (at uniform times in the middle
    60 % of ``duration_s``, roles drawn from ``roles``) — a count, not a rate: a killed worker needs
    seconds to restart. With one fault seed, runs of the same length at different loads replay the
    same faults at the same times: load sweep levels differ only in load.
    """

    straggler_rate_per_s: float = 2.0
    reference_ms: float = 30.0
    cap_ms: float = 1000.0
    pause_rate_per_s: float = 0.05
    pause_ms: float = 200.0
    kills: int = 0
    roles: tuple[str, ...] = ("deployed0", "deployed1", "redundant0")


def straggler_reference_ms(slowdowns: np.ndarray, bound_ms: float, share_over_bound: float) -> float:
    """The reference task time ``T`` that maps a trace slowdown ``s`` to a delay ``(s − 1)·T`` so that
    a share ``share_over_bound`` of the stragglers (``s > 1``) is delayed beyond ``bound_ms``:
    ``T = bound_ms / q_{1−share}(s − 1)``.

    Why: the trace gives ratios (a task's time over its job's typical task), not times; ``(s − 1)``
    times a 0.8 ms inference is far below any timing bound for almost every ratio, so such faults
    could never be what makes the tail. Tying the reference to the bound states what share of the
    stragglers the recovery has to cover, whatever the model's speed.
    """
    excess = np.asarray(slowdowns, dtype=float)
    excess = excess[excess > 1] - 1
    if excess.size == 0 or not 0 < share_over_bound < 1:
        raise ValueError("need slowdowns above 1 and a share strictly between 0 and 1")
    return float(bound_ms / np.quantile(excess, 1 - share_over_bound))


@dataclass
class FaultPlan:
    """Faults of one schedule, by role: ``delays_s[i]`` of query ``i``, ``pauses`` as
    ``(role, start_s, end_s)``, ``kills`` as ``(role, at_s)``."""

    delays_s: np.ndarray
    pauses: list[tuple[str, float, float]] = field(default_factory=list)
    kills: list[tuple[str, float]] = field(default_factory=list)

    def for_method(self, method: str, instances: int = 1, k: int = 2) -> serving.FaultSchedule:
        """The plan on ``method``'s workers (faults on roles it lacks are dropped)."""
        roles = role_map(method, instances, k)
        return serving.FaultSchedule(
            np.asarray(self.delays_s, dtype=float),
            pauses=[(roles[r], s, e) for r, s, e in self.pauses if r in roles],
            kills=[(roles[r], t) for r, t in self.kills if r in roles])

    @classmethod
    def none(cls, n: int) -> FaultPlan:
        return cls(np.zeros(n))


@dataclass
class FaultTimeline:
    """Faults in time, independent of the queries: ``stragglers`` ``(at_s, delay_s)``, ``pauses``
    ``(role, start_s, end_s)``, ``kills`` ``(role, at_s)``."""

    stragglers: list[tuple[float, float]]
    pauses: list[tuple[str, float, float]]
    kills: list[tuple[str, float]]


def fault_timeline(duration_s: float, config: FaultConfig, slowdowns: np.ndarray, seed: int) -> FaultTimeline:
    """Seeded faults over ``[0, duration_s)`` (see :class:`FaultConfig`); the same seed gives the same
    faults at the same times whatever the load."""
    excess = np.asarray(slowdowns, dtype=float)
    excess = excess[excess > 1] - 1
    rng = np.random.default_rng([seed, 1])
    count = rng.poisson(config.straggler_rate_per_s * duration_s)
    times = np.sort(rng.uniform(0, duration_s, count))
    delays = (np.minimum(rng.choice(excess, count) * config.reference_ms, config.cap_ms) / 1000
              if count and excess.size else np.zeros(count))
    rng = np.random.default_rng([seed, 2])
    pauses = []
    for _ in range(rng.poisson(config.pause_rate_per_s * duration_s)):
        start = float(rng.uniform(0, max(duration_s - config.pause_ms / 1000, 0.0)))
        pauses.append((str(rng.choice(config.roles)), start, start + config.pause_ms / 1000))
    rng = np.random.default_rng([seed, 3])
    kills = [(str(rng.choice(config.roles)), float(rng.uniform(0.2, 0.8) * duration_s)) for _ in range(config.kills)]
    return FaultTimeline(list(zip(times.tolist(), delays.tolist())), sorted(pauses, key=lambda p: p[1]),
                         sorted(kills, key=lambda p: p[1]))


def fault_plan(arrivals: np.ndarray, timeline: FaultTimeline) -> FaultPlan:
    """The timeline on a schedule: each straggler delays the first query whose intended time is at or
    after the straggler's (one straggler per query: a later one moves to the next free query);
    stragglers, pauses and kills after the last arrival are dropped."""
    n = len(arrivals)
    delays = np.zeros(n)
    end = float(arrivals[-1]) if n else 0.0
    for at, delay in timeline.stragglers:
        q = int(np.searchsorted(arrivals, at))
        while q < n and delays[q] > 0:
            q += 1
        if q < n:
            delays[q] = delay
    return FaultPlan(delays, [p for p in timeline.pauses if p[1] < end], [k for k in timeline.kills if k[1] < end])


def share_of_stragglers_over(plan: FaultPlan, bound_ms: float) -> float:
    """Share of the delayed queries whose delay exceeds ``bound_ms``."""
    d = plan.delays_s[plan.delays_s > 0]
    return float((d > bound_ms / 1000).mean()) if d.size else float("nan")


@dataclass
class Schedule:
    """One open-loop load: intended times, the test images asked (indices) and the faults."""

    qps: float
    arrivals: np.ndarray
    index: np.ndarray
    plan: FaultPlan
    seed: int
    tags: np.ndarray | None = None  #: Fig. 6: the number unavailable in a query's burst (0: none)

    @property
    def n(self) -> int:
        return len(self.arrivals)


def make_schedule(qps: float, n: int, pool_size: int, config: FaultConfig | None, slowdowns: np.ndarray,
                  seed: int, fault_seed: int | None = None) -> Schedule:
    """Poisson arrivals at ``qps``, ``n`` test images drawn at random (both from ``seed``), and the
    faults of ``config`` (``None``: no fault) on a timeline from ``fault_seed`` (default ``seed``)
    as long as the expected run, ``n / qps``."""
    arrivals = serving.poisson_arrivals(qps, n, seed)
    index = np.random.default_rng([seed, 4]).integers(0, pool_size, n)
    if config is None:
        return Schedule(qps, arrivals, index, FaultPlan.none(n), seed)
    timeline = fault_timeline(n / qps, config, slowdowns, seed if fault_seed is None else fault_seed)
    return Schedule(qps, arrivals, index, fault_plan(arrivals, timeline), seed)


def level_seed(seed: int, qps: float) -> int:
    """The arrival seed of a load level: every method (and both modes) replay the same schedule."""
    return int(seed) * 100_003 + int(round(qps * 10))


#: A load sweep's schedules come from ``seed + SWEEP_SEED_OFFSET`` (notebook 04's sweep; notebook 07 replays
#: it, and its fleets draw their fault timelines the same way).
SWEEP_SEED_OFFSET = 11


def level_schedule(qps: float, seconds: float, pool_size: int, config: FaultConfig | None, slowdowns: np.ndarray,
                   seed: int) -> Schedule:
    """One level of a load sweep: ``round(qps · seconds)`` queries, arrivals from the level's seed, and
    the faults of one timeline (``seed``) shared by every level — the levels differ only in load."""
    return make_schedule(qps, max(int(round(qps * seconds)), 2), pool_size, config, slowdowns,
                         level_seed(seed, qps), fault_seed=seed)


# ----------------------------------------------------------------------------- Fig. 6 bursts

def burst_schedule(counts: Sequence[int], *, bursts: int, k: int = 2, gap_s: float = 0.12,
                   stall_s: float = 0.05, warmup: int = 8, warmup_spacing_s: float = 0.01,
                   start_s: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrivals, delays and tags of the Fig. 6 experiment: ``m`` queries unavailable at the same moment.

    After ``warmup`` ordinary queries (they fill Flake's cache of completed queries), ``bursts``
    rounds each send, for every ``m`` of ``counts``, a burst of ``M = k·⌈m/k⌉`` queries with the same
    intended time (one burst every ``gap_s``; bursts start at a coding-group boundary). Query ``u`` of
    a burst goes to deployed instance ``u mod k`` (the frontend's rotation). On instances
    ``1 … M − m`` the first burst query is an ordinary one (it completes a coding group, so that the
    burst holds exactly ``m`` unavailable queries); on every instance the first other burst query is
    delayed ``stall_s`` (≫ the timing bound) and the rest wait behind it in the instance's inbox. So
    all ``m`` are outstanding past the bound at once. ``tags[i] = m`` for those ``m`` queries, 0 for
    every other query.
    """
    if any(m < 1 for m in counts):
        raise ValueError("every count of unavailable queries must be at least 1")
    warmup = k * math.ceil(warmup / k)
    arrivals = [start_s + j * warmup_spacing_s for j in range(warmup)]
    delays, tags = [0.0] * warmup, [0] * warmup
    t = start_s + warmup * warmup_spacing_s + gap_s
    for _ in range(bursts):
        for m in counts:
            size = k * math.ceil(m / k)
            ordinary = size - m  # < k: the first query on instances 1..ordinary completes a group
            stalled: set[int] = set()
            for u in range(size):
                instance, position = u % k, u // k
                is_ordinary = position == 0 and 1 <= instance <= ordinary
                arrivals.append(t)
                tags.append(0 if is_ordinary else m)
                first = not is_ordinary and instance not in stalled
                if first:
                    stalled.add(instance)
                delays.append(stall_s if first else 0.0)
            t += gap_s
    return np.asarray(arrivals), np.asarray(delays), np.asarray(tags, dtype=int)


def recovered_by(part: pd.DataFrame) -> str:
    """``"source:count;…"``: what answered the queries (``recovered_by`` when redundancy did, else the
    outcome), most frequent first."""
    source = part["recovered_by"].where(part["recovered_by"].notna(), part["outcome"]) \
        if "recovered_by" in part else part["outcome"]
    counts = source.fillna("unanswered").value_counts()
    return ";".join(f"{s}:{c}" for s, c in counts.items())


def merge_counts(strings) -> str:
    """Add up ``"source:count;…"`` strings (:func:`recovered_by`): ``["a:1;b:2", "a:3"] → "a:4;b:2"``."""
    total: dict[str, int] = {}
    for text in strings:
        for item in filter(None, str(text).split(";")):
            source, _, count = item.rpartition(":")
            total[source] = total.get(source, 0) + int(count)
    return ";".join(f"{s}:{c}" for s, c in sorted(total.items(), key=lambda kv: -kv[1]))


def fig6_rows(records: pd.DataFrame, tags: np.ndarray) -> list[dict]:
    """Per number unavailable ``m``: the latency of the ``m``-burst queries, how many redundancy
    recovered (outcome in :data:`RECOVERED`) and what answered them."""
    rows = []
    tagged = records.assign(m=np.asarray(tags))
    for m, part in tagged[tagged["m"] > 0].groupby("m"):
        summary = stats.tail_summary(part["latency_ms"])
        rows.append({"n_unavailable": int(m), "n": len(part),
                     "n_recovered": int(part["outcome"].isin(RECOVERED).sum()),
                     "n_declared_unavailable": int(part["unavailable"].sum()),
                     "median_ms": summary["median_ms"], "p99_ms": summary["p99_ms"],
                     "max_ms": summary["max_ms"], "recovered_by": recovered_by(part)})
    return rows


# ----------------------------------------------------------------------------- interleaving

def rotated_orders(entries: Sequence, repeats: int) -> list[list]:
    """The run order of each repeat: ``entries`` rotated by the repeat number, so that over
    ``len(entries)`` repeats every entry runs once in every position."""
    entries = list(entries)
    n = len(entries)
    return [entries[r % n:] + entries[: r % n] if n else [] for r in range(repeats)]


# ----------------------------------------------------------------------------- summaries

def summarise(records: pd.DataFrame) -> dict:
    """One run: ``tail_summary`` (failed = +inf), accuracy, unavailable and outcome counts."""
    s = stats.tail_summary(records["latency_ms"])
    row = {"n_queries": len(records), "n_failed": s["n_failed"],
           "n_lost": int(records["lost"].sum()) if "lost" in records else s["n_failed"],
           **{key: s[key] for key in stats.TAIL_KEYS},
           "accuracy": float(records["correct"].mean()) if len(records) else float("nan"),
           "n_unavailable": int(records["unavailable"].sum())}
    row.update({f"n_{o}": int((records["outcome"] == o).sum()) for o in serving.OUTCOMES})  # n_failed again
    if "recovered_by" in records:
        row["n_retry"] = int((records["recovered_by"] == "retry").sum())
        row["n_partner"] = int((records["recovered_by"] == "partner").sum())
    return row


def tail_statistic(n_queries: int) -> str:
    """``p999_ms`` when a run holds at least 10 queries above its p99.9 (``n ≥ 10⁴``), else ``p99_ms``."""
    return "p999_ms" if n_queries >= 10_000 else "p99_ms"


def fault_windows(plan: FaultPlan, roles: dict[str, str],
                  restarts: Sequence[tuple[str, float]] = ()) -> dict[str, list[tuple[float, float]]]:
    """Per worker, the windows in which an injected pause or kill held it: a kill until the worker's
    first restart after it (``restarts``: ``(worker, s)``, as in the frontend's stats), else to the end."""
    windows: dict[str, list[tuple[float, float]]] = {}
    for role, start, end in plan.pauses:
        if role in roles:
            windows.setdefault(roles[role], []).append((start, end))
    for role, at in plan.kills:
        if role in roles:
            worker = roles[role]
            back = min((t for w, t in restarts if w == worker and t >= at), default=math.inf)
            windows.setdefault(worker, []).append((at, back))
    return windows


def fault_carriers(records: pd.DataFrame, plan: FaultPlan, roles: dict[str, str],
                   restarts: Sequence[tuple[str, float]] = ()) -> pd.DataFrame:
    """Per query: ``own_delay`` (it was a straggler), ``queued`` (it was sent to an instance while a
    straggler sent before it was still being delayed there), ``instance_fault`` (its instance, or a
    redundant instance while it was unavailable, was paused or killed during its life); ``carried``:
    any of them."""
    sent = records["sent_s"].astype(float).to_numpy()
    answered = records["answered_s"].astype(float).to_numpy()
    answered = np.where(np.isnan(answered), np.inf, answered)
    instance = records["instance"].astype(object).to_numpy()
    delay = np.asarray(plan.delays_s, dtype=float)[: len(records)]
    own = delay > 0
    queued = np.zeros(len(records), dtype=bool)
    for s_ in np.flatnonzero(own):
        if instance[s_] is None:
            continue
        later = np.flatnonzero(instance == instance[s_])
        later = later[later > s_]
        queued[later[sent[later] < sent[s_] + delay[s_]]] = True
    windows = fault_windows(plan, roles, restarts)
    redundant = [w for r, w in roles.items() if r.startswith("redundant")]
    unavailable = records["unavailable"].to_numpy(dtype=bool)
    hit = np.zeros(len(records), dtype=bool)
    for worker, spans in windows.items():
        for start, end in spans:
            overlap = (sent <= end) & (answered >= start)
            hit |= overlap & ((instance == worker) | (unavailable & (worker in redundant)))
    return pd.DataFrame({"own_delay": own, "queued": queued & ~own, "instance_fault": hit,
                         "carried": own | queued | hit})


def tail_attribution(records: pd.DataFrame, plan: FaultPlan, roles: dict[str, str], top: float = 0.001,
                     restarts: Sequence[tuple[str, float]] = (), k: int = 2) -> dict:
    """Of the slowest ``top`` share of queries (failed ones first): how many carried an injected fault
    (:func:`fault_carriers`), and how many had their whole coding group (queries ``gk … gk+k−1``)
    unavailable (``share_group_unavailable``: a group code with one parity query cannot rebuild them
    from the group alone), as shares."""
    latency = records["latency_ms"].astype(float).fillna(np.inf).to_numpy()
    n_top = max(1, int(math.ceil(top * len(records))))
    slowest = np.argsort(-latency, kind="stable")[:n_top]
    carriers = fault_carriers(records, plan, roles, restarts).iloc[slowest]
    unavailable = records["unavailable"].to_numpy(dtype=bool)
    n = len(unavailable) - len(unavailable) % k
    whole = np.zeros(len(unavailable), dtype=bool)
    whole[:n] = np.repeat(unavailable[:n].reshape(-1, k).all(axis=1), k)
    return {"n_top": n_top, **{f"share_{c}": float(carriers[c].mean()) for c in carriers.columns},
            "share_group_unavailable": float(whole[slowest].mean())}


def paired_table(table: pd.DataFrame, comparisons: Sequence[tuple[str, str]],
                 statistics: Sequence[str] = ("gpm_ms", "gmm_ms"), by: str = "repeat") -> pd.DataFrame:
    """``a − b`` of each statistic inside each repeat, with its bootstrap interval over repeats
    (:func:`flake_lib.stats.paired_difference`) and what it says (``not distinguishable`` when the
    interval covers 0)."""
    rows = []
    for a, b in comparisons:
        for statistic in statistics:
            both = pd.concat([table[table["method"] == a].set_index(by)[statistic].rename("a"),
                              table[table["method"] == b].set_index(by)[statistic].rename("b")],
                             axis=1).dropna()
            d = stats.paired_difference(both["a"], both["b"])
            says = stats.interval_says(d["low"], d["high"])
            says = {"a < b": f"{a} < {b}", "a > b": f"{a} > {b}"}.get(says, says)
            rows.append({"comparison": f"{a} − {b}", "statistic": statistic, "n": d["n"],
                         "mean_ms": d["mean"], "low_ms": d["low"], "high_ms": d["high"], "says": says,
                         "per_repeat_ms": ", ".join(f"{v:.2f}" for v in d["differences"])})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- capacity

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


# ----------------------------------------------------------------------------- prediction

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


def simulate(method: str, arrivals: np.ndarray, delays_s: np.ndarray, service_s: dict[str, float],
             bound_s: float | None, k: int = 2, instances: int = 1) -> np.ndarray:
    """Latency (ms) of every query under a queueing model of the serving system with independent
    devices (the emulated mode): each instance a FIFO server with a fixed service time per model
    (``service_s``: ``F``, ``PM``, ``Flake``, ``NKD``), stragglers occupying their deployed instance
    for their delay, the timing bound ``bound_s`` (``None``: eager), ParM's decoding, Flake's partner
    recovery when two members of a group are stuck, replicas/students re-running unavailable queries.
    Not modelled: the host CPU, the frontend, pauses, kills, deadlines and the recovery budget. Each
    method's rule is its registry entry's ``queueing`` (:mod:`flake_lib.methods`); a method without one
    (``equal``, ``approxifer``) is refused, not treated as no redundancy.
    """
    spec = methods.get(method)
    if spec.redundant is not None and spec.queueing is None:
        raise ValueError(f"the queueing model has no rule for {method!r} (its registry entry has no queueing rule)")
    n = len(arrivals)
    arrivals = np.asarray(arrivals, dtype=float)
    bound = 0.0 if bound_s is None else bound_s
    finish = np.empty(n)
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


# ----------------------------------------------------------------------------- runs

@dataclass
class Bench:
    """Runs methods on schedules in one mode: the transport is started once with every worker the
    runs need, and kept. ``images``/``labels``: the pool of test queries (schedules index it)."""

    mode: str
    workers: Sequence[str]
    model_paths: dict[str, str]
    images: np.ndarray
    labels: np.ndarray
    emulated_ms: dict[str, float] | None = None
    device: str = "CPU"
    frontend_cpus: tuple[int, ...] | None = None
    worker_cpus: tuple[int, ...] | None = None
    k: int = 2
    encoder: str = "addition"
    cache_size: int = 64
    drain_s: float = 10.0
    restart_delay_s: float = 1.0
    recovery: serving.RecoveryBudget | None = None
    start_timeout_s: float = 300.0
    transport: serving.ProcessTransport | None = None  #: or any transport of its interface (Ray, simulated)
    startup_s: float = 0.0
    engine: str = "process"  #: what :meth:`start` starts: ``process`` (worker processes here) or ``ray`` (actors)
    ray_address: str | None = None  #: the Ray cluster to join (``None``: ``RAY_ADDRESS``, else a local one)
    ray_placement: dict[str, str] | None = None  #: worker -> custom resource of its node (``ray`` only)
    plan: progress.Plan | None = None  #: where each run reports its progress (the terminal's status line)

    @classmethod
    def simulated(cls, mode: str, workers: Sequence[str], service_ms: dict[str, Sequence[float]], images: np.ndarray,
                  labels: np.ndarray, *, cpus: int | None = None, sharing: str = "time", link_ms: float = 0.0,
                  link_curve_ms: pd.DataFrame | None = None, frontend_ms: float = 0.0, startup_s: float = 1.0,
                  seed: int = 0, **kwargs) -> Bench:
        """The same experiment over the discrete-event model (:mod:`flake_lib.serving.simulation`): each
        worker draws its model's service times from ``service_ms`` (samples, ms); ``cpus`` shared cores
        (``None``: one per worker) shared by ``sharing``; ``link_ms`` one way per message, plus
        ``link_curve_ms`` (``gap_ms, one_way_ms``, as :func:`measure_link_ms` returns: its median per
        gap) at the receiver's idle time; ``frontend_ms`` per message."""
        transport = simulated_transport(service_ms, cpus=cpus, sharing=sharing, link_ms=link_ms,
                                        link_curve_ms=link_curve_ms, frontend_ms=frontend_ms, startup_s=startup_s,
                                        seed=seed)
        bench = cls(mode, workers, {m: m for m in service_ms}, images, labels, transport=transport, **kwargs)
        transport.start(worker_specs(bench.workers, bench.model_paths, mode, emulated_ms=bench.emulated_ms))
        return bench

    def start(self) -> Bench:
        if self.transport is None:
            began = time.monotonic()
            if self.engine == "process":
                self.transport = serving.ProcessTransport(start_timeout_s=self.start_timeout_s)
            elif self.engine == "ray":  # the IR files travel with the actors: no shared folder on the nodes
                self.transport = serving.RayTransport(self.ray_placement, address=self.ray_address or None,
                                                      ship_models=True, start_timeout_s=self.start_timeout_s)
            else:
                raise ValueError(f"engine {self.engine!r}: process or ray")
            self.transport.start(worker_specs(self.workers, self.model_paths, self.mode,
                                              emulated_ms=self.emulated_ms, device=self.device,
                                              cpus=self.worker_cpus))
            self.startup_s = time.monotonic() - began
        return self

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def __enter__(self) -> Bench:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def settle(self, timeout_s: float = 120.0) -> float:
        """Before a run: every worker alive (a dead one restarted, one restarting waited for) and
        idle (a barrier request to each — a malformed one, answered at once with an error — comes back
        after everything queued before it). Returns the seconds it took."""
        t = self.transport
        if hasattr(t, "reset"):  # a simulation: every worker alive and idle at once
            t.reset()
            return 0.0
        began = time.monotonic()
        for w in self.workers:
            if t.is_alive(w):
                t.resume(w)  # a pause window cut short by the end of a run
            else:
                t.restart(w)  # dead (restarted) or still starting (left to start): any transport
        barrier = np.zeros(1, dtype=np.float32)
        pending: dict[str, int | None] = {}
        while time.monotonic() < began + timeout_s:
            for w in self.workers:
                if w not in pending and t.is_alive(w):
                    pending[w] = next(_BARRIER_IDS)
                    t.send(w, pending[w], barrier)
            message = t.receive(0.05)
            while message is not None:
                if isinstance(message, serving.WorkerEvent) and message.kind == "exit":
                    pending.pop(message.worker, None)
                    t.restart(message.worker)
                elif isinstance(message, serving.Response) and pending.get(message.worker) == message.request_id:
                    pending[message.worker] = None
                message = t.receive(0.0)
            if len(pending) == len(self.workers) and all(v is None for v in pending.values()):
                return time.monotonic() - began
        raise RuntimeError(f"workers not idle within {timeout_s} s: "
                           f"{[w for w in self.workers if pending.get(w, 0) is not None]}")

    def run(self, method: str, schedule: Schedule, *, faults: bool = True, bound_ms: float | None = 10.0,
            instances: int = 1, recovery: serving.RecoveryBudget | None = None) -> tuple[pd.DataFrame, dict]:
        """Serve ``schedule`` with ``method``; ``bound_ms=None`` decodes eagerly (for ``hedge`` the bound
        is the hedging delay). Returns the records and a summary (:func:`summarise`, utilisation)."""
        import psutil

        self.start()
        settle_s = self.settle()
        plan = schedule.plan if faults else FaultPlan.none(schedule.n)
        dep = deployment(method, instances, self.k)
        run_stats: dict = {}
        if self.plan is not None:
            self.plan.run(f"{method} at {schedule.qps:g} qps ({self.mode})",
                          float(schedule.arrivals[-1]) if schedule.n else 0.0)
        psutil.cpu_percent(None)
        began = time.monotonic()
        records = serving.serve(
            self.transport, method, dep, self.images[schedule.index], self.labels[schedule.index],
            schedule.arrivals, plan.for_method(method, instances, self.k), k=self.k, encoder=self.encoder,
            timing_bound_s=None if bound_ms is None else bound_ms / 1000, cache_size=self.cache_size,
            drain_s=self.drain_s, recovery=recovery or self.recovery, restart_delay_s=self.restart_delay_s,
            frontend_cpus=self.frontend_cpus, stats=run_stats,
            progress=self.plan.tick if self.plan is not None else None)
        elapsed = time.monotonic() - began
        cpu = psutil.cpu_percent(None)
        frame = pd.DataFrame(records)
        util = run_stats.get("utilisation", {})
        redundant = dep.parity + dep.backup
        info = {"method": method, "mode": self.mode, "faults": "injected" if faults else "none",
                "qps": schedule.qps, "bound_ms": bound_ms, "instances": instances, **summarise(frame),
                "cpu_percent": cpu, "cpu_util": cpu / 100,
                "deployed_util": float(np.mean([util.get(w, np.nan) for w in dep.deployed])),
                "parity_util": float(np.mean([util.get(w, np.nan) for w in dep.parity])) if dep.parity else np.nan,
                "backup_util": float(np.mean([util.get(w, np.nan) for w in dep.backup])) if dep.backup else np.nan,
                "wall_s": elapsed, "settle_s": settle_s, "deaths": len(run_stats.get("deaths", [])),
                "restarts": len(run_stats.get("restarts", [])), "restart_times": list(run_stats.get("restarts", [])),
                **{key: v for key, v in run_stats.items() if key.startswith(("recovery_", "deadline_missed"))}}
        info["redundant_util"] = (float(np.mean([util.get(w, np.nan) for w in redundant])) if redundant
                                  else np.nan)
        info["placement"] = str({"frontend": run_stats.get("frontend_cpus"),
                                 "workers": sorted({c for w in dep.deployed + redundant
                                                    for c in run_stats.get("placement", {}).get(w, ())})})
        return frame, info


# ----------------------------------------------------------------------------- experiments

def headline_plan(methods: Sequence[str], repeats: int, *, control_repeats: int = 0,
                  peers: Sequence[str] = (), peer_repeats: int = 0) -> list[list[tuple[str, str]]]:
    """The interleaved run order at the headline point: per repeat, ``(method, faults)`` entries —
    every method of ``methods`` with injected faults, the no-fault control (``("none", "none")``) in
    the first ``control_repeats`` repeats and the ``peers`` in the first ``peer_repeats`` — rotated by
    the repeat number."""
    plan = []
    for r in range(repeats):
        entries = [(m, "injected") for m in methods]
        if r < control_repeats:
            entries.append(("none", "none"))
        if r < peer_repeats:
            entries += [(m, "injected") for m in peers]
        plan.append(rotated_orders(entries, r + 1)[r])
    return plan


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


SWEEP_COLUMNS = ["method", "mode", "qps", "repeat", "median_ms", "p99_ms", "p999_ms", "max_ms", "gmm_ms",
                 "gpm_ms", "cpu_util", "parity_util", "backup_util", "accuracy", "n_queries", "n_failed"]
TABLE1_COLUMNS = ["method", "repeat", "order", "mode", "faults", "qps", "n_queries", "n_lost", "n_failed",
                  "median_ms", "p99_ms", "p999_ms", "max_ms", "gmm_ms", "gpm_ms", "accuracy", "n_unavailable",
                  *[f"n_{o}" for o in serving.OUTCOMES if o != "failed"], "cpu_percent"]  # n_failed: above
BOUND_COLUMNS = ["method", "mode", "point", "qps", "bound_ms", "repeat", "median_ms", "p99_ms", "p999_ms",
                 "max_ms", "gmm_ms", "gpm_ms", "n_queries", "n_failed", "n_reconstructed"]
FIG6_COLUMNS = ["method", "n_unavailable", "instances", "repeat", "n", "n_recovered", "median_ms", "p99_ms",
                "max_ms", "recovered_by"]


def ordered(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``table`` with the contract's ``columns`` first (in order), then any others."""
    return table[list(columns) + [c for c in table.columns if c not in columns]]


TIME_COLUMNS = ("intended_s", "sent_s", "answered_s", "delay_s", "latency_ms", "unavailable_s")


def write_queries(queries: pd.DataFrame, path) -> None:
    """One row per query of the headline runs, zstd-compressed: times as float32 (a few µs of
    resolution) split by byte stream, query and group ids as int32 delta-encoded, text columns as
    dictionaries (about 12 bytes a query)."""
    times = [c for c in TIME_COLUMNS if c in queries]
    ids = [c for c in ("query", "group") if c in queries]
    table = queries.astype({**{c: "float32" for c in times}, **{c: "Int32" for c in ids}})
    text = [c for c in table.columns if table[c].dtype == object or pd.api.types.is_string_dtype(table[c])]
    table.to_parquet(path, index=False, compression="zstd", compression_level=9, use_dictionary=text,
                     column_encoding={**{c: "BYTE_STREAM_SPLIT" for c in times},
                                      **{c: "DELTA_BINARY_PACKED" for c in ids}})


def abba_order(engines: Sequence[str], repeats: int) -> list[tuple[str, int]]:
    """``(engine, repeat)`` in ABBA order (``A B B A A B …`` for two engines): a drift that is linear
    in time moves both engines alike, and each engine's runs come in blocks (one start-up per block)."""
    order = []
    for repeat in range(repeats):
        order += [(engine, repeat) for engine in (engines if repeat % 2 == 0 else list(reversed(engines)))]
    return order


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


def engine_overhead(runs: pd.DataFrame, base: str = "process", other: str = "ray",
                    statistics: Sequence[str] = ("median_ms", "p999_ms", "gmm_ms", "gpm_ms")) -> pd.DataFrame:
    """Per method and statistic: the median over repeats on each engine and the paired difference
    ``other − base`` within each repeat (median, min and max over repeats): what the engine adds."""
    rows = []
    for method, part in runs.groupby("method", sort=False):
        by = part.pivot_table(index="repeat", columns="engine", values=list(statistics))
        for statistic in statistics:
            difference = by[(statistic, other)] - by[(statistic, base)]
            rows.append({"method": method, "statistic": statistic, base: float(by[(statistic, base)].median()),
                         other: float(by[(statistic, other)].median()), "difference": float(difference.median()),
                         "difference_min": float(difference.min()), "difference_max": float(difference.max()),
                         "repeats": len(difference)})
    return pd.DataFrame(rows)
