"""The open-loop load and the latency statistics of one run.

Latency of a query = time its answer is ready − its *intended* send time (no coordinated omission).
"""

from __future__ import annotations

import numpy as np

from ..stats import tail_summary


def poisson_arrivals(rate_qps: float, n: int, seed: int = 0) -> np.ndarray:
    """Absolute intended send times (s from the start) of an open-loop Poisson load."""
    if rate_qps <= 0:
        raise ValueError("the request rate must be positive")
    return np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate_qps, n))


def latency_summary(latencies_ms) -> dict:
    """median, p99, p99.9, max, GMM = max − median, GPM = p99.9 − median (ms), ``n`` and ``n_failed``
    (:func:`flake_lib.stats.tail_summary`): a query nothing answered (``None``) counts as ``+inf``."""
    return tail_summary(latencies_ms)
