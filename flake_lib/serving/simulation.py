"""A discrete-event model of the serving system: the real :class:`~.frontend.Frontend` and its policies
over a simulated transport and a virtual clock.

Nothing of the frontend is written twice: :func:`~.frontend.serve` runs unchanged on a
:class:`SimulatedTransport`, whose ``clock()`` the frontend reads instead of ``time.monotonic``. The
transport keeps each worker as a first-come-first-served queue in virtual time:

- a request reaches its worker ``link_s`` after it was sent, waits for the worker, then occupies it
  for its injected delay plus a **service time** drawn (seeded) from the worker's model's samples
  (seconds; measured on the real workers), raised to ``pad_s`` in emulated-device mode; its response
  reaches the frontend ``link_s`` after it finished;
- each message the frontend sends or takes costs it ``frontend_s`` of virtual time (pickling, pipe
  writes, its own rules): the measured frontend overhead;
- ``pause`` freezes a worker (the request in service keeps its remaining time), ``resume`` thaws it;
  ``kill`` drops its queue and reports ``WorkerEvent(worker, "exit")`` (as the end of a pipe is seen);
  ``restart`` reports ``"ready"`` ``startup_s`` later.

``receive(timeout)`` advances the clock to the next delivery or to ``now + timeout``, whichever is
first, so a run of thousands of queries takes a fraction of a second and its result depends only on
the seeds. What the model leaves out is named in its parameters: there is no CPU contention between
workers (one device per instance) unless ``service`` samples carry it.
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
    current: tuple | None = None  #: (request_id, started, service_s, delay_s)
    finish_at: float | None = None
    remaining_s: float | None = None  #: service left when paused
    generation: int = 0  #: bumped on pause and kill: a stale finish event is ignored


class SimulatedTransport:
    """The transport interface of :class:`~.transport.ProcessTransport` in virtual time.

    ``service``: ``{model: samples in seconds}``; ``model_of``: ``{worker: model}`` (default: the
    worker's ``WorkerSpec.model_path``, so a spec names its model there); ``pad_s``:
    ``{model: seconds}`` of device emulation; ``link_s``: one-way transport time of a message;
    ``frontend_s``: frontend time per message sent or taken; ``startup_s``: restart time;
    ``classes``: length of the (zero) outputs.
    """

    def __init__(self, service: Mapping[str, Sequence[float]], *, pad_s: Mapping[str, float] | None = None,
                 link_s: float = 0.0, frontend_s: float = 0.0, startup_s: float = 1.0, classes: int = 10,
                 seed: int = 0):
        self.service = {m: np.asarray(v, dtype=float) for m, v in service.items()}
        if any(len(v) == 0 for v in self.service.values()):
            raise ValueError("every model needs at least one service-time sample")
        self.pad_s = dict(pad_s or {})
        self.link_s, self.frontend_s, self.startup_s = float(link_s), float(frontend_s), float(startup_s)
        self.output = np.zeros(classes, dtype=np.float32)
        self.rng = np.random.default_rng(seed)
        self.now = 0.0
        self.workers: dict[str, _Worker] = {}
        self.events: list = []  # (time, seq, kind, worker, data)
        self.sequence = itertools.count()
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

    def send(self, worker: str, request_id: int, payload, delay_s: float = 0.0) -> None:
        self.now += self.frontend_s
        if worker in self.workers and self.workers[worker].alive:
            self._at(self.now + self.link_s, "arrive", worker, (request_id, float(delay_s),
                                                                 self.workers[worker].generation))

    def receive(self, timeout: float):
        end = self.now + max(timeout, 0.0)
        while self.events and self.events[0][0] <= end:
            t, _, kind, worker, data = heapq.heappop(self.events)
            self.now = max(self.now, t)
            message = self._handle(kind, worker, data)
            if message is not None:
                self.now += self.frontend_s
                return message
        self.now = max(self.now, end)
        return None

    def pause(self, worker: str) -> None:
        w = self.workers[worker]
        if w.paused or not w.alive:
            return
        w.paused = True
        if w.current is not None and w.finish_at is not None:
            w.remaining_s, w.finish_at = max(w.finish_at - self.now, 0.0), None
            w.generation += 1

    def resume(self, worker: str) -> None:
        w = self.workers[worker]
        if not w.paused:
            return
        w.paused = False
        if w.current is not None and w.remaining_s is not None:
            w.finish_at, w.remaining_s = self.now + w.remaining_s, None
            self._at(w.finish_at, "finish", worker, w.generation)
        else:
            self._next(worker)

    def kill(self, worker: str) -> None:
        w = self.workers[worker]
        if not w.alive:
            return
        w.alive = w.ready = w.paused = False
        w.queue.clear()
        w.current, w.finish_at, w.remaining_s = None, None, None
        w.generation += 1
        self._at(self.now, "exit", worker)

    def restart(self, worker: str) -> None:
        w = self.workers[worker]
        if w.alive and not w.ready:
            return  # still starting
        if w.alive:
            self.kill(worker)
        w.alive, w.ready = True, False
        self._at(self.now + self.startup_s, "ready", worker, w.generation)

    def is_alive(self, worker: str) -> bool:
        w = self.workers.get(worker)
        return w is not None and w.alive and w.ready

    def close(self) -> None:
        self.events.clear()

    # -- the workers
    def _draw(self, model: str) -> float:
        samples = self.service[model]
        return float(samples[self.rng.integers(len(samples))])

    def _next(self, worker: str) -> None:
        w = self.workers[worker]
        if w.current is not None or w.paused or not w.alive or not w.queue:
            return
        request_id, delay_s = w.queue.popleft()
        service = max(self._draw(w.model), w.pad_s)
        w.current = (request_id, self.now, service, delay_s)
        w.finish_at = self.now + delay_s + service
        self._at(w.finish_at, "finish", worker, w.generation)

    def _handle(self, kind: str, worker: str, data):
        w = self.workers[worker]
        if kind == "arrive":
            request_id, delay_s, generation = data
            if w.alive and generation == w.generation:  # not killed since it was sent
                w.queue.append((request_id, delay_s))
                self._next(worker)
            return None
        if kind == "finish":
            if data != w.generation or w.current is None:
                return None  # paused or killed meanwhile
            request_id, started, service, delay_s = w.current
            w.current, w.finish_at = None, None
            response = Response(worker, request_id, self.output, None, started, self.now,
                                compute_s=service, service_s=service)
            self._next(worker)
            self._at(self.now + self.link_s, "deliver", worker, response)
            return None
        if kind == "deliver":  # already on its way: read before a later death is seen
            return data
        if kind == "exit":
            return WorkerEvent(worker, "exit")
        if kind == "ready":
            if data == w.generation and w.alive:
                w.ready = True
                return WorkerEvent(worker, "ready")
            return None
        raise ValueError(f"unknown event {kind!r}")
