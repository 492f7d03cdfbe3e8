"""What the runs say: one-run summaries, the run tables' columns, what made the tail, paired comparisons.

- :func:`summarise`: :func:`flake_lib.stats.tail_summary` of one run (a failed query counts as ``+inf``),
  accuracy, unavailable and outcome counts; :func:`tail_statistic` (p99.9 only with at least 10⁴ queries).
- :func:`tail_attribution`: of the slowest queries, how many carried an injected fault and how many had
  their whole coding group unavailable.
- :func:`paired_table`: ``a − b`` inside each repeat with its bootstrap interval over repeats.
- Fig. 6 (:func:`fig6_rows`), the engine comparison (:func:`engine_overhead`), the column contracts of
  the latency files and :func:`write_queries` (one row per query, compressed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .. import serving, stats
from .faults import FaultPlan

#: Outcomes that mean "recovered by redundancy" (not the query's own original answer).
RECOVERED = ("reconstructed", "replica", "student", "hedge")


def summarise(records: pd.DataFrame) -> dict:
    """One run: ``tail_summary`` (failed = +inf), accuracy, unavailable and outcome counts, and how late
    the frontend itself took the queries (``frontend_lag_p99_ms``, ``frontend_lag_max_ms``: from the
    intended time to when its loop saw the arrival — the harness's own share of every latency)."""
    s = stats.tail_summary(records["latency_ms"])
    row = {"n_queries": len(records), "n_failed": s["n_failed"],
           "n_lost": int(records["lost"].sum()) if "lost" in records else s["n_failed"],
           **{key: s[key] for key in stats.TAIL_KEYS},
           "accuracy": float(records["correct"].mean()) if len(records) else float("nan"),
           "n_unavailable": int(records["unavailable"].sum())}
    row.update({f"n_{o}": int((records["outcome"] == o).sum()) for o in serving.OUTCOMES})  # n_failed again
    if "recovered_by" in records:
        row["n_retry"] = int((records["recovered_by"] == "retry").sum())
        row["n_partner"] = int((records["recovered_by"] == "partner").sum())
    if "arrived_s" in records and len(records):  # the harness's own lag: a query taken late by the frontend
        lag = 1000 * (records["arrived_s"].astype(float) - records["intended_s"].astype(float)).to_numpy()
        row.update(frontend_lag_p99_ms=float(np.nanpercentile(lag, 99)), frontend_lag_max_ms=float(np.nanmax(lag)))
    return row


def fault_events(records: pd.DataFrame, plan: FaultPlan, bound_ms: float | None, k: int = 2) -> dict:
    """What one run met: ``n_stragglers`` (queries given a delay), ``n_over_bound`` (those delayed beyond
    the timing bound; every straggler when decoding is eager), ``stall_s`` (seconds of injected delay and
    pause), ``n_kills``, and ``n_groups_2plus`` (coding groups of ``k`` consecutive queries with two or
    more members unavailable: one parity query cannot rebuild them from the group alone)."""
    delays = np.asarray(plan.delays_s, dtype=float)[: len(records)]
    over = delays > (bound_ms or 0.0) / 1000
    unavailable = records["unavailable"].to_numpy(dtype=bool) if "unavailable" in records else np.zeros(0, bool)
    n = len(unavailable) - len(unavailable) % k
    groups = int((unavailable[:n].reshape(-1, k).sum(axis=1) >= 2).sum()) if n else 0
    return {"n_stragglers": int((delays > 0).sum()), "n_over_bound": int(over.sum()),
            "stall_s": float(delays.sum() + sum(end - start for _, start, end in plan.pauses)),
            "n_kills": len(plan.kills), "n_groups_2plus": groups}


def tail_statistic(n_queries: int) -> str:
    """``p999_ms`` when a run holds at least 10 queries above its p99.9 (``n ≥ 10⁴``), else ``p99_ms``."""
    return "p999_ms" if n_queries >= 10_000 else "p99_ms"


def fault_windows(plan: FaultPlan, roles: dict[str, str],
                  restarts: Sequence[tuple[str, float]] = ()) -> dict[str, list[tuple[float, float]]]:
    """Per worker, the windows in which an injected pause or kill held it: a kill until the worker's
    first restart after it (``restarts``: ``(worker, s)``, as in the frontend's stats), else to the end."""
    windows: dict[str, list[tuple[float, float]]] = {}
    for role, start, end in plan.pauses:
        if role in roles:
            windows.setdefault(roles[role], []).append((start, end))
    for role, at in plan.kills:
        if role in roles:
            worker = roles[role]
            back = min((t for w, t in restarts if w == worker and t >= at), default=math.inf)
            windows.setdefault(worker, []).append((at, back))
    return windows


def fault_carriers(records: pd.DataFrame, plan: FaultPlan, roles: dict[str, str],
                   restarts: Sequence[tuple[str, float]] = ()) -> pd.DataFrame:
    """Per query: ``own_delay`` (it was a straggler), ``queued`` (it was sent to an instance while a
    straggler sent before it was still being delayed there), ``instance_fault`` (its instance, or a
    redundant instance while it was unavailable, was paused or killed during its life); ``carried``:
    any of them."""
    sent = records["sent_s"].astype(float).to_numpy()
    answered = records["answered_s"].astype(float).to_numpy()
    answered = np.where(np.isnan(answered), np.inf, answered)
    instance = records["instance"].astype(object).to_numpy()
    delay = np.asarray(plan.delays_s, dtype=float)[: len(records)]
    own = delay > 0
    queued = np.zeros(len(records), dtype=bool)
    for s_ in np.flatnonzero(own):
        if instance[s_] is None:
            continue
        later = np.flatnonzero(instance == instance[s_])
        later = later[later > s_]
        queued[later[sent[later] < sent[s_] + delay[s_]]] = True
    windows = fault_windows(plan, roles, restarts)
    redundant = [w for r, w in roles.items() if r.startswith("redundant")]
    unavailable = records["unavailable"].to_numpy(dtype=bool)
    hit = np.zeros(len(records), dtype=bool)
    for worker, spans in windows.items():
        for start, end in spans:
            overlap = (sent <= end) & (answered >= start)
            hit |= overlap & ((instance == worker) | (unavailable & (worker in redundant)))
    return pd.DataFrame({"own_delay": own, "queued": queued & ~own, "instance_fault": hit,
                         "carried": own | queued | hit})


def tail_attribution(records: pd.DataFrame, plan: FaultPlan, roles: dict[str, str], top: float = 0.001,
                     restarts: Sequence[tuple[str, float]] = (), k: int = 2) -> dict:
    """Of the slowest ``top`` share of queries (failed ones first): how many carried an injected fault
    (:func:`fault_carriers`), and how many had their whole coding group (queries ``gk … gk+k−1``)
    unavailable (``share_group_unavailable``: a group code with one parity query cannot rebuild them
    from the group alone), as shares."""
    latency = records["latency_ms"].astype(float).fillna(np.inf).to_numpy()
    n_top = max(1, int(math.ceil(top * len(records))))
    slowest = np.argsort(-latency, kind="stable")[:n_top]
    carriers = fault_carriers(records, plan, roles, restarts).iloc[slowest]
    unavailable = records["unavailable"].to_numpy(dtype=bool)
    n = len(unavailable) - len(unavailable) % k
    whole = np.zeros(len(unavailable), dtype=bool)
    whole[:n] = np.repeat(unavailable[:n].reshape(-1, k).all(axis=1), k)
    return {"n_top": n_top, **{f"share_{c}": float(carriers[c].mean()) for c in carriers.columns},
            "share_group_unavailable": float(whole[slowest].mean())}


def paired_table(table: pd.DataFrame, comparisons: Sequence[tuple[str, str]],
                 statistics: Sequence[str] = ("gpm_ms", "gmm_ms"), by: str = "repeat") -> pd.DataFrame:
    """``a − b`` of each statistic inside each repeat, with its bootstrap interval over repeats
    (:func:`flake_lib.stats.paired_difference`: ``low_ms``, ``high_ms``), Student's t interval
    (``t_low_ms``, ``t_high_ms``) and the exact sign test (``sign_p``), and what the t interval says
    (``not distinguishable`` when it covers 0; with few repeats the bootstrap interval is little more
    than the range of the differences)."""
    rows = []
    for a, b in comparisons:
        for statistic in statistics:
            both = pd.concat([table[table["method"] == a].set_index(by)[statistic].rename("a"),
                              table[table["method"] == b].set_index(by)[statistic].rename("b")],
                             axis=1).dropna()
            d = stats.paired_difference(both["a"], both["b"])
            t = stats.t_interval(d["differences"])
            sign = stats.sign_test(d["differences"])
            says = stats.interval_says(t["low"], t["high"])
            says = {"a < b": f"{a} < {b}", "a > b": f"{a} > {b}"}.get(says, says)
            rows.append({"comparison": f"{a} − {b}", "statistic": statistic, "n": d["n"],
                         "mean_ms": d["mean"], "low_ms": d["low"], "high_ms": d["high"], "t_low_ms": t["low"],
                         "t_high_ms": t["high"], "sign_p": sign["p"], "says": says,
                         "per_repeat_ms": ", ".join(f"{v:.2f}" for v in d["differences"])})
    return pd.DataFrame(rows)


def recovered_by(part: pd.DataFrame) -> str:
    """``"source:count;…"``: what answered the queries (``recovered_by`` when redundancy did, else the
    outcome), most frequent first."""
    source = part["recovered_by"].where(part["recovered_by"].notna(), part["outcome"]) \
        if "recovered_by" in part else part["outcome"]
    counts = source.fillna("unanswered").value_counts()
    return ";".join(f"{s}:{c}" for s, c in counts.items())


def merge_counts(strings) -> str:
    """Add up ``"source:count;…"`` strings (:func:`recovered_by`): ``["a:1;b:2", "a:3"] → "a:4;b:2"``."""
    total: dict[str, int] = {}
    for text in strings:
        for item in filter(None, str(text).split(";")):
            source, _, count = item.rpartition(":")
            total[source] = total.get(source, 0) + int(count)
    return ";".join(f"{s}:{c}" for s, c in sorted(total.items(), key=lambda kv: -kv[1]))


def fig6_rows(records: pd.DataFrame, tags: np.ndarray) -> list[dict]:
    """Per number unavailable ``m``: the latency of the ``m``-burst queries, how many redundancy
    recovered (outcome in :data:`RECOVERED`) and what answered them."""
    rows = []
    tagged = records.assign(m=np.asarray(tags))
    for m, part in tagged[tagged["m"] > 0].groupby("m"):
        summary = stats.tail_summary(part["latency_ms"])
        rows.append({"n_unavailable": int(m), "n": len(part),
                     "n_recovered": int(part["outcome"].isin(RECOVERED).sum()),
                     "n_declared_unavailable": int(part["unavailable"].sum()),
                     "median_ms": summary["median_ms"], "p99_ms": summary["p99_ms"],
                     "max_ms": summary["max_ms"], "recovered_by": recovered_by(part)})
    return rows


def engine_overhead(runs: pd.DataFrame, base: str = "process", other: str = "ray",
                    statistics: Sequence[str] = ("median_ms", "p999_ms", "gmm_ms", "gpm_ms")) -> pd.DataFrame:
    """Per method and statistic: the median over repeats on each engine and the paired difference
    ``other − base`` within each repeat (median, min and max over repeats): what the engine adds."""
    rows = []
    for method, part in runs.groupby("method", sort=False):
        by = part.pivot_table(index="repeat", columns="engine", values=list(statistics))
        for statistic in statistics:
            difference = by[(statistic, other)] - by[(statistic, base)]
            rows.append({"method": method, "statistic": statistic, base: float(by[(statistic, base)].median()),
                         other: float(by[(statistic, other)].median()), "difference": float(difference.median()),
                         "difference_min": float(difference.min()), "difference_max": float(difference.max()),
                         "repeats": len(difference)})
    return pd.DataFrame(rows)


SWEEP_COLUMNS = ["method", "mode", "qps", "repeat", "median_ms", "p99_ms", "p999_ms", "max_ms", "gmm_ms",
                 "gpm_ms", "cpu_util", "parity_util", "backup_util", "accuracy", "n_queries", "n_failed"]


TABLE1_COLUMNS = ["method", "repeat", "order", "mode", "faults", "qps", "n_queries", "n_lost", "n_failed",
                  "median_ms", "p99_ms", "p999_ms", "max_ms", "gmm_ms", "gpm_ms", "accuracy", "n_unavailable",
                  *[f"n_{o}" for o in serving.OUTCOMES if o != "failed"], "cpu_percent"]  # n_failed: above


BOUND_COLUMNS = ["method", "mode", "point", "qps", "bound_ms", "repeat", "median_ms", "p99_ms", "p999_ms",
                 "max_ms", "gmm_ms", "gpm_ms", "n_queries", "n_failed", "n_reconstructed"]


FIG6_COLUMNS = ["method", "n_unavailable", "instances", "repeat", "n", "n_recovered", "median_ms", "p99_ms",
                "max_ms", "recovered_by"]


def ordered(table: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``table`` with the contract's ``columns`` first (in order), then any others."""
    return table[list(columns) + [c for c in table.columns if c not in columns]]


TIME_COLUMNS = ("intended_s", "arrived_s", "sent_s", "answered_s", "delay_s", "latency_ms", "unavailable_s")


def write_queries(queries: pd.DataFrame, path) -> None:
    """One row per query of the headline runs, zstd-compressed: times as float32 (a few µs of
    resolution) split by byte stream, query and group ids as int32 delta-encoded, text columns as
    dictionaries (about 12 bytes a query)."""
    times = [c for c in TIME_COLUMNS if c in queries]
    ids = [c for c in ("query", "group") if c in queries]
    table = queries.astype({**{c: "float32" for c in times}, **{c: "Int32" for c in ids}})
    text = [c for c in table.columns if table[c].dtype == object or pd.api.types.is_string_dtype(table[c])]
    table.to_parquet(path, index=False, compression="zstd", compression_level=9, use_dictionary=text,
                     column_encoding={**{c: "BYTE_STREAM_SPLIT" for c in times},
                                      **{c: "DELTA_BINARY_PACKED" for c in ids}})


#: The columns that say which block of Table I a run belongs to.
BLOCK_COLUMNS = ["block", "regime", "mode", "dispatch", "setting"]


def block_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per block of Table I (``BLOCK_COLUMNS`` present in ``table``) and method: the number of repeats,
    the median over repeats of each run's median, p99, p99.9, GPM and GMM (a percentile is computed inside
    a run, never averaged), their range, and the sums that say what the block met and what the harness
    did: fault events, failed queries, deferred and dropped recoveries, the longest wait for admission."""
    keys = [c for c in BLOCK_COLUMNS if c in table] + ["method"]
    rows = []
    for key, part in table.groupby(keys, sort=False):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row["repeats"] = part["repeat"].nunique() if "repeat" in part else len(part)
        for statistic in ("median_ms", "p99_ms", "p999_ms", "max_ms", "gpm_ms", "gmm_ms"):
            values = part[statistic]
            row[statistic] = float(values.median())
            row[f"{statistic}_min"], row[f"{statistic}_max"] = float(values.min()), float(values.max())
        for total in ("n_queries", "n_over_bound", "n_groups_2plus", "stall_s", "n_failed", "recovery_deferred",
                      "recovery_dropped"):
            if total in part:
                row[total] = float(part[total].sum())
        for extreme in ("admission_wait_max_ms", "redundant_util", "frontend_lag_max_ms"):
            if extreme in part:
                row[extreme] = float(part[extreme].max())
        if "admission_acted_idle" in part:
            row["admission_acted_idle"] = bool(part["admission_acted_idle"].astype(bool).any())
        rows.append(row)
    return pd.DataFrame(rows)


def predicted_vs_measured(summary: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """The block summary's medians over repeats beside what was predicted before the runs (``predictions``
    with ``regime, mode, method, predicted_*``), with ``measured / predicted`` for p99.9 and the maximum."""
    keys = [c for c in ("regime", "mode", "dispatch", "method") if c in summary and c in predictions]
    both = summary.merge(predictions, on=keys, how="inner")
    both["p999_measured_over_predicted"] = both["p999_ms"] / both["predicted_p999_ms"]
    both["max_measured_over_predicted"] = both["max_ms"] / both["predicted_max_ms"]
    return both[keys + ["predicted_median_ms", "median_ms", "predicted_p999_ms", "p999_ms", "predicted_max_ms",
                        "max_ms", "p999_measured_over_predicted", "max_measured_over_predicted"]]
