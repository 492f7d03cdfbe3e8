"""Faults that make the tail, laid out in time and then on a schedule's queries.

A seeded :class:`FaultTimeline` (:func:`fault_timeline`) holds stragglers at a rate per second, each
delayed ``(s − 1) × reference`` with ``s`` a slowdown ratio of the trace (notebook 01) and the reference
chosen so that a stated share of the stragglers exceeds the timing bound (:func:`straggler_reference_ms`),
capped; SIGSTOP windows of any instance at a rate per second; SIGKILLs per run. :func:`fault_plan` puts it
on a schedule: a straggler delays the first query sent at or after its time, so runs of the same length
at different loads replay the same faults at the same times. A :class:`FaultPlan` names roles; on a
method's workers it is a :class:`~flake_lib.serving.FaultSchedule` (:meth:`FaultPlan.for_method`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import serving
from .roles import role_map


@dataclass(frozen=True)
class FaultConfig:
    """Fault rates per second, laid out on a timeline that does not depend on the load.

    ``straggler_rate_per_s``: straggler events per second (a Poisson process in time); each delays
    the first query sent at or after its time by ``(s − 1) · reference_ms`` (``s`` a trace slowdown
    above 1), capped at ``cap_ms``. ``pause_rate_per_s``: SIGSTOP windows of ``pause_ms`` per second,
    each on a role drawn from ``roles``. ``kills``: SIGKILLs per run (at uniform times in the middle
    60 % of ``duration_s``, roles drawn from ``roles``) — a count, not a rate: a killed worker needs
    seconds to restart. ``group_stall_rate_per_s``: whole-group stalls per second, each delaying every
    member of one coding group by the same time drawn uniformly from ``group_stall_ms`` (overlapping
    stalls on all the deployed instances at once: one parity query cannot rebuild that group). With one
    fault seed, runs of the same length at different loads replay the same faults at the same times:
    load sweep levels differ only in load.
    """

    straggler_rate_per_s: float = 2.0
    reference_ms: float = 30.0
    cap_ms: float = 1000.0
    pause_rate_per_s: float = 0.05
    pause_ms: float = 200.0
    kills: int = 0
    roles: tuple[str, ...] = ("deployed0", "deployed1", "redundant0")
    group_stall_rate_per_s: float = 0.0
    group_stall_ms: tuple[float, float] = (50.0, 200.0)


#: The fault regimes of Table I, each a block of its own because each tests something else: R1 whether
#: reconstruction speed shows (delays in proportion to an inference, the paper's setting), R2 queueing
#: behind a long stall, R3 the recovery rule when a whole coding group is unavailable.
REGIMES = {"R1": "isolated stragglers", "R2": "long single stalls", "R3": "a whole coding group unavailable"}


def regime_config(parameters: dict, reference_ms: float) -> FaultConfig:
    """A regime's :class:`FaultConfig` from its parameters (``straggler_rate_per_s``,
    ``straggler_cap_ms``, ``pause_rate_per_s``, ``pause_ms``, ``kills``, ``group_stall_rate_per_s``,
    ``group_stall_ms``); a fault it does not name does not happen. ``reference_ms``: the straggler
    mapping's reference time (:func:`straggler_reference_ms`)."""
    known = {"straggler_rate_per_s", "straggler_cap_ms", "pause_rate_per_s", "pause_ms", "kills",
             "group_stall_rate_per_s", "group_stall_ms"}
    unknown = set(parameters) - known
    if unknown:
        raise ValueError(f"unknown regime parameters {sorted(unknown)}; known: {sorted(known)}")
    p = parameters
    return FaultConfig(straggler_rate_per_s=p.get("straggler_rate_per_s", 0.0), reference_ms=reference_ms,
                       cap_ms=p.get("straggler_cap_ms", 1000.0), pause_rate_per_s=p.get("pause_rate_per_s", 0.0),
                       pause_ms=p.get("pause_ms", 200.0), kills=int(p.get("kills", 0)),
                       group_stall_rate_per_s=p.get("group_stall_rate_per_s", 0.0),
                       group_stall_ms=tuple(p.get("group_stall_ms", (50.0, 200.0))))


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
    ``(role, start_s, end_s)``, ``kills`` ``(role, at_s)``, ``group_stalls`` ``(at_s, delay_s)``."""

    stragglers: list[tuple[float, float]]
    pauses: list[tuple[str, float, float]]
    kills: list[tuple[str, float]]
    group_stalls: list[tuple[float, float]] = field(default_factory=list)


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
    rng = np.random.default_rng([seed, 5])
    count = rng.poisson(config.group_stall_rate_per_s * duration_s)
    group_times = np.sort(rng.uniform(0, duration_s, count))
    group_delays = rng.uniform(*config.group_stall_ms, count) / 1000
    return FaultTimeline(list(zip(times.tolist(), delays.tolist())), sorted(pauses, key=lambda p: p[1]),
                         sorted(kills, key=lambda p: p[1]), list(zip(group_times.tolist(), group_delays.tolist())))


def fault_plan(arrivals: np.ndarray, timeline: FaultTimeline, k: int = 2) -> FaultPlan:
    """The timeline on a schedule: each straggler delays the first query whose intended time is at or
    after the straggler's (one straggler per query: a later one moves to the next free query); each
    group stall delays every member of the first coding group of ``k`` (queries ``gk … gk + k − 1``)
    that starts at or after its time and holds no other fault; faults after the last arrival are
    dropped."""
    n = len(arrivals)
    delays = np.zeros(n)
    end = float(arrivals[-1]) if n else 0.0
    for at, delay in timeline.group_stalls:
        g = -(-int(np.searchsorted(arrivals, at)) // k)
        while (g + 1) * k <= n and delays[g * k:(g + 1) * k].any():
            g += 1
        if (g + 1) * k <= n:
            delays[g * k:(g + 1) * k] = delay
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
