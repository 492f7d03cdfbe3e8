"""The open-loop load: Poisson arrivals at intended send times.

Latency of a query = time its answer is ready − its *intended* send time (no coordinated omission);
its statistics are :func:`flake_lib.stats.tail_summary`.
"""

from __future__ import annotations

import numpy as np


def poisson_arrivals(rate_qps: float, n: int, seed: int = 0) -> np.ndarray:
    """Absolute intended send times (s from the start) of an open-loop Poisson load."""
    if rate_qps <= 0:
        raise ValueError("the request rate must be positive")
    return np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate_qps, n))
