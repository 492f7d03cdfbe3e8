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

    def events(self) -> list[tuple[float, str, str]]:
        """``(at_s, "pause" | "resume" | "kill", worker)`` in time order."""
        return sorted([(t, "pause", w) for w, t, _ in self.pauses] +
                      [(t, "resume", w) for w, _, t in self.pauses] +
                      [(t, "kill", w) for w, t in self.kills])
