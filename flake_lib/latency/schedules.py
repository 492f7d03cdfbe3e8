"""Schedules (arrivals, query images, faults), their seeds, and the order runs are made in.

- :class:`Schedule`: Poisson arrivals at a rate, the test images asked, the faults (:func:`make_schedule`);
  a load sweep's level (:func:`level_schedule`) shares one fault timeline with every other level.
- **Seed streams** (:data:`SEED_STREAMS`, :func:`stream_seed`): every block of the latency experiment
  draws its schedules from a named stream of the run's seed (``headline``, ``calibration``, ``sweep``,
  ``knee``, ``bound_sweep``, ``fig6``), so that a later notebook replays the same schedules by name.
- **Order**: methods interleaved inside each repeat with the order rotated (:func:`rotated_orders`,
  :func:`headline_plan`); two engines in ABBA order (:func:`abba_order`).
- **Fig. 6** (:func:`burst_schedule`): ``m`` queries with the same intended time whose instances stall
  far beyond the bound, so that all ``m`` are unavailable at the same moment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import serving
from .faults import FaultConfig, FaultPlan, fault_plan, fault_timeline


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
                  seed: int, fault_seed: int | None = None, k: int = 2) -> Schedule:
    """Poisson arrivals at ``qps``, ``n`` test images drawn at random (both from ``seed``), and the
    faults of ``config`` (``None``: no fault) on a timeline from ``fault_seed`` (default ``seed``)
    as long as the expected run, ``n / qps``."""
    arrivals = serving.poisson_arrivals(qps, n, seed)
    index = np.random.default_rng([seed, 4]).integers(0, pool_size, n)
    if config is None:
        return Schedule(qps, arrivals, index, FaultPlan.none(n), seed)
    timeline = fault_timeline(n / qps, config, slowdowns, seed if fault_seed is None else fault_seed)
    return Schedule(qps, arrivals, index, fault_plan(arrivals, timeline, k), seed)


def level_seed(seed: int, qps: float) -> int:
    """The arrival seed of a load level: every method (and both modes) replay the same schedule."""
    return int(seed) * 100_003 + int(round(qps * 10))


#: The named seed streams of the latency experiment: ``stream_seed(seed, name, i) = seed + base + step·i``
#: with ``(base, step)`` below. ``headline``: repeat ``i`` of Table I; ``calibration``: the hedging delay's
#: run; ``sweep``: the load sweep's fault timeline (every level) and the fleets'; ``knee``: repeat ``i`` at
#: the knee; ``capacity``: repeat ``i`` of the capacity runs (repeat 0 replays ``sweep``);
#: ``bound_sweep``: the timing-bound sweep and the settings sweeps; ``fig6``: repeat ``i`` of Fig. 6;
#: ``block``: repeat ``i`` of a Table I block other than the judged one (``headline``).
SEED_STREAMS = {"headline": (1000, 1000), "calibration": (999, 0), "sweep": (11, 0), "capacity": (11, 1),
                "knee": (100, 1), "bound_sweep": (13, 0), "fig6": (600, 1), "block": (5000, 1000)}


def stream_seed(seed: int, name: str, index: int = 0) -> int:
    """The seed of item ``index`` of the stream ``name`` (:data:`SEED_STREAMS`) of a run seeded ``seed``."""
    if name not in SEED_STREAMS:
        raise ValueError(f"unknown seed stream {name!r}; known: {', '.join(SEED_STREAMS)}")
    base, step = SEED_STREAMS[name]
    return int(seed) + base + step * int(index)


def level_schedule(qps: float, seconds: float, pool_size: int, config: FaultConfig | None, slowdowns: np.ndarray,
                   seed: int, k: int = 2) -> Schedule:
    """One level of a load sweep: ``round(qps · seconds)`` queries, arrivals from the level's seed, and
    the faults of one timeline (``seed``) shared by every level — the levels differ only in load."""
    return make_schedule(qps, max(int(round(qps * seconds)), 2), pool_size, config, slowdowns,
                         level_seed(seed, qps), fault_seed=seed, k=k)


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


def rotated_orders(entries: Sequence, repeats: int) -> list[list]:
    """The run order of each repeat: ``entries`` rotated by the repeat number, so that over
    ``len(entries)`` repeats every entry runs once in every position."""
    entries = list(entries)
    n = len(entries)
    return [entries[r % n:] + entries[: r % n] if n else [] for r in range(repeats)]


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


def abba_order(engines: Sequence[str], repeats: int) -> list[tuple[str, int]]:
    """``(engine, repeat)`` in ABBA order (``A B B A A B …`` for two engines): a drift that is linear
    in time moves both engines alike, and each engine's runs come in blocks (one start-up per block)."""
    order = []
    for repeat in range(repeats):
        order += [(engine, repeat) for engine in (engines if repeat % 2 == 0 else list(reversed(engines)))]
    return order
