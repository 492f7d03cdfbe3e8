"""A discrete-event model of the serving system: the real :class:`~.frontend.Frontend` and its policies
over a simulated transport and a virtual clock.

Nothing of the frontend is written twice: :func:`~.frontend.serve` runs unchanged on a
:class:`SimulatedTransport`, whose ``clock()`` the frontend reads instead of ``time.monotonic``. Each
worker is modelled as the real one (:func:`~.transport._worker_main`) serves, first come first served:

1. a request reaches its worker ``link_s`` after it was sent (plus ``link_curve(gap)``, see below)
   and waits for the worker;
2. the worker sleeps the request's injected delay (a straggler);
3. it computes for a **service time** drawn (seeded) from its model's samples (seconds, measured on
   the real workers) on ``cpus`` shared cores (``None``: a core of its own, one device per instance).
   How the cores are shared is ``sharing``: ``"time"`` (processor sharing: ``n`` computing workers
   each progress at ``min(1, cpus / n)`` of full speed, as the OS's time slicing shares a core among
   runnable processes) or ``"fifo"`` (a worker that finds every core busy waits for one, first come
   first served);
4. with device emulation it then sleeps until ``pad_s`` after its compute began;
5. its response reaches the frontend ``link_s`` (plus ``link_curve(gap)``) later.

``link_curve``: ``(gaps_s, one_way_s)``, the measured one-way time of a message to a process that was
idle for a gap (:func:`flake_lib.latency.bench.measure_link_ms`: a sleeping process and core wake up
slower the longer they slept), interpolated at the receiver's idle time: the worker's since it last
finished (0 while it is busy), the frontend's since it last sent or took a message.

Each message the frontend sends or takes costs it ``frontend_s`` of virtual time (pickling, pipe
writes, its own rules). ``pause`` freezes a worker in whatever step it is (a computing worker gives its
core back, as a stopped process does), ``resume`` thaws it; ``kill`` drops its queue and reports
``WorkerEvent(worker, "exit")`` (as the end of a pipe is seen); ``restart`` reports ``"ready"``
``startup_s`` later. ``receive(timeout)`` advances the clock to the next delivery or to
``now + timeout``, so a run of thousands of queries takes well under a second of real time, and its
result depends only on the seeds.
"""

from __future__ import annotations

import collections
import heapq
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .transport import Response, WorkerEvent, WorkerSpec


@dataclass
class _Worker:
    model: str
    pad_s: float = 0.0
    alive: bool = True
    ready: bool = True
    paused: bool = False
    queue: collections.deque = field(default_factory=collections.deque)
    current: list | None = None  #: [request_id, started, service_s, compute_began]
    step: str | None = None  #: delay, cpu (waiting for a core), compute, pad
    step_end: float | None = None
    left_s: float | None = None  #: time left in the step when paused
    generation: int = 0  #: bumped on every pause and step: a stale timer is ignored
    incarnation: int = 0  #: bumped on every kill and reset: requests sent before are lost
    idle_since: float = 0.0  #: when it last finished a request


class SimulatedTransport:
    """The transport interface (:class:`~.transport.Transport`) in virtual time.

    ``service``: ``{model: samples in seconds}``; a worker's model is its ``WorkerSpec.model_path``
    (:meth:`flake_lib.latency.bench.Bench.simulated` names models there); ``pad_s``: ``{model: seconds}``
    of device emulation (or the spec's ``pad_to_s``); ``cpus``: cores the workers share (``None``: one
    each); ``sharing``: ``"time"`` or ``"fifo"`` (see the module); ``link_s``: one-way time of a
    message; ``link_curve``: one-way time by the receiver's idle gap (see the module), added to
    ``link_s``; ``frontend_s``: frontend time per message sent or taken; ``startup_s``: restart time;
    ``classes``: length of the (zero) outputs.
    """

    def __init__(self, service: Mapping[str, Sequence[float]], *, pad_s: Mapping[str, float] | None = None,
                 cpus: int | None = None, sharing: str = "time", link_s: float = 0.0,
                 link_curve: tuple[Sequence[float], Sequence[float]] | None = None, frontend_s: float = 0.0,
                 startup_s: float = 1.0, classes: int = 10, seed: int = 0):
        if sharing not in ("time", "fifo"):
            raise ValueError(f"sharing {sharing!r}: time or fifo")
        self.service = {m: np.asarray(v, dtype=float) for m, v in service.items()}
        if any(len(v) == 0 for v in self.service.values()):
            raise ValueError("every model needs at least one service-time sample")
        self.pad_s, self.cpus, self.sharing = dict(pad_s or {}), cpus, sharing
        self.link_s, self.frontend_s, self.startup_s = float(link_s), float(frontend_s), float(startup_s)
        self.link_curve = None
        if link_curve is not None:
            gaps, times = (np.asarray(v, dtype=float) for v in link_curve)
            self.link_curve = (gaps[np.argsort(gaps)], times[np.argsort(gaps)])
        self.frontend_active = 0.0  # when the frontend last sent or took a message
        self.output = np.zeros(classes, dtype=np.float32)
        self.rng = np.random.default_rng(seed)
        self.now = 0.0
        self.workers: dict[str, _Worker] = {}
        self.events: list = []  # (time, seq, kind, worker, data)
        self.sequence = itertools.count()
        self.busy_cores = 0
        self.waiting: collections.deque[str] = collections.deque()  # workers waiting for a core
        self.shared: dict[str, float] = {}  # time sharing: computing worker -> work left (s) at shared_t
        self.shared_t = 0.0
        self.placement: dict[str, tuple[int, ...]] = {}

    # -- clock
    def clock(self) -> float:
        """The virtual time (s); the frontend reads it in place of ``time.monotonic``."""
        return self.now

    def _at(self, t: float, kind: str, worker: str, data=None) -> None:
        heapq.heappush(self.events, (t, next(self.sequence), kind, worker, data))

    # -- the transport interface
    def start(self, specs: Sequence[WorkerSpec]) -> None:
        for spec in specs:
            model = spec.model_path
            if model not in self.service:
                raise ValueError(f"worker {spec.name}: no service-time samples for model {model!r}")
            self.workers[spec.name] = _Worker(model, pad_s=max(spec.pad_to_s, self.pad_s.get(model, 0.0)))

    def reset(self) -> bool:
        """Every worker alive, idle and empty, nothing in flight, the clock back at 0 (between runs)."""
        self.now = 0.0
        self.frontend_active = 0.0
        self.events.clear()
        self.waiting.clear()
        self.busy_cores = 0
        self.shared.clear()
        self.shared_t = 0.0
        for name, w in self.workers.items():
            self.workers[name] = _Worker(w.model, pad_s=w.pad_s, generation=w.generation + 1,
                                         incarnation=w.incarnation + 1)
        return True

    def _link(self, idle_s: float) -> float:
        """One-way time of a message to a receiver idle for ``idle_s``."""
        if self.link_curve is None:
            return self.link_s
        return max(0.0, self.link_s + float(np.interp(idle_s, *self.link_curve)))

    def send(self, worker: str, request_id: int, payload, delay_s: float = 0.0) -> None:
        self.now += self.frontend_s
        self.frontend_active = self.now
        w = self.workers.get(worker)
        if w is not None and w.alive:
            idle = self.now - w.idle_since if w.current is None and not w.queue else 0.0
            self._at(self.now + self._link(idle), "arrive", worker, (request_id, float(delay_s), w.incarnation))

    def receive(self, timeout: float):
        end = self.now + max(timeout, 0.0)
        while self.events and self.events[0][0] <= end:
            t, _, kind, worker, data = heapq.heappop(self.events)
            self.now = max(self.now, t)
            message = self._handle(kind, worker, data)
            if message is not None:
                self.now += self.frontend_s
                self.frontend_active = self.now
                return message
        # a timeout below the clock's resolution still moves it (else a caller that waits for a time
        # it computed as now + a rounding error would wait forever)
        self.now = max(self.now, end) if end > self.now or timeout <= 0 else float(np.nextafter(self.now, np.inf))
        return None

    def pause(self, worker: str) -> None:
        w = self.workers[worker]
        if w.paused or not w.alive:
            return
        w.paused = True
        w.generation += 1
        if w.step == "cpu":
            self.waiting.remove(worker)
        elif w.step is not None and w.step_end is not None:
            w.left_s = max(w.step_end - self.now, 0.0)
            if w.step == "compute":
                self._release(worker)  # time sharing: left_s becomes the work left

    def resume(self, worker: str) -> None:
        w = self.workers[worker]
        if not w.paused:
            return
        w.paused = False
        if w.step is None:
            self._next(worker)
        elif w.step == "cpu":
            self._want_core(worker)
        elif w.step == "compute":
            w.step = "cpu"  # a stopped process that held a core must get one again
            self._want_core(worker, w.left_s)
        else:
            self._enter(worker, w.step, w.left_s)

    def kill(self, worker: str) -> None:
        w = self.workers[worker]
        if not w.alive:
            return
        if w.step == "compute" and not w.paused:
            self._release(worker)
        elif w.step == "cpu" and worker in self.waiting:
            self.waiting.remove(worker)
        self.workers[worker] = _Worker(w.model, pad_s=w.pad_s, alive=False, ready=False, generation=w.generation + 1,
                                       incarnation=w.incarnation + 1)
        self._at(self.now, "exit", worker)

    def restart(self, worker: str) -> None:
        w = self.workers[worker]
        if w.alive and not w.ready:
            return  # still starting
        if w.alive:
            self.kill(worker)
            w = self.workers[worker]
        w.alive, w.ready = True, False
        self._at(self.now + self.startup_s, "ready", worker, w.incarnation)

    def is_alive(self, worker: str) -> bool:
        w = self.workers.get(worker)
        return w is not None and w.alive and w.ready

    def close(self) -> None:
        self.events.clear()

    # -- the workers
    def _draw(self, model: str) -> float:
        samples = self.service[model]
        return float(samples[self.rng.integers(len(samples))])

    def _enter(self, worker: str, step: str, duration: float) -> None:
        w = self.workers[worker]
        w.generation += 1
        w.step, w.step_end, w.left_s = step, self.now + duration, None
        self._at(w.step_end, "step", worker, w.generation)

    def _want_core(self, worker: str, compute_s: float | None = None) -> None:
        w = self.workers[worker]
        w.step, w.step_end = "cpu", None
        if compute_s is not None:
            w.left_s = compute_s
        if self.cpus is not None and self.sharing == "time":
            self._compute_begins(w)
            w.step = "compute"
            self._share_update()
            self.shared[worker] = w.left_s if w.left_s is not None else w.current[2]
            w.left_s = None
            self._share_reschedule()
        elif self.cpus is None or self.busy_cores < self.cpus:
            self._take_core(worker)
        else:
            self.waiting.append(worker)

    def _take_core(self, worker: str) -> None:
        w = self.workers[worker]
        self.busy_cores += 1
        left = w.left_s if w.left_s is not None else w.current[2]
        self._compute_begins(w)
        self._enter(worker, "compute", left)

    def _compute_begins(self, w: _Worker) -> None:
        if w.current[3] is None:
            w.current[3] = self.now  # the compute began (device emulation pads from here)

    def _release(self, worker: str) -> None:
        """``worker`` stops computing (done, paused or killed): its core, or its share, goes to others."""
        if worker in self.shared:
            self._share_update()
            self.workers[worker].left_s = self.shared.pop(worker)
            self._share_reschedule()
        else:
            self._free_core()

    def _share_rate(self) -> float:
        return min(1.0, self.cpus / len(self.shared)) if self.shared else 1.0

    def _share_update(self) -> None:
        """Advance the work left of every computing worker to now (time sharing)."""
        done = (self.now - self.shared_t) * self._share_rate()
        for worker in self.shared:
            self.shared[worker] = max(self.shared[worker] - done, 0.0)
        self.shared_t = self.now

    def _share_reschedule(self) -> None:
        """Each computing worker's end at the current rate (the old timers become stale)."""
        rate = self._share_rate()
        for worker, left in self.shared.items():
            self._enter(worker, "compute", left / rate)

    def _free_core(self) -> None:
        self.busy_cores -= 1
        if self.waiting:
            self._take_core(self.waiting.popleft())

    def _next(self, worker: str) -> None:
        w = self.workers[worker]
        if w.current is not None or w.paused or not w.alive or not w.queue:
            return
        request_id, delay_s = w.queue.popleft()
        w.current = [request_id, self.now, self._draw(w.model), None]
        self._enter(worker, "delay", delay_s)

    def _step_done(self, worker: str) -> Response | None:
        w = self.workers[worker]
        if w.step == "delay":
            self._want_core(worker)
            return None
        if w.step == "compute":
            self._release(worker)
            pad_left = w.current[3] + w.pad_s - self.now
            if pad_left > 0:
                self._enter(worker, "pad", pad_left)
                return None
        request_id, started, service, began = w.current
        w.current, w.step, w.step_end, w.left_s = None, None, None, None
        w.idle_since = self.now
        response = Response(worker, request_id, self.output, None, started, self.now,
                            compute_s=service, service_s=self.now - began)
        self._next(worker)
        return response

    def _handle(self, kind: str, worker: str, data):
        w = self.workers[worker]
        if kind == "arrive":
            request_id, delay_s, incarnation = data
            if w.alive and incarnation == w.incarnation:  # not killed since it was sent
                w.queue.append((request_id, delay_s))
                self._next(worker)
            return None
        if kind == "step":
            if data != w.generation or w.paused or not w.alive:
                return None  # paused or killed meanwhile
            response = self._step_done(worker)
            if response is not None:
                self._at(self.now + self._link(self.now - self.frontend_active), "deliver", worker, response)
            return None
        if kind == "deliver":  # already on its way: read before a later death is seen
            return data
        if kind == "exit":
            return WorkerEvent(worker, "exit")
        if kind == "ready":
            if data == w.incarnation and w.alive:
                w.ready = True
                self._next(worker)
                return WorkerEvent(worker, "ready")
            return None
        raise ValueError(f"unknown event {kind!r}")

