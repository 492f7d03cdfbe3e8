"""The edge serving system (DESIGN.md §5): worker processes, a FIFO frontend, an open-loop load.

- **Workers**: one OS process per model instance, each with an OpenVINO compiled model
  (:mod:`flake_lib.runtime`), serving its FIFO inbox one request at a time. A request may carry an
  injected delay (a straggler), slept *inside* the worker so that it occupies the instance.
- **Transport**: :class:`ProcessTransport` (multiprocessing queues) behind a small interface
  (``start / send / receive / pause / resume / kill / close``), so that the same frontend can run on
  another engine.
- **Frontend** (:func:`serve`): sends queries at their intended (Poisson) times, query ``i`` to
  deployed instance ``i mod k``; forms coding groups of ``k`` consecutive queries and sends each
  complete group's parity query; declares a query *unavailable* when its answer has not arrived
  within the timing bound (or its instance was killed) and recovers it by the method's rule; answers
  every query exactly once, with the first answer that arrives.

Methods (all on the same arrivals and faults):

==========  ==================================================================================
``none``    no redundancy: wait for ``F``
``srp``     a replica of ``F`` re-runs an unavailable query
``pm``      ``F_p(p) − Σ_{i≠j} F(x_i)`` with the PM parity model (one unavailable per group)
``flake``   the same with Flake's compressed parity model; any further unavailable query of a group
            is rebuilt with a cached completed query ``x_c`` as partner: ``F_p'(x + x_c) − F(x_c)``
``nkd``     the compressed replica (NKD student) re-runs unavailable queries, one after another
``hedge``   a duplicate to a replica after the hedging delay (the measured p95 latency)
``equal``   ParM's equal-resources baseline: as many extra instances of ``F`` as the method with
            parity has parity instances, queries spread round-robin over all of them
==========  ==================================================================================

Latency of a query = time its answer is ready − its *intended* send time (no coordinated
omission). Every query ends with exactly one outcome: ``original``, ``reconstructed``, ``replica``,
``student``, ``hedge``, ``error`` (malformed query) or ``failed`` (nothing could answer it).
"""

from __future__ import annotations

import heapq
import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass, field

import numpy as np
from multiprocessing.connection import wait

METHODS = ("none", "srp", "pm", "flake", "nkd", "hedge", "equal")
OUTCOMES = ("original", "reconstructed", "replica", "student", "hedge", "error", "failed")


# ----------------------------------------------------------------------------- transport

@dataclass(frozen=True)
class WorkerSpec:
    """One model instance: ``name`` (e.g. ``F0``, ``P0``), OpenVINO IR path, device, threads."""

    name: str
    model_path: str
    device: str = "CPU"
    threads: int = 1


@dataclass
class Response:
    worker: str
    request_id: int
    output: np.ndarray | None
    error: str | None
    started: float  #: ``time.monotonic()`` when the worker took the request
    finished: float


def _worker_main(spec: WorkerSpec, inbox, outbox) -> None:
    from .runtime import CompiledModel

    model = CompiledModel(spec.model_path, spec.device, spec.threads)
    outbox.send(("ready", spec.name, model.input_shape))
    while True:
        message = inbox.get()
        if message is None:
            return
        request_id, payload, delay_s = message
        started = time.monotonic()
        if delay_s > 0:
            time.sleep(delay_s)
        try:
            output, error = model(payload)[0], None
        except Exception as exc:  # noqa: BLE001 - a malformed query must not stop the worker
            output, error = None, f"{type(exc).__name__}: {exc}"
        outbox.send(Response(spec.name, request_id, output, error, started, time.monotonic()))


class ProcessTransport:
    """Workers as spawned OS processes; each has its own inbox queue and its own response pipe, so
    that a worker stopped by SIGSTOP (or killed) can never hold a lock another worker needs."""

    def __init__(self, start_timeout_s: float = 120.0):
        self.context = mp.get_context("spawn")
        self.inboxes, self.processes, self.readers, self.input_shapes = {}, {}, {}, {}
        self.pending: list[Response] = []
        self.start_timeout_s = start_timeout_s

    def start(self, specs: list[WorkerSpec]) -> None:
        for spec in specs:
            inbox = self.context.Queue()
            reader, writer = self.context.Pipe(duplex=False)
            process = self.context.Process(target=_worker_main, args=(spec, inbox, writer),
                                           name=f"flake-worker-{spec.name}", daemon=True)
            process.start()
            writer.close()
            self.inboxes[spec.name], self.processes[spec.name] = inbox, process
            self.readers[spec.name] = reader
        deadline = time.monotonic() + self.start_timeout_s
        while len(self.input_shapes) < len(specs):
            if time.monotonic() > deadline or not all(p.is_alive() for p in self.processes.values()):
                self.close()
                raise RuntimeError("a worker did not start (see its error above)")
            for reader in wait(list(self.readers.values()), timeout=0.5):
                message = reader.recv()
                self.input_shapes[message[1]] = message[2]

    def send(self, worker: str, request_id: int, payload: np.ndarray, delay_s: float = 0.0) -> None:
        self.inboxes[worker].put((request_id, payload, float(delay_s)))

    def receive(self, timeout: float) -> Response | None:
        if not self.pending:
            for reader in wait(list(self.readers.values()), timeout=max(timeout, 0.0)):
                try:
                    self.pending.append(reader.recv())
                except (EOFError, OSError):  # the worker died: stop listening to it
                    self.readers = {n: r for n, r in self.readers.items() if r is not reader}
        return self.pending.pop(0) if self.pending else None

    def pause(self, worker: str) -> None:
        os.kill(self.processes[worker].pid, signal.SIGSTOP)

    def resume(self, worker: str) -> None:
        os.kill(self.processes[worker].pid, signal.SIGCONT)

    def kill(self, worker: str) -> None:
        os.kill(self.processes[worker].pid, signal.SIGKILL)
        self.processes[worker].join(timeout=5)

    def is_alive(self, worker: str) -> bool:
        return self.processes[worker].is_alive()

    def close(self) -> None:
        for name, process in self.processes.items():
            if process.is_alive():
                try:
                    os.kill(process.pid, signal.SIGCONT)
                    self.inboxes[name].put(None)
                except (OSError, ValueError):
                    pass
        for process in self.processes.values():
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
        self.processes.clear()
        self.readers.clear()


# ----------------------------------------------------------------------------- load and faults

def poisson_arrivals(rate_qps: float, n: int, seed: int = 0) -> np.ndarray:
    """Absolute intended send times (s from the start) of an open-loop Poisson load."""
    if rate_qps <= 0:
        raise ValueError("the request rate must be positive")
    return np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate_qps, n))


@dataclass
class FaultSchedule:
    """Faults replayed identically for every method.

    ``delays_s[i]``: extra time query ``i`` spends on its deployed instance (a straggler);
    ``pauses``: ``(worker, start_s, end_s)`` unavailability windows (SIGSTOP … SIGCONT);
    ``kills``: ``(worker, at_s)`` fail-stop (SIGKILL).
    """

    delays_s: np.ndarray
    pauses: list[tuple[str, float, float]] = field(default_factory=list)
    kills: list[tuple[str, float]] = field(default_factory=list)

    @classmethod
    def from_slowdowns(cls, slowdowns: np.ndarray, n: int, service_s: float, fraction: float,
                       seed: int = 0, **faults) -> "FaultSchedule":
        """A fraction ``fraction`` of the queries straggle: each gets ``(s − 1)·service_s`` extra
        time with ``s`` drawn from the empirical slowdowns above 1 (notebook 01's distribution)."""
        rng = np.random.default_rng(seed)
        tail = np.asarray(slowdowns, dtype=float)
        tail = tail[tail > 1]
        delays = np.zeros(n)
        chosen = rng.random(n) < fraction
        if chosen.any() and tail.size:
            delays[chosen] = (rng.choice(tail, chosen.sum()) - 1) * service_s
        return cls(delays, **faults)


# ----------------------------------------------------------------------------- frontend

@dataclass
class Deployment:
    """Which workers play which role for a method."""

    deployed: list[str]
    parity: list[str] = field(default_factory=list)
    backup: list[str] = field(default_factory=list)  #: replicas (srp, hedge) or students (nkd)


def _argmax(vector) -> int:
    return int(np.argmax(vector))


def serve(transport, method: str, deployment: Deployment, images: np.ndarray, labels: np.ndarray,
          arrivals: np.ndarray, faults: FaultSchedule, *, k: int = 2, encoder: str = "addition",
          timing_bound_s: float = 0.05, cache_size: int = 64, drain_s: float = 30.0,
          payloads: list | None = None) -> list[dict]:
    """Run one method on one arrival and fault schedule; return one record per query.

    ``images`` ``(N, 3, H, W)`` float32 normalised queries, sent as ``(1, 3, H, W)``
    (``payloads[i]`` overrides what is sent for query ``i``, e.g. to test malformed queries).
    """
    from .coding import encode

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    n = len(arrivals)
    deployed = list(deployment.deployed)
    alive = {w: True for w in deployed + deployment.parity + deployment.backup}
    records = [dict(query=i, method=method, group=i // k if method in ("pm", "flake") else None,
                    instance=None, intended_s=float(arrivals[i]), sent_s=None, answered_s=None,
                    outcome=None, predicted=None, label=int(labels[i]),
                    delay_s=float(faults.delays_s[i])) for i in range(n)]
    outputs: dict[int, np.ndarray] = {}  # F(x_i) as it arrived from the deployed instance
    parity_out: dict[int, np.ndarray] = {}  # group -> F_p(p)
    unavailable: set[int] = set()
    pending_partner: dict[int, int] = {}  # request id of a cache-partner parity query -> partner
    partner_requested: set[int] = set()
    cache: list[int] = []  # recently completed queries (Flake's cache queue)
    outstanding: dict[str, set[int]] = {w: set() for w in alive}
    request_owner: dict[int, tuple[str, int]] = {}  # request id -> (kind, query or group)
    next_request, rr_backup, rr_parity = [0], [0], [0]
    timers: list[tuple[float, int]] = []
    events = sorted([(t, "pause", w) for w, t, _ in faults.pauses] +
                    [(t, "resume", w) for w, _, t in faults.pauses] +
                    [(t, "kill", w) for w, t in faults.kills])
    start = time.monotonic()
    now = lambda: time.monotonic() - start  # noqa: E731

    def request(worker: str, kind: str, owner: int, payload: np.ndarray, delay: float = 0.0) -> None:
        rid = next_request[0]
        next_request[0] += 1
        request_owner[rid] = (kind, owner)
        outstanding[worker].add(rid)
        transport.send(worker, rid, payload, delay)

    def answer(q: int, outcome: str, predicted: int | None) -> None:
        if records[q]["outcome"] is None:
            records[q].update(outcome=outcome, predicted=predicted, answered_s=now())

    def pick(pool: list[str], counter: list[int]) -> str | None:
        live = [w for w in pool if alive[w]]
        if not live:
            return None
        counter[0] += 1
        return live[counter[0] % len(live)]

    def members(g: int) -> range:
        return range(g * k, min(g * k + k, n))

    def try_decode(g: int) -> None:
        """Rebuild the one unavailable, unanswered member of group ``g`` when all else is there."""
        if g not in parity_out:
            return
        group = list(members(g))
        missing = [q for q in group if q not in outputs]
        if len(missing) != 1 or missing[0] not in unavailable or records[missing[0]]["outcome"]:
            return
        rebuilt = parity_out[g] - sum(outputs[q] for q in group if q != missing[0])
        answer(missing[0], "reconstructed", _argmax(rebuilt))

    def partner_recovery(q: int) -> None:
        """Flake: a cached completed query is the coding partner of the unavailable ``q``."""
        worker = pick(deployment.parity, rr_parity)
        partners = [c for c in reversed(cache) if c != q]
        if worker is None or not partners:
            return
        c = partners[0]
        rid = next_request[0]
        pending_partner[rid] = c
        grouped = np.stack([images[q], images[c]])[None]
        request(worker, "partner", q, encode_np(grouped))

    def encode_np(grouped: np.ndarray) -> np.ndarray:
        import torch

        return encode(torch.from_numpy(grouped), encoder).numpy().astype(np.float32)

    def declare_unavailable(q: int) -> None:
        if records[q]["outcome"] is not None or q in unavailable:
            return
        unavailable.add(q)
        if method in ("srp", "hedge", "nkd"):
            worker = pick(deployment.backup, rr_backup)
            if worker is not None:
                request(worker, {"srp": "replica", "hedge": "hedge", "nkd": "student"}[method], q,
                        images[q][None])
        elif method in ("pm", "flake"):
            g = q // k
            stuck = [m for m in members(g) if m in unavailable and m not in outputs
                     and records[m]["outcome"] is None]
            if method == "flake" and (len(stuck) > 1 or len(members(g)) < k):
                for m in stuck:  # the group code cannot rebuild them all: a cached partner each
                    if m not in partner_requested:
                        partner_requested.add(m)
                        partner_recovery(m)
            else:
                try_decode(g)

    def handle(response: Response) -> None:
        kind, owner = request_owner.pop(response.request_id, (None, None))
        outstanding.get(response.worker, set()).discard(response.request_id)
        if kind is None:
            return
        if response.error is not None:
            if kind == "original":
                answer(owner, "error", None)
                records[owner]["error"] = response.error
            return
        if kind == "original":
            outputs[owner] = response.output
            answer(owner, "original", _argmax(response.output))
            cache.append(owner)
            del cache[:-cache_size]
            if method in ("pm", "flake"):
                try_decode(owner // k)
        elif kind == "parity":
            parity_out[owner] = response.output
            try_decode(owner)
        elif kind == "partner":
            c = pending_partner.pop(response.request_id)
            answer(owner, "reconstructed", _argmax(response.output - outputs[c]))
        else:  # replica, hedge, student
            answer(owner, kind, _argmax(response.output))

    def kill(worker: str) -> None:
        transport.kill(worker)
        alive[worker] = False
        for rid in list(outstanding[worker]):
            kind, owner = request_owner.pop(rid, (None, None))
            if kind == "original":
                declare_unavailable(owner)
            elif kind == "partner":
                pending_partner.pop(rid, None)
        outstanding[worker].clear()

    pool = deployed + (deployment.backup if method == "equal" else [])
    i = 0
    while True:
        t = now()
        while events and events[0][0] <= t:
            _, action, worker = events.pop(0)
            if action == "kill":
                kill(worker)
            elif alive.get(worker):
                (transport.pause if action == "pause" else transport.resume)(worker)
        while i < n and arrivals[i] <= t:
            live = [w for w in pool if alive[w]]
            records[i]["sent_s"] = now()
            if payloads is not None and not isinstance(payloads[i], np.ndarray):
                answer(i, "error", None)
                records[i]["error"] = f"malformed query: {type(payloads[i]).__name__}"
            elif not live:
                declare_unavailable(i)
            else:
                worker = live[i % len(live)] if method == "equal" else (
                    deployed[i % k] if alive[deployed[i % k]] else live[i % len(live)])
                records[i]["instance"] = worker
                payload = payloads[i] if payloads is not None else images[i][None]
                request(worker, "original", i, payload, faults.delays_s[i])
                heapq.heappush(timers, (arrivals[i] + timing_bound_s, i))
            if method in ("pm", "flake") and (i % k == k - 1):
                g = i // k
                worker = pick(deployment.parity, rr_parity)
                if worker is not None:
                    request(worker, "parity", g, encode_np(images[g * k: g * k + k][None]))
            i += 1
        while timers and timers[0][0] <= t:
            _, q = heapq.heappop(timers)
            if records[q]["outcome"] is None:
                declare_unavailable(q)
        done = i >= n and all(r["outcome"] is not None for r in records)
        if done or (i >= n and t > arrivals[-1] + drain_s):
            break
        wake = min([arrivals[i] if i < n else t + 0.05] + ([timers[0][0]] if timers else []) +
                   ([events[0][0]] if events else []))
        response = transport.receive(max(0.0, min(wake - now(), 0.05)))
        while response is not None:
            handle(response)
            response = transport.receive(0.0)
    for q, record in enumerate(records):
        if record["outcome"] is None:
            record.update(outcome="failed", answered_s=None)
        record["latency_ms"] = (None if record["answered_s"] is None
                                else 1000 * (record["answered_s"] - record["intended_s"]))
        record["correct"] = record["predicted"] == record["label"] if record["predicted"] is not None else False
        record["unavailable"] = q in unavailable
    return records


def latency_summary(latencies_ms) -> dict:
    """median, p99, p99.9, max, GMM = max − median, GPM = p99.9 − median (ms); NaNs dropped."""
    x = np.asarray([v for v in latencies_ms if v is not None and np.isfinite(v)], dtype=float)
    if x.size == 0:
        return {k: float("nan") for k in ("median_ms", "p99_ms", "p999_ms", "max_ms", "gmm_ms", "gpm_ms")}
    median, p99, p999, top = np.median(x), np.percentile(x, 99), np.percentile(x, 99.9), x.max()
    return {"median_ms": median, "p99_ms": p99, "p999_ms": p999, "max_ms": top,
            "gmm_ms": top - median, "gpm_ms": p999 - median}
