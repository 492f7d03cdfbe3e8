"""Statistics shared by the latency experiment and the claims: tail summaries and paired intervals.

- :func:`tail_summary`: median, p99, p99.9, max, ``GMM = max − median`` and ``GPM = p99.9 − median``
  of one run. A query nothing answered counts in the tail as ``+inf`` (it is never dropped), so a
  percentile that falls on such a query *is* infinite; ``n_failed`` says how many there were.
- :func:`paired_difference`: the mean over repeats of ``a_r − b_r`` (two methods measured on the same
  arrivals and faults in repeat ``r``) with a percentile-bootstrap interval over repeats.
- :func:`t_interval`, :func:`sign_test`: the small-sample companions of the bootstrap for paired
  differences over few repeats (``scipy.stats``): Student's t interval of the mean difference, and the
  exact two-sided sign test (with ``n`` repeats its smallest p-value is ``2 / 2ⁿ``: 0.25 with 3, 0.0625 with 5).
- :func:`log_ratio_interval`: a ratio of paired statistics, ``exp`` of the t interval of their log ratios.
- :func:`ratio_of_means`: ``mean(a) / mean(b)`` over paired repeats with its bootstrap interval.
- :func:`proportion_interval`, :func:`proportion_difference`: the test-set sampling interval of an
  accuracy ``p`` measured on ``n`` images, ``p ± z·√(p(1 − p)/n)``, and of a difference of two.

Percentiles are never averaged across repeats: a comparison is made inside each repeat, then the
per-repeat differences are summarised.
"""

from __future__ import annotations

import math

import numpy as np

TAIL_KEYS = ("median_ms", "p99_ms", "p999_ms", "max_ms", "gmm_ms", "gpm_ms")


def tail_summary(latencies_ms) -> dict:
    """``median_ms, p99_ms, p999_ms, max_ms, gmm_ms, gpm_ms, n, n_failed`` of one run.

    ``latencies_ms`` may hold ``None`` / NaN / ``inf`` for a query nothing answered: each counts as
    ``+inf``, so ``max_ms`` (and any percentile that reaches such a query) is ``inf``; percentiles use
    the "lower" rule so that they are always one observed latency (never an interpolation with inf).
    """
    x = np.array([np.inf if v is None else float(v) for v in latencies_ms], dtype=float)
    x[np.isnan(x)] = np.inf
    n_failed = int(np.isinf(x).sum())
    if x.size == 0:
        return {**{k: float("nan") for k in TAIL_KEYS}, "n": 0, "n_failed": 0}
    median, p99, p999 = (float(np.percentile(x, q, method="lower")) for q in (50, 99, 99.9))
    top = float(x.max())
    return {"median_ms": median, "p99_ms": p99, "p999_ms": p999, "max_ms": top,
            "gmm_ms": top - median, "gpm_ms": p999 - median, "n": int(x.size), "n_failed": n_failed}


def _bootstrap_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    return values[idx].mean(axis=1)


def paired_difference(a, b, *, level: float = 0.95, n_boot: int = 10_000, seed: int = 0) -> dict:
    """Mean of the paired differences ``d_r = a_r − b_r`` over repeats ``r`` and a percentile-bootstrap
    interval at ``level`` (resampling repeats). Returns ``mean, low, high, n, differences``.

    With fewer than 2 finite pairs the interval is undefined (``low = high = nan``). An infinite
    difference (a run whose statistic reached a failed query) makes the interval infinite on that side.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length, got {a.shape} and {b.shape}")
    d = a - b
    d = d[~np.isnan(d)]
    out = {"mean": float(d.mean()) if d.size else float("nan"), "n": int(d.size),
           "differences": [float(v) for v in d]}
    if d.size < 2:
        return {**out, "low": float("nan"), "high": float("nan")}
    if np.isinf(d).any():
        low = -math.inf if (d == -np.inf).any() else float(np.min(d))
        high = math.inf if (d == np.inf).any() else float(np.max(d))
        return {**out, "low": low, "high": high}
    means = _bootstrap_means(d, n_boot, seed)
    tail = 100 * (1 - level) / 2
    return {**out, "low": float(np.percentile(means, tail)), "high": float(np.percentile(means, 100 - tail))}


def t_interval(differences, *, level: float = 0.95) -> dict:
    """Student's t interval of the mean of paired differences: ``mean ± t_{n−1} · s / √n``. Returns
    ``mean, low, high, n`` (``nan`` bounds with fewer than 2 finite values, infinite ones with an
    infinite difference)."""
    from scipy import stats as scipy_stats

    d = np.asarray(differences, dtype=float)
    d = d[~np.isnan(d)]
    out = {"mean": float(d.mean()) if d.size else float("nan"), "n": int(d.size)}
    if d.size < 2:
        return {**out, "low": float("nan"), "high": float("nan")}
    if np.isinf(d).any():
        return {**out, "low": -math.inf if (d == -np.inf).any() else float(d.min()),
                "high": math.inf if (d == np.inf).any() else float(d.max())}
    half = float(scipy_stats.t.ppf(0.5 + level / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
    return {**out, "low": out["mean"] - half, "high": out["mean"] + half}


def sign_test(differences) -> dict:
    """The exact two-sided sign test of paired differences against 0 (``scipy.stats.binomtest``): how many
    are above and below 0 (zeros left out) and ``p``."""
    from scipy import stats as scipy_stats

    d = np.asarray(differences, dtype=float)
    d = d[~np.isnan(d) & (d != 0)]
    above, below = int((d > 0).sum()), int((d < 0).sum())
    p = float(scipy_stats.binomtest(above, above + below, 0.5).pvalue) if above + below else float("nan")
    return {"above": above, "below": below, "n": above + below, "p": p}


def log_ratio_interval(a, b, *, level: float = 0.95) -> dict:
    """``a / b`` of paired positive statistics: the geometric mean of the per-repeat ratios and ``exp`` of
    the t interval of their logarithms. Returns ``ratio, low, high, n``."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    d = t_interval(np.log(a[keep] / b[keep]), level=level)
    return {"ratio": math.exp(d["mean"]) if d["n"] else float("nan"),
            "low": math.exp(d["low"]) if not math.isnan(d["low"]) else float("nan"),
            "high": math.exp(d["high"]) if not math.isnan(d["high"]) else float("nan"), "n": d["n"]}


def ratio_of_means(a, b, *, level: float = 0.95, n_boot: int = 10_000, seed: int = 0) -> dict:
    """``mean(a) / mean(b)`` over paired repeats, with a bootstrap interval that resamples the repeats
    (the same resampled repeats for ``a`` and ``b``). Returns ``ratio, low, high, n``."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if a.size == 0 or b.mean() == 0:
        return {"ratio": float("nan"), "low": float("nan"), "high": float("nan"), "n": int(a.size)}
    ratio = float(a.mean() / b.mean())
    if a.size < 2:
        return {"ratio": ratio, "low": float("nan"), "high": float("nan"), "n": int(a.size)}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(n_boot, a.size))
    with np.errstate(divide="ignore", invalid="ignore"):
        boots = a[idx].mean(axis=1) / b[idx].mean(axis=1)
    boots = boots[np.isfinite(boots)]
    tail = 100 * (1 - level) / 2
    return {"ratio": ratio, "low": float(np.percentile(boots, tail)),
            "high": float(np.percentile(boots, 100 - tail)), "n": int(a.size)}


def proportion_interval(p: float, n: int, *, z: float = 1.959964) -> dict:
    """``p ± z·√(p(1 − p)/n)``: the normal-approximation interval (95 % for the default ``z``) of an
    accuracy ``p`` measured on ``n`` independent test images. Returns ``mean, low, high, n``."""
    half = z * math.sqrt(p * (1 - p) / n) if n else float("nan")
    return {"mean": float(p), "low": p - half, "high": p + half, "n": int(n)}


def proportion_difference(p1: float, n1: int, p2: float, n2: int, *, z: float = 1.959964) -> dict:
    """``p1 − p2 ± z·√(p1(1 − p1)/n1 + p2(1 − p2)/n2)``, the two accuracies taken as independent
    samples. Measured on the same test images the two are positively correlated, so this interval is
    wider than the paired one: it errs towards "not distinguishable". Returns ``mean, low, high, n``."""
    half = z * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2) if n1 and n2 else float("nan")
    return {"mean": float(p1 - p2), "low": p1 - p2 - half, "high": p1 - p2 + half, "n": int(min(n1, n2))}


def interval_says(low: float, high: float) -> str:
    """Which way an interval of ``a − b`` points: ``"a < b"`` (entirely below 0), ``"a > b"``
    (entirely above 0), ``"not distinguishable"`` (it covers 0) or ``"undefined"`` (no interval)."""
    if math.isnan(low) or math.isnan(high):
        return "undefined"
    if high < 0:
        return "a < b"
    if low > 0:
        return "a > b"
    return "not distinguishable"
