"""The frontend's per-method rules: one small policy class per method (registered in :mod:`flake_lib.methods`).

A policy is told what happens to its queries — sent, declared unavailable, answered, a parity or
coded output in, a recovery answered or lost, no room for a recovery — and acts through its frontend
(``self.fe``, a :class:`~flake_lib.serving.frontend.Frontend`): ``send``, ``recover``, ``answer``,
``settle``. Everything every method shares (timing bound, deadlines, dead workers, the recovery
admission) is the frontend's; a policy holds only what makes its method different. The methods and what
answers an unavailable query in each are listed in :mod:`flake_lib.serving.frontend`.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

import numpy as np

from .. import approxifer, coding

if TYPE_CHECKING:
    from .frontend import Frontend, Request, _Intent


class Policy:
    """``none``: no redundancy. An unavailable query waits for its original (sent again to a live
    instance of ``F`` if its own died)."""

    systematic = True  #: each query is sent alone to an instance of ``F`` (all but ApproxIFER)

    def __init__(self, frontend: Frontend):
        self.fe = frontend

    def pool(self) -> list[str]:
        """Where originals go."""
        return self.fe.deployment.deployed

    def after_send(self, q: int) -> None:
        """Query ``q`` has been sent (or found no instance)."""

    def on_unavailable(self, q: int) -> None:
        """``q`` has just been declared unavailable."""

    def on_original(self, q: int) -> None:
        """``F(x_q)`` (or an error for ``q``) has arrived."""

    def on_parity(self, g: int) -> None:
        """The parity output of group ``g`` has arrived."""

    def on_coded(self, request: Request, output: np.ndarray) -> None:
        """A coded query's result has arrived (ApproxIFER)."""

    def on_recovered(self, request: Request, output: np.ndarray) -> None:
        """A recovery request answered."""
        self.fe.answer(request.owner, request.kind, output, request.worker, recovered_by=request.kind)

    def on_lost(self, request: Request) -> None:
        """A recovery or parity request missed its deadline or will never answer."""

    def on_no_room(self, intent: _Intent) -> None:
        """A recovery request could go nowhere (no live, unsuspected instance left)."""
        self.fe.settle(intent.owner)

    def can_answer(self, q: int) -> bool:
        """Can something sent and not late (or waiting for the budget) still answer ``q``?"""
        return self.fe.has_live_request(q, timely=True) or self.fe.intents[q] > 0


class Equal(Policy):
    """``equal``: the backup instances are more instances of ``F``; queries go round-robin over all."""

    def pool(self) -> list[str]:
        return self.fe.deployment.deployed + self.fe.deployment.backup


class Backup(Policy):
    """``srp``: an unavailable query is re-run on a replica; if that replica misses its deadline or
    dies, on another one, else the query waits for its original."""

    kind = "replica"

    def on_unavailable(self, q: int) -> None:
        self.fe.recover(self.kind, q, self.fe.deployment.backup, self.fe.images[q][None])

    def on_lost(self, request: Request) -> None:
        self.on_unavailable(request.owner)  # another backup instance (the failed one is excluded)


class Student(Backup):
    """``nkd``: the compressed replica (NKD student) re-runs unavailable queries."""

    kind = "student"


class Hedge(Backup):
    """``hedge``: a duplicate to a replica once the hedging delay (the timing bound) has passed."""

    kind = "hedge"


class GroupCoded(Policy):
    """What every coded policy shares: queries ``g·k … g·k + k − 1`` form group ``g``; an answer
    or an unavailable member makes the group try to decode (:meth:`try_decode`); a group whose
    recovery finds no room leaves its members to their originals."""

    def members(self, g: int) -> range:
        return range(g * self.fe.k, min(g * self.fe.k + self.fe.k, self.fe.n))

    def try_decode(self, g: int) -> None:
        raise NotImplementedError

    def on_unavailable(self, q: int) -> None:
        self.try_decode(q // self.fe.k)

    def on_original(self, q: int) -> None:
        self.try_decode(q // self.fe.k)

    def on_no_room(self, intent: _Intent) -> None:
        for m in self.members(intent.owner):
            self.fe.settle(m)


class ParityModels(GroupCoded):
    """``pm``: a group is decoded as ``F_p(p) − Σ_{i≠j} F(x_i)`` when its parity output and all
    members but one are in and that one is unavailable (eager: unanswered). A parity request that
    misses its deadline or dies is sent again to another parity instance; with none, the members
    wait for their originals."""

    def after_send(self, q: int) -> None:
        fe = self.fe
        if q % fe.k == fe.k - 1:  # the group is complete: its parity query, through admission like any redundant work
            g = q // fe.k
            fe.recover("parity", g, fe.deployment.parity, fe.parity_payload(self.members(g)), proactive=True)

    def try_decode(self, g: int) -> None:
        fe = self.fe
        if g not in fe.parity_out:
            return
        missing = [m for m in self.members(g) if m not in fe.outputs]
        if len(missing) != 1:
            return
        q = missing[0]
        if fe.records[q]["outcome"] is None and (fe.eager or fe.records[q]["unavailable"]):
            known = [fe.outputs[m] for m in self.members(g) if m != q]
            output, worker = fe.parity_out[g]
            fe.answer(q, "reconstructed", coding.subtract_decode(output, known), worker, recovered_by="parity")

    def decodable_later(self, g: int, q: int) -> bool:
        """Can group ``g`` still rebuild ``q``: its parity output in or on its way (a request not
        late), and every other member's output in or on its way?"""
        fe = self.fe
        parity = g in fe.parity_out or fe.intents[("parity", g)] > 0 or any(
            not fe.requests[r].missed for r in fe.parity_requests[g])
        return (parity and len(self.members(g)) == fe.k and
                all(m in fe.outputs or fe.has_live_request(m, "original", timely=True)
                    for m in self.members(g) if m != q))

    def on_parity(self, g: int) -> None:
        self.try_decode(g)

    def on_lost(self, request: Request) -> None:
        g = request.owner
        if request.kind == "parity" and g not in self.fe.parity_out:
            self.fe.recover("parity", g, self.fe.deployment.parity, self.fe.parity_payload(self.members(g)))

    def can_answer(self, q: int) -> bool:
        return super().can_answer(q) or self.decodable_later(q // self.fe.k, q)


class Flake(ParityModels):
    """``flake``: decoding as ``pm``; as soon as a group cannot be decoded (its last parity request
    missed its deadline or died, the group is incomplete, or two of its members are unavailable),
    every unavailable member ``x`` gets a cache-partner request ``F_p(x + Σ_c x_c)`` with the ``k − 1``
    most recently completed queries ``x_c``, answered as ``F_p(x + Σ_c x_c) − Σ_c F(x_c)``. A partner
    request that misses its deadline is sent to another parity instance; with none, the query waits
    for its original."""

    def check(self, g: int) -> None:
        fe = self.fe
        self.try_decode(g)
        stuck = [m for m in self.members(g) if fe.records[m]["outcome"] is None
                 and fe.records[m]["unavailable"] and m not in fe.outputs]
        for m in stuck:
            if len(stuck) >= 2 or not self.decodable_later(g, m):
                if not fe.has_live_request(m, "partner") and fe.intents[m] == 0:
                    self.partner(m)

    def partner(self, q: int) -> None:
        fe = self.fe
        partners = tuple(c for c in reversed(fe.cache) if c != q)[: fe.k - 1]
        if len(partners) < fe.k - 1:
            fe.settle(q)
            return
        grouped = np.stack([fe.images[q], *(fe.images[c] for c in partners)])[None]
        fe.recover("partner", q, fe.deployment.parity, coding.encode_np(grouped, fe.encoder), partners)

    def on_unavailable(self, q: int) -> None:
        self.check(q // self.fe.k)

    def on_original(self, q: int) -> None:
        self.check(q // self.fe.k)

    def on_parity(self, g: int) -> None:
        self.check(g)

    def on_recovered(self, request: Request, output: np.ndarray) -> None:
        known = [self.fe.outputs[c] for c in request.partners]
        self.fe.answer(request.owner, "reconstructed", coding.subtract_decode(output, known),
                       request.worker, recovered_by="partner")

    def on_lost(self, request: Request) -> None:
        if request.kind == "parity":
            self.check(request.owner)
        elif self.fe.records[request.owner]["outcome"] is None:
            self.partner(request.owner)  # another parity instance (the failed one is excluded)

    def on_no_room(self, intent: _Intent) -> None:
        self.fe.settle(intent.owner)


class ApproxIFER(GroupCoded):
    """``approxifer``: each complete group of ``K = k`` queries is sent as ``N = K + S`` Berrut-coded
    queries to the ``k`` deployed instances and the ``S`` parity instances (all run ``F``); coded query
    ``j < K`` goes to deployed instance ``j`` with the straggler delay of member ``j`` (the fault that
    query would have met there). The group is decoded (:func:`flake_lib.approxifer.decode`) from all
    ``N`` results, or from the ``K`` or more in once a member is unavailable (eager: as soon as ``K``
    are in). A lost coded request goes to another instance when fewer than ``K`` results can still
    arrive; with none left, the members are sent alone to ``F``. The last, incomplete group is padded
    with its last query."""

    systematic = False

    def __init__(self, frontend: Frontend):
        super().__init__(frontend)
        self.coded: dict[int, np.ndarray] = {}
        self.results: dict[int, dict[int, np.ndarray]] = collections.defaultdict(dict)
        self.last_worker: dict[int, str] = {}  #: the instance whose result completed a group's decoding

    def instances(self) -> list[str]:
        return self.fe.deployment.deployed + self.fe.deployment.parity

    def after_send(self, q: int) -> None:
        fe = self.fe
        if q % fe.k != fe.k - 1 and q != fe.n - 1:
            return
        g, workers = q // fe.k, self.instances()
        members = self.members(g)
        x = fe.images[members.start: members.stop]
        if len(x) < fe.k:
            x = np.concatenate([x, np.repeat(x[-1:], fe.k - len(x), axis=0)])
        self.coded[g] = approxifer.encode(x, len(workers))
        sent = 0
        for j, worker in enumerate(workers):
            if fe.alive.get(worker):
                member = g * fe.k + j
                delay = float(fe.faults.delays_s[member]) if j < fe.k and member < fe.n else 0.0
                fe.send(worker, "coded", g, self.coded[g][j][None], delay, index=j)
                sent += 1
        if sent < fe.k:  # too few live instances to decode: the members go alone to F
            for m in members:
                fe.settle(m)

    def on_coded(self, request: Request, output: np.ndarray) -> None:
        self.results[request.owner].setdefault(request.index, output)
        self.last_worker[request.owner] = request.worker
        self.try_decode(request.owner)

    def try_decode(self, g: int) -> None:
        fe = self.fe
        open_members = [m for m in self.members(g) if fe.records[m]["outcome"] is None]
        have, n = self.results.get(g, {}), len(self.instances())
        if not open_members or len(have) < fe.k:
            return
        full = len(have) == n
        if not (full or fe.eager or any(fe.records[m]["unavailable"] for m in open_members)):
            return
        returned = sorted(have)
        decoded = approxifer.decode(np.stack([np.asarray(have[j]).reshape(-1) for j in returned]),
                                    np.asarray(returned), fe.k, n)
        for m in open_members:
            fe.answer(m, "decoded" if full else "reconstructed", decoded[m - g * fe.k], self.last_worker.get(g),
                      recovered_by=None if full else "coded")

    def can_answer(self, q: int) -> bool:
        fe, g = self.fe, q // self.fe.k
        coming = sum(1 for r in fe.parity_requests[g] if not fe.requests[r].missed)
        return (fe.has_live_request(q, timely=True) or fe.intents[("coded", g)] > 0
                or len(self.results.get(g, {})) + coming >= fe.k)

    def on_lost(self, request: Request) -> None:
        fe, g = self.fe, request.owner
        if request.kind != "coded" or all(fe.records[m]["outcome"] is not None for m in self.members(g)):
            return
        coming = sum(1 for r in fe.parity_requests[g] if not fe.requests[r].missed)
        if len(self.results.get(g, {})) + coming + fe.intents[("coded", g)] < fe.k:
            fe.recover("coded", g, self.instances(), self.coded[g][request.index][None], index=request.index)
