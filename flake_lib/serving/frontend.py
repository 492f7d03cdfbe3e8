"""The frontend: open-loop sending, coding groups, deadlines, recovery, one answer per query.

:class:`Frontend` runs one method on one arrival and fault schedule. It sends query ``i`` at its
intended time to deployed instance ``i mod k``, and for ``pm``/``flake`` the parity query
``p = encode(x_{gk} … x_{gk+k−1})`` (numpy, :func:`flake_lib.coding.encode_np`) as soon as group ``g``
is complete. The per-method rules live in one small policy class each (:mod:`.policies`, registered
in :mod:`flake_lib.methods`): what to
do when a query becomes *unavailable*, and what to do with each response. The rules every method
shares:

- **Unavailable.** With a timing bound ``B`` a query not answered ``B`` after its intended time is
  unavailable. With ``timing_bound_s=None`` (**eager**, ParM's policy) there is no bound: a group is
  decoded as soon as ``k`` of its ``k + 1`` outputs are in, and a query is unavailable only when its
  instance is known dead or its request misses its deadline.
- **Deadlines.** Every request (original, parity, partner, replica, student, hedge) has a deadline
  (``deadline_s`` after it was sent; default ``max(2 × bound, 0.1 s)``). A request that misses it
  makes its instance *suspect* (no recovery is sent there while it holds a missed request) and the
  policy recovers by its next rule: another parity / backup instance, a cache partner, or waiting
  for the original. A late answer is still used: every query takes the first answer that arrives.
- **Dead workers** are detected without being told (the worker's response pipe ends): everything
  outstanding there is lost, nothing more is routed there, and it is restarted ``restart_delay_s``
  later. "Wait for the original" then means: send the query again to a live deployed instance
  (``recovered_by = "retry"``) when no live request can answer it any more.
- **Admission** (:class:`RecoveryBudget`): every redundant request — a group's parity query, a
  partner, replica, student or hedge request, a re-sent one — waits in the frontend until the instance
  that will serve it has room by a rule sized from that instance's own service time and a stated
  maximum utilisation; one whose query was answered meanwhile is dropped. The same rule for every
  method; how often it acted (deferred, dropped, the wait) is in the run's statistics.
- **Dispatch**: ``round_robin`` sends query ``i`` to deployed instance ``i mod k`` (each instance queues
  its own), ``single_queue`` keeps the queries in one frontend queue that idle instances take from (as
  ParM's experiments did): a stalled instance then holds one query, not a backlog.

Methods (all on the same arrivals and faults):

==============  ==================================================================================
``none``        no redundancy: wait for ``F``
``srp``         a replica of ``F`` re-runs an unavailable query
``pm``          ``F_p(p) − Σ_{i≠j} F(x_i)`` with the PM parity model; a lost parity query is sent
                again to another parity instance, else the query waits for its original
``flake``       the same with Flake's compressed parity model; as soon as a group cannot be decoded
                (its parity query lost or late, or two members unavailable) each unavailable member is
                rebuilt with ``k − 1`` cached completed queries ``x_c`` as partners:
                ``F_p(x + Σ_c x_c) − Σ_c F(x_c)``
``nkd``         the compressed replica (NKD student) re-runs unavailable queries, one after another
``hedge``       a duplicate to a replica after the hedging delay (passed as the timing bound)
``equal``       ParM's equal-resources baseline: the backup instances are more instances of ``F``,
                queries spread round-robin over all of them
``approxifer``  ApproxIFER (training-free, not systematic): no query is sent alone; each complete
                group of ``K = k`` queries becomes ``N = K + S`` Berrut-coded queries
                (:mod:`flake_lib.approxifer`), one per instance of ``F`` (the ``k`` deployed ones and
                the ``S`` parity instances, which run ``F`` too); every answer is decoded, from all
                ``N`` results (outcome ``decoded``), or from the first ``K`` once a member is
                unavailable (eager: at once; outcome ``reconstructed``). A lost coded request is sent
                again to another instance when fewer than ``K`` results can still arrive; with none
                left, the members are sent alone to ``F`` (``retry``)
==============  ==================================================================================

Every query ends with exactly one outcome (:data:`OUTCOMES`); ``recovered_by`` says what answered a
recovered one (``parity``, ``partner``, ``replica``, ``student``, ``hedge``, ``retry``).
"""

from __future__ import annotations

import collections
import gc
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import coding, methods
from . import pinning
from .faults import FaultSchedule
from .transport import Response, WorkerEvent

OUTCOMES = ("original", "decoded", "reconstructed", "replica", "student", "hedge", "error", "failed")
MIN_DEADLINE_S = 0.1  #: the default request deadline is max(2 × timing bound, this)
DISPATCH = ("round_robin", "single_queue")  #: how originals reach the deployed instances (see the module)
PROGRESS_INTERVAL_S = 2.0  #: wall-clock seconds between two calls of a run's progress callback
KINDS = ("original", "parity", "partner", "replica", "student", "hedge", "coded")  #: request kinds
GROUP_KINDS = ("parity", "coded")  #: request kinds owned by a coding group, not by one query

_REQUEST_IDS = itertools.count()  # unique across runs, so a late answer of an earlier run is ignored


@dataclass
class Deployment:
    """Which workers play which role for a method."""

    deployed: list[str]
    parity: list[str] = field(default_factory=list)
    backup: list[str] = field(default_factory=list)  #: replicas (srp, hedge, equal) or students (nkd)


@dataclass(frozen=True)
class RecoveryBudget:
    """Admission of redundant work — parity, partner, replica, student, hedge and re-sent coded
    requests alike — sized from what the instance that does it can serve.

    Each redundant instance ``w`` has a token bucket refilled at ``max_utilisation / service_s[w]``
    tokens per second (admitted work keeps it at most ``max_utilisation`` busy on average) that holds
    ``window_s`` seconds of that work (``max_utilisation · window_s / service_s[w]`` tokens, at least
    one): a burst of unavailable queries is admitted at once, and only work that would keep the instance
    busier than ``max_utilisation`` for longer than ``window_s`` waits in the frontend (first in, first
    out; dropped if its query is answered meanwhile). ``max_utilisation=None``: nothing is limited; an
    instance without a service time in ``service_s`` is not limited either. ``max_queue``: optionally,
    no more than this many outstanding requests on the instance (``None``: no cap).

    Why this sizing: a stalled deployed instance makes unavailable queries at the rate its share of the
    load arrives (``qps / k``); the bucket refills at ``max_utilisation / t`` whatever the offered load,
    so whenever the recovering instance could serve them at that utilisation, they drain, and the
    admission acts only where the instance itself could not keep up.
    """

    max_utilisation: float | None = 0.8
    window_s: float = 1.0
    max_queue: int | None = None
    service_s: dict | None = None  #: worker -> service time of one request there (s)

    def rate(self, worker: str) -> float | None:
        """Tokens per second of ``worker``'s bucket (``None``: not limited)."""
        t = (self.service_s or {}).get(worker)
        if self.max_utilisation is None or not t:
            return None
        return self.max_utilisation / t

    def capacity(self, worker: str) -> float:
        rate = self.rate(worker)
        return float("inf") if rate is None else max(1.0, rate * self.window_s)


@dataclass
class Request:
    rid: int
    kind: str  #: original, parity, partner, replica, student, hedge, coded
    worker: str
    owner: int  #: the query (the group for a parity or coded request)
    deadline_s: float
    partners: tuple[int, ...] = ()  #: cached queries coded with the owner (partner requests)
    retry: bool = False  #: an original sent again after its instance died
    missed: bool = False
    index: int = -1  #: the coded query's position ``0..N−1`` (ApproxIFER)


@dataclass
class _Intent:
    """A redundant request waiting for admission (:class:`RecoveryBudget`)."""

    kind: str
    owner: int
    pool: list[str]
    payload: np.ndarray
    partners: tuple[int, ...] = ()
    waited: bool = False
    index: int = -1
    created: float = 0.0  #: when it was asked for (its wait for admission starts here)
    proactive: bool = False  #: a group's first parity query (not a recovery)


def _deadlines(deadline_s, timing_bound_s) -> dict[str, float]:
    """Per request kind: ``deadline_s`` (one number, or ``{kind: s}`` over the default), default
    ``max(2 × timing_bound_s, MIN_DEADLINE_S)``: a deadline finds a stuck instance, not a straggler."""
    default = max(2 * (timing_bound_s or 0.0), MIN_DEADLINE_S)
    if deadline_s is None or isinstance(deadline_s, dict):
        given = dict(deadline_s or {})
        unknown = set(given) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown request kinds in deadline_s: {sorted(unknown)}; known: {KINDS}")
        return {kind: float(given.get(kind, default)) for kind in KINDS}
    return {kind: float(deadline_s) for kind in KINDS}


# ----------------------------------------------------------------------------- frontend

class Frontend:
    """One method's frontend over a transport; :meth:`run` serves one schedule and returns one
    record per query. After a run, ``busy_s[worker]`` (sum of ``finished − started`` of its answers),
    ``compute_s[worker]`` and ``stats`` describe it: ``t0`` (the clock at time 0 of the run:
    ``time.monotonic()``, or the virtual time of a :mod:`.simulation`), ``wall_s``, ``busy_s``,
    ``compute_s``, ``utilisation`` (busy / wall), ``responses`` per worker; ``deaths`` and
    ``restarts`` as ``(worker, s)``; ``placement`` (each worker's CPU set);
    counters ``deadline_missed_<kind>``, ``recovery_<kind>`` (sent), ``recovery_deferred`` (waited
    for the budget), ``recovery_dropped`` (query answered first), ``recovery_impossible``,
    ``retries``."""

    def __init__(self, transport, method: str, deployment: Deployment, *, k: int = 2,
                 encoder: str = "addition", timing_bound_s: float | None = 0.05, cache_size: int = 64,
                 deadline_s: float | dict | None = None, recovery: RecoveryBudget | None = None,
                 restart_delay_s: float | None = 1.0, clock=None, dispatch: str = "round_robin"):
        self.spec = methods.get(method)  # a clear error for an unknown method
        if dispatch not in DISPATCH:
            raise ValueError(f"dispatch {dispatch!r}: one of {DISPATCH}")
        self.single_queue = dispatch == "single_queue"
        self.transport, self.method, self.deployment = transport, method, deployment
        self.k, self.encoder, self.cache_size = k, encoder, cache_size
        self.timing_bound_s, self.eager = timing_bound_s, timing_bound_s is None
        self.deadlines = _deadlines(deadline_s, timing_bound_s)
        self.budget = recovery or RecoveryBudget()
        self.restart_delay_s = restart_delay_s
        self.clock = clock or transport.clock  #: time.monotonic, or the virtual time of a simulation
        self.policy = self.spec.policy_class()(self)
        if self.single_queue and not self.policy.systematic:
            raise ValueError(f"{method}: its queries are not sent alone, so they cannot wait in a single queue")
        self.workers = list(dict.fromkeys(deployment.deployed + deployment.parity + deployment.backup))
        self.busy_s: dict[str, float] = {}
        self.compute_s: dict[str, float] = {}
        self.stats: dict = {}

    # -- clock and timers
    def now(self) -> float:
        return self.clock() - self.t0

    def at(self, t: float, kind: str, key) -> None:
        heapq.heappush(self.timers, (t, next(self.sequence), kind, key))

    # -- requests
    def send(self, worker: str, kind: str, owner: int, payload, delay_s: float = 0.0,
             partners: tuple[int, ...] = (), retry: bool = False, index: int = -1) -> Request:
        request = Request(next(_REQUEST_IDS), kind, worker, owner, self.now() + self.deadlines[kind],
                          partners, retry, index=index)
        self.requests[request.rid] = request
        self.outstanding[worker].add(request.rid)
        (self.parity_requests if kind in GROUP_KINDS else self.owned)[owner].add(request.rid)
        if kind != "original":
            self.tried[(kind, owner)].add(worker)  # a recovery of the same kind goes elsewhere next
        self.transport.send(worker, request.rid, payload, delay_s)
        self.at(request.deadline_s, "deadline", request.rid)
        return request

    def has_live_request(self, q: int, kind: str | None = None, timely: bool = False) -> bool:
        """Is a request for ``q`` (of ``kind``) outstanding on a worker not known dead (and, with
        ``timely``, not past its deadline)?"""
        return any((kind is None or self.requests[r].kind == kind) and not (timely and self.requests[r].missed)
                   for r in self.owned[q])

    def suspect(self, worker: str) -> bool:
        return self.missed_on[worker] > 0

    def choose(self, pool: list[str], rotate: bool = False) -> str | None:
        """A live instance of ``pool``: unsuspected ones first; the least loaded, or the next in
        rotation."""
        live = [w for w in pool if self.alive.get(w)]
        live = [w for w in live if not self.suspect(w)] or live
        if not live:
            return None
        if rotate:
            self.rotation += 1
            return live[self.rotation % len(live)]
        return min(live, key=lambda w: len(self.outstanding[w]))

    def parity_payload(self, members) -> np.ndarray:
        return coding.encode_np(self.images[members.start: members.stop][None], self.encoder)

    # -- redundant work within the admission budget
    def recover(self, kind: str, owner: int, pool: list[str], payload: np.ndarray,
                partners: tuple[int, ...] = (), index: int = -1, proactive: bool = False) -> None:
        """Queue a redundant request (a recovery, or with ``proactive`` a group's parity query);
        :meth:`dispatch` sends it when admission allows."""
        intent = _Intent(kind, owner, pool, payload, partners, index=index, created=self.now(), proactive=proactive)
        if not self._stale(intent):
            self.intents[(kind, owner) if kind in GROUP_KINDS else owner] += 1
            self.backlog.append(intent)
            self.dispatch()

    def _stale(self, intent: _Intent) -> bool:
        if intent.kind in GROUP_KINDS:
            return all(self.records[m]["outcome"] is not None for m in self.policy.members(intent.owner))
        return self.records[intent.owner]["outcome"] is not None

    def _tokens(self, worker: str) -> float:
        """Tokens in ``worker``'s bucket now (refilled since it was last looked at)."""
        rate = self.budget.rate(worker)
        if rate is None:
            return float("inf")
        tokens, then = self.buckets.get(worker, (self.budget.capacity(worker), 0.0))
        t = self.now()
        tokens = min(self.budget.capacity(worker), tokens + (t - then) * rate)
        self.buckets[worker] = (tokens, t)
        return tokens

    def _admitted(self, intent: _Intent, dropped: bool = False) -> None:
        """``intent`` leaves the backlog (sent, or ``dropped``): its wait for admission is recorded."""
        self._pop_intent()
        self.admission_waits.append(self.now() - intent.created)
        if dropped:
            self.counts["recovery_dropped"] += 1

    def dispatch(self) -> None:
        if self.queue is not None:
            self._dispatch_originals()
        while self.backlog:
            intent = self.backlog[0]
            if self._stale(intent):
                self._admitted(intent, dropped=True)
                continue
            tried = self.tried[(intent.kind, intent.owner)]
            usable = [w for w in intent.pool if self.alive.get(w) and w not in tried and not self.suspect(w)]
            if not usable:
                self._pop_intent()
                self.counts["recovery_impossible"] += 1
                self.policy.on_no_room(intent)
                continue
            cap = self.budget.max_queue
            room = [w for w in usable if (cap is None or len(self.outstanding[w]) < cap) and self._tokens(w) >= 1]
            if not room:
                if not intent.waited:
                    intent.waited = True
                    self.counts["recovery_deferred"] += 1
                return
            self._admitted(intent)
            worker = min(room, key=lambda w: len(self.outstanding[w]))
            tokens, then = self.buckets.get(worker, (float("inf"), self.now()))
            self.buckets[worker] = (tokens - 1, then)
            self.send(worker, intent.kind, intent.owner, intent.payload, partners=intent.partners,
                      index=intent.index)
            self.counts["parity_sent" if intent.proactive else f"recovery_{intent.kind}"] += 1
            if intent.kind not in GROUP_KINDS:
                self.records[intent.owner]["recovery_requests"] += 1

    def _pop_intent(self) -> None:
        intent = self.backlog.popleft()
        self.intents[(intent.kind, intent.owner) if intent.kind in GROUP_KINDS else intent.owner] -= 1

    # -- answers and unavailability
    def answer(self, q: int, outcome: str, output, worker: str | None, recovered_by: str | None = None) -> None:
        record = self.records[q]
        if record["outcome"] is not None:
            return
        record.update(outcome=outcome, answered_s=self.now(), answered_by=worker, recovered_by=recovered_by,
                      predicted=None if output is None else int(np.argmax(output)))
        self.open -= 1

    def unavailable(self, q: int) -> None:
        record = self.records[q]
        if record["outcome"] is None and not record["unavailable"]:
            record.update(unavailable=True, unavailable_s=self.now())
            self.policy.on_unavailable(q)

    def settle(self, q: int) -> None:
        """Wait for the original: nothing to do while its original request is outstanding (late or
        not), or another request not late (or a decode) can answer ``q``; otherwise (its instance
        died) send it again to a live instance of ``F`` (to the next one that starts, if none is)."""
        if (self.records[q]["outcome"] is not None or self.has_live_request(q, "original")
                or q in self.waiting or self.policy.can_answer(q)):
            return
        worker = self.choose(self.policy.pool())
        if worker is None:
            self.orphans.add(q)
            return
        self.counts["retries"] += 1
        self.send(worker, "original", q, self.images[q][None], retry=True)

    # -- events
    def lose(self, request: Request, final: bool) -> None:
        """``request`` missed its deadline (it may still answer: its instance is suspect until it
        does) or will never answer (``final``: its worker died or answered with an error)."""
        if request.rid not in self.requests:
            return
        if final:
            self._forget(request)
        elif request.missed:
            return
        else:
            request.missed = True
            self.missed_on[request.worker] += 1
            self.counts[f"deadline_missed_{request.kind}"] += 1
            for q in self.policy.members(request.owner) if request.kind in GROUP_KINDS else [request.owner]:
                self.records[q]["deadline_missed"] += 1
        if request.kind == "original":
            if final:
                self.records[request.owner]["lost"] = True
            self.unavailable(request.owner)
            if final:
                self.settle(request.owner)
        else:
            self.policy.on_lost(request)
            if final and request.kind == "coded":
                for q in self.policy.members(request.owner):
                    self.settle(q)
            elif final and request.kind != "parity":
                self.settle(request.owner)

    def _forget(self, request: Request) -> None:
        del self.requests[request.rid]
        self.outstanding[request.worker].discard(request.rid)
        (self.parity_requests if request.kind in GROUP_KINDS else self.owned)[request.owner].discard(request.rid)
        if request.missed:
            self.missed_on[request.worker] -= 1

    def on_response(self, response: Response) -> None:
        request = self.requests.get(response.request_id)
        if request is None:
            return  # an earlier run's, or a request already given up
        worker, q = response.worker, request.owner
        self.busy_s[worker] = self.busy_s.get(worker, 0.0) + (response.finished - response.started)
        self.compute_s[worker] = self.compute_s.get(worker, 0.0) + response.compute_s
        self.responses[worker] += 1
        if response.error is not None and request.kind != "original":
            self.lose(request, final=True)  # a recovery that failed: the next rule
            self.dispatch()
            return
        self._forget(request)
        if response.error is not None:
            self.records[q]["error"] = response.error
            self.answer(q, "error", None, worker)
            self.policy.on_original(q)
        elif request.kind == "original":
            self.outputs[q] = response.output
            self.answer(q, "original", response.output, worker, recovered_by="retry" if request.retry else None)
            self.cache.append(q)
            self.policy.on_original(q)
        elif request.kind == "parity":
            self.parity_out[q] = (response.output, worker)
            self.policy.on_parity(q)
        elif request.kind == "coded":
            self.policy.on_coded(request, response.output)
        else:
            self.policy.on_recovered(request, response.output)
        self.dispatch()

    def on_exit(self, worker: str) -> None:
        """A worker died: everything outstanding there is lost; restart it later."""
        if worker not in self.alive:
            return
        self.alive[worker] = False
        self.deaths.append((worker, self.now()))
        for rid in sorted(self.outstanding[worker]):
            if rid in self.requests:
                self.lose(self.requests[rid], final=True)
        if self.restart_delay_s is not None:
            self.at(self.now() + self.restart_delay_s, "restart", worker)

    def on_ready(self, worker: str) -> None:
        """A worker has its model loaded: a restart when it was down (a late first "ready" of a worker
        that was already serving, e.g. on a loaded machine, is not one)."""
        if worker not in self.alive:
            return
        restarted = not self.alive[worker]
        self.alive[worker] = True
        if restarted:
            self.restarts.append((worker, self.now()))
        for q in sorted(self.orphans):
            self.orphans.discard(q)
            self.settle(q)
        self.dispatch()

    def fault(self, action: str, worker: str) -> None:
        if not self.transport.is_alive(worker):
            return
        if action == "kill":
            self.transport.kill(worker)  # found dead like any other death: by its pipe's end
        elif action == "pause":
            self.transport.pause(worker)
            self.paused.add(worker)
        else:
            self.transport.resume(worker)
            self.paused.discard(worker)

    def _dispatch_originals(self) -> None:
        """Single queue: the oldest waiting query goes to an idle live instance (nothing outstanding
        there), as long as there is one; a query answered meanwhile (recovered) is not sent."""
        pool = self.policy.pool()
        while self.queue:
            idle = [w for w in pool if self.alive.get(w) and not self.outstanding[w]]
            if not idle and self.records[self.queue[0]]["outcome"] is None:
                return
            i = self.queue.popleft()
            self.waiting.discard(i)
            if self.records[i]["outcome"] is None:
                self.rotation += 1
                worker = idle[self.rotation % len(idle)]
                self.records[i].update(sent_s=self.now(), instance=worker)
                payload = self.payloads[i] if self.payloads is not None else self.images[i][None]
                self.send(worker, "original", i, payload, self.faults.delays_s[i])
            self.policy.after_send(i)

    def arrive(self, i: int) -> None:
        record = self.records[i]
        record["sent_s"] = record["arrived_s"] = self.now()  # arrived: when the frontend took it (lag: its own)
        if self.payloads is not None and not isinstance(self.payloads[i], np.ndarray):
            record["error"] = f"malformed query: {type(self.payloads[i]).__name__}"
            self.answer(i, "error", None, None)
        elif not self.policy.systematic:  # sent as part of its coded group (after_send)
            if self.timing_bound_s is not None:
                self.at(self.arrivals[i] + self.timing_bound_s, "bound", i)
        elif self.queue is not None:  # single queue: sent when an instance is idle (and after_send then)
            if self.timing_bound_s is not None:
                self.at(self.arrivals[i] + self.timing_bound_s, "bound", i)
            self.queue.append(i)
            self.waiting.add(i)
            self._dispatch_originals()
            return
        else:
            pool = self.policy.pool()
            worker = pool[i % len(pool)]
            if not self.alive[worker]:  # its instance is dead: another live one
                live = [w for w in pool if self.alive[w]]
                worker = live[i % len(live)] if live else None
            if worker is None:
                self.unavailable(i)
                self.settle(i)
            else:
                record["instance"] = worker
                payload = self.payloads[i] if self.payloads is not None else self.images[i][None]
                self.send(worker, "original", i, payload, self.faults.delays_s[i])
                if self.timing_bound_s is not None:
                    self.at(self.arrivals[i] + self.timing_bound_s, "bound", i)
        self.policy.after_send(i)

    def fire(self, kind: str, key) -> None:
        if kind == "bound":
            if self.records[key]["outcome"] is None:
                self.unavailable(key)
        elif kind == "deadline":
            if key in self.requests:
                self.lose(self.requests[key], final=False)
        elif kind == "restart" and not self.alive[key]:
            if self.transport.is_alive(key):  # started meanwhile (e.g. after an earlier run)
                self.on_ready(key)
                return
            try:
                self.transport.restart(key)
            except Exception:  # noqa: BLE001 - a worker that cannot start is tried again later
                self.at(self.now() + self.restart_delay_s, "restart", key)

    # -- the run
    def run(self, images: np.ndarray, labels: np.ndarray, arrivals: np.ndarray, faults: FaultSchedule,
            *, drain_s: float = 30.0, payloads: list | None = None,
            progress: Callable[[int, int], None] | None = None) -> list[dict]:
        """Serve queries ``images[i]`` at intended times ``arrivals[i]`` under ``faults``; return one
        record per query. Ends when every query is answered, or ``drain_s`` after the last arrival
        (what is unanswered then is ``failed``, with ``latency_ms = None``). ``progress(arrived, n)``
        is called about every :data:`PROGRESS_INTERVAL_S` seconds of wall-clock time."""
        n = len(arrivals)
        self.progress, self.progress_at = progress, time.monotonic()
        self.images, self.arrivals, self.faults, self.payloads, self.n = images, arrivals, faults, payloads, n
        self.drain_s, self.wall_s = drain_s, 0.0
        coded = self.spec.coded
        self.records = [dict(query=i, method=self.method, group=i // self.k if coded else None, instance=None,
                             intended_s=float(arrivals[i]), arrived_s=None, sent_s=None, answered_s=None, outcome=None,
                             predicted=None, label=int(labels[i]), delay_s=float(faults.delays_s[i]),
                             unavailable=False, unavailable_s=None, recovered_by=None, answered_by=None,
                             deadline_missed=0, recovery_requests=0, lost=False, error=None)
                        for i in range(n)]
        self.alive = {w: self.transport.is_alive(w) for w in self.workers}
        self.outstanding = {w: set() for w in self.workers}
        self.missed_on = collections.Counter()
        self.requests: dict[int, Request] = {}
        self.owned = collections.defaultdict(set)  # query -> live requests that answer it
        self.parity_requests = collections.defaultdict(set)  # group -> live parity requests
        self.intents = collections.Counter()  # query (or ("parity", group)) -> recoveries waiting
        self.tried = collections.defaultdict(set)  # (kind, owner) -> workers a recovery went to
        self.outputs, self.parity_out = {}, {}
        self.cache = collections.deque(maxlen=self.cache_size)
        self.backlog: collections.deque[_Intent] = collections.deque()
        self.orphans: set[int] = set()
        self.paused: set[str] = set()
        self.deaths, self.restarts = [], []
        self.counts = collections.Counter({f"{c}_{kind}": 0 for c in ("deadline_missed", "recovery")
                                           for kind in KINDS if kind != "original"})
        self.counts.update(deadline_missed_original=0, recovery_deferred=0, recovery_dropped=0,
                           recovery_impossible=0, retries=0, parity_sent=0)
        self.buckets: dict[str, tuple[float, float]] = {}  # worker -> (tokens, when last refilled)
        self.admission_waits: list[float] = []  # seconds each redundant request waited for admission
        self.queue = collections.deque() if self.single_queue else None  # originals not yet sent
        self.waiting: set[int] = set()  # the queries in it
        self.responses = collections.Counter()
        self.busy_s, self.compute_s = {w: 0.0 for w in self.workers}, {w: 0.0 for w in self.workers}
        self.timers, self.sequence, self.rotation = [], itertools.count(), -1
        self.open = n
        events = faults.events()
        self.t0 = self.clock()
        for w in self.workers:
            if not self.alive[w] and self.restart_delay_s is not None:
                self.at(0.0, "restart", w)
        try:
            self._loop(events)
        finally:
            for worker in self.paused:  # a pause window that outlasts the run ends with it
                if self.transport.is_alive(worker):
                    self.transport.resume(worker)
        return self._finish()

    def _loop(self, events: list) -> None:
        n, arrivals, duration = self.n, self.arrivals, float(self.arrivals[-1]) if self.n else 0.0
        drain_s = self.drain_s
        i = 0
        while True:
            t = self.now()
            while events and events[0][0] <= t:
                _, action, worker = events.pop(0)
                self.fault(action, worker)
            while i < n and arrivals[i] <= t:
                self.arrive(i)
                i += 1
            while self.timers and self.timers[0][0] <= t:
                _, _, kind, key = heapq.heappop(self.timers)
                self.fire(kind, key)
            self.dispatch()
            if i >= n and (self.open == 0 or t > duration + drain_s):
                break
            if self.progress is not None and time.monotonic() - self.progress_at >= PROGRESS_INTERVAL_S:
                self.progress_at = time.monotonic()
                self.progress(i, n)
            wake = min([t + (0.001 if self.backlog else 0.05)] + ([arrivals[i]] if i < n else []) +
                       ([self.timers[0][0]] if self.timers else []) + ([events[0][0]] if events else []))
            message = self.transport.receive(max(0.0, wake - self.now()))
            while message is not None:
                if isinstance(message, WorkerEvent):
                    (self.on_exit if message.kind == "exit" else self.on_ready)(message.worker)
                else:
                    self.on_response(message)
                message = self.transport.receive(0.0)
        self.wall_s = self.now()

    def _finish(self) -> list[dict]:
        wall = self.wall_s
        for record in self.records:
            if record["outcome"] is None:
                record["outcome"] = "failed"
            record["latency_ms"] = (None if record["answered_s"] is None
                                    else 1000 * (record["answered_s"] - record["intended_s"]))
            record["correct"] = record["predicted"] is not None and record["predicted"] == record["label"]
        self.stats = {
            "t0": self.t0, "wall_s": wall, "busy_s": dict(self.busy_s), "compute_s": dict(self.compute_s),
            "utilisation": {w: b / wall if wall > 0 else float("nan") for w, b in self.busy_s.items()},
            "responses": dict(self.responses), "deaths": list(self.deaths), "restarts": list(self.restarts),
            "placement": dict(self.transport.placement), **dict(self.counts),
            **_wait_summary(self.admission_waits)}
        return self.records


def _wait_summary(waits_s: list[float]) -> dict:
    """``admission_wait_{median,p99,max}_ms`` over the redundant requests of a run (0 when none waited)."""
    w = 1000 * np.asarray(waits_s, dtype=float) if waits_s else np.zeros(1)
    return {"admission_requests": len(waits_s), "admission_wait_median_ms": float(np.median(w)),
            "admission_wait_p99_ms": float(np.percentile(w, 99)), "admission_wait_max_ms": float(w.max())}


def serve(transport, method: str, deployment: Deployment, images: np.ndarray, labels: np.ndarray,
          arrivals: np.ndarray, faults: FaultSchedule, *, k: int = 2, encoder: str = "addition",
          timing_bound_s: float | None = 0.05, cache_size: int = 64, drain_s: float = 30.0,
          payloads: list | None = None, deadline_s: float | dict | None = None,
          recovery: RecoveryBudget | None = None, restart_delay_s: float | None = 1.0,
          frontend_cpus: tuple[int, ...] | None = None, stats: dict | None = None,
          progress: Callable[[int, int], None] | None = None, dispatch: str = "round_robin") -> list[dict]:
    """Run one method on one arrival and fault schedule; return one record per query.

    ``images`` ``(N, 3, H, W)`` float32 normalised queries, sent as ``(1, 3, H, W)`` (``payloads[i]``
    overrides what is sent for query ``i``, e.g. to test malformed queries). ``timing_bound_s=None``
    decodes eagerly. ``deadline_s``: seconds after sending by which a request must answer, one
    number or ``{kind: seconds}`` (default ``max(2 × timing_bound_s, 0.1 s)``). ``recovery``:
    the :class:`RecoveryBudget`. ``restart_delay_s``: a dead worker is restarted this long after its
    death is seen (``None``: never). ``frontend_cpus``: pin the frontend there for the run. The
    garbage collector is kept out of the timed loop (frozen and disabled, restored after).
    ``stats``: a dict filled with :attr:`Frontend.stats` (``busy_s``, ``utilisation`` per worker, …).
    ``progress(arrived, n)``: called every few seconds of the run (a status line; it must be quick).
    ``dispatch``: ``round_robin`` (query ``i`` to deployed instance ``i mod k``, each with its own queue)
    or ``single_queue`` (queries wait in the frontend and go to whichever instance is idle).
    """
    frontend = Frontend(transport, method, deployment, k=k, encoder=encoder, timing_bound_s=timing_bound_s,
                        cache_size=cache_size, deadline_s=deadline_s, recovery=recovery,
                        restart_delay_s=restart_delay_s, dispatch=dispatch)
    gc_enabled = gc.isenabled()
    with pinning.pinned(frontend_cpus) as placement:
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            records = frontend.run(images, labels, arrivals, faults, drain_s=drain_s, payloads=payloads,
                                   progress=progress)
        finally:
            gc.unfreeze()
            if gc_enabled:
                gc.enable()
    if stats is not None:
        stats.update(frontend.stats, frontend_cpus=placement)
    return records
