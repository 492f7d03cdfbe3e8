"""The bench: one transport per mode holding every worker the runs need, and the runs on it.

:class:`Bench` starts its transport once (worker processes here, Ray actors on edge nodes, or the
discrete-event model: :meth:`Bench.simulated`); before each run a barrier waits until every worker is
alive and idle; :meth:`Bench.run` serves one schedule with one method and returns its records and a
one-row summary (:func:`~.analysis.summarise`: a failed query counts as ``+inf``). Service times
(:func:`measure_service_ms`) and the frontend–worker link (:func:`measure_link_ms`) are measured here
too, as a worker serves.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .. import progress, serving
from ..serving import pinning
from .analysis import fault_events, summarise
from .faults import FaultPlan
from .roles import deployment, worker_model, worker_specs
from .schedules import Schedule

_BARRIER_IDS = itertools.count(-1, -1)  # request ids of barriers: negative, never a frontend's


def measure_service_ms(model_path: str, images: np.ndarray, *, device: str = "CPU", n: int = 200,
                       warmup: int = 20, cpus: tuple[int, ...] | None = None, samples: bool = False,
                       pad_ms: float = 0.0) -> dict:
    """Median and p99 time of one inference (batch 1, one thread) of an exported model, in ms, on the
    worker CPUs ``cpus`` (this process is pinned there while it measures); with ``samples``, every
    measured time too (``samples_ms``: the distribution a simulation draws from). Each inference is
    timed as a worker serves it (:func:`~flake_lib.serving.transport.serve_one`); ``pad_ms``: padded to
    that device time by sleeping, as an emulated device's worker is: the time then holds the overshoot."""
    from ..runtime import CompiledModel
    from ..serving.transport import serve_one

    spec = serving.WorkerSpec("timing", model_path, device, threads=1, pad_to_s=pad_ms / 1000)
    with pinning.pinned(cpus):
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
        with pinning.pinned(frontend_cpus):
            order = np.random.default_rng(seed).permutation(np.repeat(np.asarray(gaps_ms, dtype=float), n))
            for i, gap in enumerate(order):
                intended = time.monotonic() + gap / 1000
                while time.monotonic() < intended:
                    transport.receive(intended - time.monotonic())
                transport.send("L0", i, images[i % len(images)][None])
                message, deadline = None, time.monotonic() + 60.0
                while not isinstance(message, serving.Response):
                    message = transport.receive(5.0)
                    if isinstance(message, serving.WorkerEvent) and message.kind == "exit":
                        raise RuntimeError("the worker measuring the link exited")
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the worker measuring the link left query {i} unanswered for 60 s")
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
    from ..serving.simulation import SimulatedTransport

    return SimulatedTransport({m: np.asarray(v) / 1000 for m, v in service_ms.items()}, cpus=cpus, sharing=sharing,
                              pad_s={m: t / 1000 for m, t in pad_ms.items()} if pad_ms else None,
                              link_s=link_ms / 1000, link_curve=link_curve(link_curve_ms),
                              frontend_s=frontend_ms / 1000, startup_s=startup_s, seed=seed)


#: Below this utilisation of the recovering instance, admission that deferred work decided by itself
#: (the E4 verdicts are then inconclusive).
ADMISSION_IDLE_UTIL = 0.10


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
    transport: serving.Transport | None = None  #: processes, Ray actors or the model (:meth:`start`, :meth:`simulated`)
    startup_s: float = 0.0
    engine: str = "process"  #: what :meth:`start` starts: ``process`` (worker processes here) or ``ray`` (actors)
    ray_address: str | None = None  #: the Ray cluster to join (``None``: ``RAY_ADDRESS``, else a local one)
    ray_placement: dict[str, str] | None = None  #: worker -> custom resource of its node (``ray`` only)
    plan: progress.Plan | None = None  #: where each run reports its progress (the terminal's status line)
    service_ms: dict[str, float] | None = None  #: per model, its measured service time here (native admission)
    dispatch: str = "round_robin"  #: how originals reach the deployed instances (``single_queue``: see serving)

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
        kwargs.setdefault("service_ms", {m: float(np.median(v)) for m, v in service_ms.items()})
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
            self.warm_up()
            self.startup_s = time.monotonic() - began
        return self

    def warm_up(self, requests: int = 30, timeout_s: float = 60.0) -> None:
        """``requests`` queries to every worker, one at a time, before any run is timed: a model's first
        inferences (and a new process's first pages) are slower than the rest. A worker that exits, or
        leaves a query unanswered for ``timeout_s``, is an error (not ``requests`` waits of ``timeout_s``)."""
        if not self.transport.reset():
            for w in self.workers:
                for i in range(requests):
                    rid = next(_BARRIER_IDS)
                    self.transport.send(w, rid, self.images[i % len(self.images)][None])
                    deadline = time.monotonic() + timeout_s
                    while True:
                        message = self.transport.receive(0.5)
                        if isinstance(message, serving.Response) and message.request_id == rid:
                            break
                        if isinstance(message, serving.WorkerEvent) and message.worker == w and message.kind == "exit":
                            raise RuntimeError(f"worker {w} exited during its warm-up (query {i + 1} of {requests})")
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"worker {w} did not answer warm-up query {i + 1} of {requests} "
                                               f"within {timeout_s:g} s")

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
        if t.reset():  # a simulation: every worker alive and idle at once
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

    def admission(self, recovery: serving.RecoveryBudget | None, workers: Sequence[str]) -> serving.RecoveryBudget:
        """The admission of a run: ``recovery`` (or the bench's, or the default) sized by each redundant
        worker's service time in this mode — its device time (emulated) or its measured time here
        (native) — unless it names its own."""
        budget = recovery or self.recovery or serving.RecoveryBudget()
        times = self.emulated_ms if self.mode == "emulated" else self.service_ms
        if budget.service_s is None and times:
            budget = replace(budget, service_s={w: times[worker_model(w)] / 1000 for w in workers
                                                if worker_model(w) in times})
        return budget

    def run(self, method: str, schedule: Schedule, *, faults: bool = True, bound_ms: float | None = 10.0,
            instances: int = 1, recovery: serving.RecoveryBudget | None = None,
            dispatch: str | None = None) -> tuple[pd.DataFrame, dict]:
        """Serve ``schedule`` with ``method``; ``bound_ms=None`` decodes eagerly (for ``hedge`` the bound
        is the hedging delay). Returns the records and a summary (:func:`summarise`, utilisation, what
        the admission did, the injected fault events: :func:`~.analysis.fault_events`)."""
        import psutil

        self.start()
        settle_s = self.settle()
        plan = schedule.plan if faults else FaultPlan.none(schedule.n)
        dep = deployment(method, instances, self.k)
        budget = self.admission(recovery, dep.parity + dep.backup)
        dispatch = dispatch or self.dispatch
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
            drain_s=self.drain_s, recovery=budget, restart_delay_s=self.restart_delay_s,
            frontend_cpus=self.frontend_cpus, stats=run_stats,
            progress=self.plan.tick if self.plan is not None else None, dispatch=dispatch)
        elapsed = time.monotonic() - began
        cpu = psutil.cpu_percent(None)
        frame = pd.DataFrame(records)
        util = run_stats.get("utilisation", {})
        redundant = dep.parity + dep.backup
        info = {"method": method, "mode": self.mode, "faults": "injected" if faults else "none",
                "qps": schedule.qps, "bound_ms": bound_ms, "instances": instances, "dispatch": dispatch,
                **summarise(frame), **fault_events(frame, plan, bound_ms, self.k),
                "cpu_percent": cpu, "cpu_util": cpu / 100,
                "deployed_util": float(np.mean([util.get(w, np.nan) for w in dep.deployed])),
                "parity_util": float(np.mean([util.get(w, np.nan) for w in dep.parity])) if dep.parity else np.nan,
                "backup_util": float(np.mean([util.get(w, np.nan) for w in dep.backup])) if dep.backup else np.nan,
                "wall_s": elapsed, "settle_s": settle_s, "deaths": len(run_stats.get("deaths", [])),
                "restarts": len(run_stats.get("restarts", [])), "restart_times": list(run_stats.get("restarts", [])),
                **{key: v for key, v in run_stats.items()
                   if key.startswith(("recovery_", "deadline_missed", "admission_", "parity_sent"))},
                "admission_max_utilisation": budget.max_utilisation}
        info["redundant_util"] = (float(np.mean([util.get(w, np.nan) for w in redundant])) if redundant
                                  else np.nan)
        # the harness acted by itself: admission deferred work while the instance that would do it was nearly idle
        info["admission_acted_idle"] = bool(info.get("recovery_deferred", 0) > 0 and redundant
                                            and info["redundant_util"] < ADMISSION_IDLE_UTIL)
        info["placement"] = str({"frontend": run_stats.get("frontend_cpus"),
                                 "workers": sorted({c for w in dep.deployed + redundant
                                                    for c in run_stats.get("placement", {}).get(w, ())})})
        return frame, info
