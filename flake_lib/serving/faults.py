"""Faults replayed identically for every method: stragglers, pauses (SIGSTOP) and kills (SIGKILL)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FaultSchedule:
    """Faults replayed identically for every method.

    ``delays_s[i]``: extra time query ``i`` spends on its deployed instance (a straggler);
    ``pauses``: ``(worker, start_s, end_s)`` unavailability windows (SIGSTOP … SIGCONT);
    ``kills``: ``(worker, at_s)`` fail-stop (SIGKILL). The frontend sends these signals but is not
    told what they did: it finds a stopped worker by its missed deadlines and a killed one by the end
    of its response pipe, exactly as it would find an outside fault.
    """

    delays_s: np.ndarray
    pauses: list[tuple[str, float, float]] = field(default_factory=list)
    kills: list[tuple[str, float]] = field(default_factory=list)

    @classmethod
    def from_slowdowns(cls, slowdowns: np.ndarray, n: int, service_s: float, fraction: float,
                       seed: int = 0, **faults) -> FaultSchedule:
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

    def events(self) -> list[tuple[float, str, str]]:
        """``(at_s, "pause" | "resume" | "kill", worker)`` in time order."""
        return sorted([(t, "pause", w) for w, t, _ in self.pauses] +
                      [(t, "resume", w) for w, _, t in self.pauses] +
                      [(t, "kill", w) for w, t in self.kills])
