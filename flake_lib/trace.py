"""The Alibaba cluster-trace-v2018 ``batch_task`` table: DAGs, long tail, slowdowns (paper Fig. 1).

Each row is one task of a batch job: ``task_name, instance_num, job_name, task_type, status,
start_time, end_time, plan_cpu, plan_mem`` (``COLUMNS``). The official ``batch_task.csv`` has no
header; the sample ``alibaba-v2018/batch_task_selected_dags.csv`` of the data mirror has one; both
are read. Times are integer seconds from the trace start, 0 meaning unknown.

DAG dependencies are encoded in ``task_name``: ``M1`` is task 1 (kind M) with no dependency,
``R2_1`` task 2 depending on task 1, ``J5_3_4`` task 5 depending on tasks 3 and 4 of the same job.
``task_*`` names are independent tasks without DAG information.

Choices (each counted in the dict returned by ``load_batch_task``):

* Only ``status == "Terminated"`` rows with valid times are kept (``excluded_not_terminated``, then
  ``excluded_invalid_time``: NaN, ``start <= 0``, ``end <= 0`` or ``end < start``).
  ``response_time_s = end_time - start_time``. ``job_complete`` is False for the tasks of a job
  that lost a row, whose completion time is therefore a lower bound.
* ``parse_task_name`` is strict and raises ``ValueError`` on a malformed name; the loader keeps
  such rows as non-DAG tasks and counts them (``malformed_name``).
* The trace truncates ``task_name`` to 50 characters (``NAME_WIDTH``): such a name ending in ``_``
  is parsed without it; otherwise its last dependency may be cut (``_1`` for ``_19``) and is
  dropped. Either way the dependency list may be incomplete (``truncated_name``).
* Dependencies on tasks absent from the (kept) job are dropped and counted per job
  (``G.graph["dangling_deps"]``); jobs whose graph has a cycle are reported (a warning,
  ``G.graph["is_dag"] = False``) and get no levels, critical path nor slowdowns.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd

COLUMNS = ("task_name", "instance_num", "job_name", "task_type", "status",
           "start_time", "end_time", "plan_cpu", "plan_mem")
SAMPLE_RELPATH = "alibaba-v2018/batch_task_selected_dags.csv"  #: the sample, inside the data mirror
NAME_WIDTH = 50          #: the trace truncates task names to this many characters
MIN_REFERENCE_S = 1.0    #: slowdown reference floor: the trace's time resolution is 1 s
SLOWDOWN_COLUMNS = ("job_name", "task_id", "level", "response_time_s", "reference_s",
                    "slowdown", "group_size")
_NAME_RE = re.compile(r"([A-Za-z]+)(\d+)((?:_\d+)*)")


class TraceSchemaError(ValueError):
    """A trace file does not have the ``batch_task`` schema; the message names the file and row."""


@dataclass(frozen=True)
class TaskName:
    kind: str
    task_id: int
    deps: tuple[int, ...]


def parse_task_name(name: str) -> TaskName | None:
    """``"J5_3_4"`` -> ``TaskName("J", 5, (3, 4))``; ``"task_*"`` -> None (independent task).

    Grammar: letters, the task id, then ``_<dep id>`` zero or more times. Anything else raises
    ``ValueError`` naming the offending string.
    """
    if not isinstance(name, str):
        raise ValueError(f"malformed task name {name!r}: not a string")
    if name.startswith("task_"):
        return None
    m = _NAME_RE.fullmatch(name)
    if m is None:
        raise ValueError(f"malformed task name {name!r}: expected <letters><id>[_<dep id>]*, "
                         "e.g. 'M1', 'R2_1', 'J5_3_4', or 'task_*'")
    return TaskName(m[1], int(m[2]), tuple(int(d) for d in m[3].split("_")[1:]))


def _parse_lenient(name) -> tuple[TaskName | None, bool, bool]:
    """(parsed name, malformed, truncated), repairing names cut at ``NAME_WIDTH`` characters."""
    truncated = isinstance(name, str) and len(name) >= NAME_WIDTH and not name.startswith("task_")
    if truncated:
        name = name[:-1] if name.endswith("_") else (name.rsplit("_", 1)[0] if "_" in name else name)
    try:
        return parse_task_name(name), False, truncated
    except ValueError:
        return None, True, truncated


def _schema_error(path, msg, row=None, line=None):
    where = f" (line {line}: {','.join(map(str, row))!r})" if row is not None else ""
    return TraceSchemaError(f"{path}: {msg}{where}")


def load_batch_task(path, *, has_header: bool | None = None) -> tuple[pd.DataFrame, dict]:
    """Read a ``batch_task`` CSV (with or without header) -> (clean tasks, counts).

    ``has_header=None`` detects the header: the first line equals ``COLUMNS``, or names one of
    them (then a wrong header is reported rather than read as data). Raises ``TraceSchemaError``
    for an empty file, a wrong column count or header, or a non-numeric time.
    Adds ``response_time_s = end_time - start_time``, ``kind``, ``task_id`` (nullable int),
    ``deps`` (tuple), ``is_dag_task``, ``malformed_name``, ``truncated_name``, ``job_complete``.
    """
    path = Path(path)
    with open(path, encoding="utf-8-sig") as f:
        first = f.readline().rstrip("\r\n")
    if not first.strip():
        raise _schema_error(path, "empty file (or empty first line): no batch_task rows")
    fields = [x.strip() for x in first.split(",")]
    if has_header is None:
        has_header = bool(set(fields) & set(COLUMNS))
    if has_header and tuple(fields) != COLUMNS:
        bad = next((i for i, (a, b) in enumerate(zip(fields, COLUMNS)) if a != b), len(COLUMNS))
        raise _schema_error(path, f"header has {len(fields)} columns {fields}, expected "
                            f"{list(COLUMNS)}; first difference at column {bad}")
    try:
        raw = pd.read_csv(path, header=None, skiprows=int(has_header), dtype=str,
                          encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise _schema_error(path, "no data rows after the header") from None
    except pd.errors.ParserError as e:
        raise _schema_error(path, f"wrong number of columns, expected {len(COLUMNS)}: {e}") from None
    if raw.shape[1] != len(COLUMNS):
        raise _schema_error(path, f"{raw.shape[1]} columns, expected {len(COLUMNS)} {list(COLUMNS)}",
                            raw.iloc[0].tolist(), 1 + has_header)
    raw.columns = list(COLUMNS)
    df = raw.copy()
    for col in ("instance_num", "task_type", "plan_cpu", "plan_mem", "start_time", "end_time"):
        df[col] = pd.to_numeric(raw[col], errors="coerce")
        bad = df[col].isna() & raw[col].notna()
        if col.endswith("_time") and bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise _schema_error(path, f"non-numeric {col} {raw[col].iloc[i]!r}",
                                raw.iloc[i].tolist(), i + 1 + has_header)
    parsed = {n: _parse_lenient(n) for n in pd.unique(df["task_name"])}
    p = df["task_name"].map(lambda n: parsed[n][0])
    df["kind"] = p.map(lambda t: t.kind if t else None)
    df["task_id"] = pd.array(p.map(lambda t: t.task_id if t else None), dtype="Int64")
    df["deps"] = p.map(lambda t: t.deps if t else ())
    df["is_dag_task"] = p.notna()
    df["malformed_name"] = df["task_name"].map(lambda n: parsed[n][1])
    df["truncated_name"] = df["task_name"].map(lambda n: parsed[n][2])
    s, e = df["start_time"], df["end_time"]
    terminated = df["status"] == "Terminated"
    valid = s.notna() & e.notna() & (s > 0) & (e > 0) & (e >= s)
    keep = terminated & valid
    df["job_complete"] = keep.groupby(df["job_name"], dropna=False).transform("all")
    counts = {"rows_read": len(df), "excluded_not_terminated": int((~terminated).sum()),
              "excluded_invalid_time": int((terminated & ~valid).sum()), "rows_kept": int(keep.sum()),
              "malformed_name": int(df["malformed_name"].sum()),
              "truncated_name": int(df["truncated_name"].sum()),
              "independent_tasks": int((~df["is_dag_task"] & ~df["malformed_name"]).sum()),
              "jobs": int(df["job_name"].nunique()),
              "jobs_incomplete": int((~df.groupby("job_name")["job_complete"].first()).sum()),
              "not_terminated_by_status": df.loc[~terminated, "status"].value_counts().to_dict()}
    df = df[keep].reset_index(drop=True)
    for col in ("start_time", "end_time"):
        if (df[col] % 1 == 0).all():
            df[col] = df[col].astype("int64")
    df["response_time_s"] = df["end_time"] - df["start_time"]
    return df, counts


def critical_path(G: nx.DiGraph, weight: str = "duration") -> tuple[list[int], float]:
    """Longest path weighted by a node attribute: ``C(v) = w(v) + max_{u->v} C(u)``.

    Ties prefer more tasks, then smaller ids. Returns (task ids root -> sink, sum of weights).
    """
    best, prev = {}, {}
    for v in nx.topological_sort(G):
        u = max(G.predecessors(v), key=lambda p: (best[p], -p), default=None)
        base = best[u] if u is not None else (0, 0)
        best[v], prev[v] = (base[0] + G.nodes[v][weight], base[1] + 1), u
    if not best:
        return [], 0.0
    v = max(best, key=lambda x: (best[x], -x))
    length, path = best[v][0], []
    while v is not None:
        path.append(v)
        v = prev[v]
    return path[::-1], length


def build_job_dags(df: pd.DataFrame) -> dict[str, nx.DiGraph]:
    """One DiGraph per job of DAG tasks: nodes = task ids (``duration``, ``start``, ``end``,
    ``name``, ``level``, ``own_s``), edges dep -> task.

    ``level`` = length of the longest dependency chain from a root (roots: 0). ``own_s =
    max(0, end - max(start, ends of its deps))``: in the trace a task's ``start_time`` often
    precedes its dependencies' ends (it is close to the job's submission), so ``duration`` includes
    upstream time and duration-weighted critical paths can exceed the completion time;
    ``critical_path(G, "own_s")`` avoids that double counting. Graph attributes:
    ``dangling_deps`` (dependencies not in the job, dropped), ``duplicate_tasks`` (repeated ids,
    first kept), ``is_dag``, ``complete``, ``critical_path``, ``critical_path_s``, ``depth``
    (number of levels); the last three are None for a cyclic job.
    """
    dags, cyclic = {}, []
    dag = df[df["is_dag_task"]]
    for job, g in dag.groupby("job_name", sort=True):
        u = g.drop_duplicates("task_id")
        G = nx.DiGraph(job_name=job, duplicate_tasks=len(g) - len(u), dangling_deps=0,
                       complete=bool(g["job_complete"].all()) if "job_complete" in g else True)
        for t, d, s, e, n in zip(u["task_id"], u["response_time_s"], u["start_time"],
                                 u["end_time"], u["task_name"]):
            G.add_node(int(t), duration=d, start=s, end=e, name=n)
        for t, deps in zip(u["task_id"], u["deps"]):
            for d in deps:
                if d in G:
                    G.add_edge(d, int(t))
                else:
                    G.graph["dangling_deps"] += 1
        G.graph["is_dag"] = nx.is_directed_acyclic_graph(G)
        G.graph.update(critical_path=None, critical_path_s=None, depth=None)
        if G.graph["is_dag"]:
            for lvl, nodes in enumerate(nx.topological_generations(G)):
                for v in nodes:
                    a = G.nodes[v]
                    ready = max([a["start"]] + [G.nodes[u]["end"] for u in G.predecessors(v)])
                    a.update(level=lvl, own_s=max(0, a["end"] - ready))
                G.graph["depth"] = lvl + 1
            G.graph["critical_path"], G.graph["critical_path_s"] = critical_path(G)
        else:
            cyclic.append(job)
        dags[job] = G
    if cyclic:
        warnings.warn(f"{len(cyclic)} job(s) have dependency cycles and are skipped for levels, "
                      f"critical paths and slowdowns: {cyclic[:5]}", stacklevel=2)
    return dags


def job_table(dags: dict[str, nx.DiGraph]) -> pd.DataFrame:
    """Per job: ``n_tasks``, ``n_edges``, ``completion_time_s = max(end) - min(start)``,
    ``critical_path`` (task ids), ``critical_path_s`` (sum of their durations), ``depth``,
    ``dangling_deps``, ``is_dag``, ``complete``."""
    rows = []
    for job, G in dags.items():
        st, en = nx.get_node_attributes(G, "start").values(), nx.get_node_attributes(G, "end").values()
        rows.append({"job_name": job, "n_tasks": G.number_of_nodes(), "n_edges": G.number_of_edges(),
                     "completion_time_s": max(en) - min(st),
                     **{k: G.graph[k] for k in ("critical_path", "critical_path_s", "depth",
                                                "dangling_deps", "is_dag", "complete")}})
    return pd.DataFrame(rows)


def dependent_tasks(df: pd.DataFrame) -> pd.DataFrame:
    """DAG tasks with an inter-dependency: they depend on, or are depended on by, another task
    present in the same job (dangling and self dependencies do not count). Paper's population."""
    dag = df[df["is_dag_task"]]
    present = set(zip(dag["job_name"], dag["task_id"]))
    involved = set()
    for j, t, deps in zip(dag["job_name"], dag["task_id"], dag["deps"]):
        for d in deps:
            if d != t and (j, d) in present:
                involved.update({(j, t), (j, d)})
    mask = [dag and (j, t) in involved
            for j, t, dag in zip(df["job_name"], df["task_id"], df["is_dag_task"])]
    return df[np.asarray(mask, dtype=bool)]


def sample_tasks(df: pd.DataFrame, n: int = 1021, seed: int = 0) -> pd.DataFrame:
    """``n`` distinct rows drawn uniformly with ``numpy.random.default_rng(seed)``, in table order."""
    if n > len(df):
        raise ValueError(f"cannot sample {n} tasks from {len(df)}")
    return df.iloc[np.sort(np.random.default_rng(seed).choice(len(df), n, replace=False))]


def _durations(durations) -> np.ndarray:
    x = np.asarray(durations, dtype=float).ravel()
    if x.size == 0 or not np.isfinite(x).all() or (x < 0).any():
        raise ValueError("durations must be a non-empty array of finite values >= 0")
    if x.sum() == 0:
        raise ValueError("total response time is zero: shares are undefined")
    return np.sort(x)[::-1]


def share_of_tasks_for_fraction_of_time(durations, fraction: float = 0.8) -> float:
    """Smallest share m/n of tasks, longest first, with ``sum(top m) >= fraction * total``.

    m is an integer count (no interpolation); ties between equal durations do not change m. The
    target is lowered by ``1e-12 * total`` so that e.g. 0.55 * 100 = 55.00000000000001 is
    reached by 55. Zero total -> ValueError.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    x = _durations(durations)
    cs = np.cumsum(x)
    m = int(np.searchsorted(cs, fraction * cs[-1] - 1e-12 * cs[-1], side="left")) + 1
    return min(m, x.size) / x.size


def lorenz_curve(durations) -> tuple[np.ndarray, np.ndarray]:
    """Longest first: (k/n, sum(top k)/total) for k = 0..n, from (0, 0) to (1, 1)."""
    x = _durations(durations)
    return np.arange(x.size + 1) / x.size, np.concatenate([[0.0], np.cumsum(x)]) / x.sum()


def ccdf(durations) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values x (ascending) and the empirical ``P[X >= x]``."""
    x = np.sort(np.asarray(durations, dtype=float).ravel())
    u = np.unique(x)
    return u, (x.size - np.searchsorted(x, u, side="left")) / x.size


def slowdowns(df: pd.DataFrame, dags: dict | None = None, *, singleton: str = "exclude") -> pd.DataFrame:
    """Per DAG task: ``slowdown = response_time_s / max(median_group, MIN_REFERENCE_S)``.

    The group is the tasks of the same job at the same ``level`` (the task included). A singleton
    group has no peer: ``singleton="exclude"`` drops it; ``"job"`` uses the median of its whole job
    instead (``group_size`` = job size; single-task jobs still dropped). Cyclic jobs are dropped.
    ``attrs`` holds ``excluded_singleton`` and ``excluded_cyclic``. Columns: ``SLOWDOWN_COLUMNS``.
    """
    if singleton not in ("exclude", "job"):
        raise ValueError("singleton must be 'exclude' or 'job'")
    dags = build_job_dags(df) if dags is None else dags
    rows = [(job, v, a["level"], a["duration"]) for job, G in dags.items() if G.graph["is_dag"]
            for v, a in G.nodes(data=True)]
    s = pd.DataFrame(rows, columns=["job_name", "task_id", "level", "response_time_s"])
    rt = s["response_time_s"].astype(float)
    by_level = rt.groupby([s["job_name"], s["level"]])
    s["group_size"], ref = by_level.transform("size"), by_level.transform("median")
    if singleton == "job":
        by_job = rt.groupby(s["job_name"])
        single = s["group_size"] == 1
        ref = ref.where(~single, by_job.transform("median"))
        s["group_size"] = s["group_size"].where(~single, by_job.transform("size"))
    n_before = len(s)
    keep = s["group_size"] > 1
    s, ref = s[keep], ref[keep]
    s["reference_s"] = np.maximum(ref, MIN_REFERENCE_S)
    s["slowdown"] = s["response_time_s"] / s["reference_s"]
    s = s[list(SLOWDOWN_COLUMNS)].sort_values(["job_name", "level", "task_id"]).reset_index(drop=True)
    s.attrs = {"excluded_singleton": n_before - len(s),
               "excluded_cyclic": sum(G.number_of_nodes() for G in dags.values() if not G.graph["is_dag"])}
    return s


def slowdown_shares(s, thresholds=(1.5, 2, 8)) -> dict:
    """``{t: fraction of tasks with slowdown >= t}``; ``s`` is a slowdown table or values."""
    v = np.asarray(s["slowdown"] if isinstance(s, pd.DataFrame) else s, dtype=float)
    return {t: float((v >= t).mean()) for t in thresholds}


def tail_index_hill(values, k: int | None = None) -> float:
    """Hill estimate of the Pareto tail index alpha from the top k order statistics.

    With x(1) >= x(2) >= ... the positive values: ``alpha = k / sum_{i<=k} ln(x(i) / x(k+1))``.
    Default ``k = max(10, round(0.05 n))``; requires ``1 <= k < n``. Non-positive values ignored.
    """
    x = np.asarray(values, dtype=float).ravel()
    x = np.sort(x[np.isfinite(x) & (x > 0)])[::-1]
    k = max(10, round(0.05 * x.size)) if k is None else int(k)
    if not 1 <= k < x.size:
        raise ValueError(f"need 1 <= k < n positive values, got k={k}, n={x.size}")
    h = float(np.mean(np.log(x[:k]) - np.log(x[k])))
    if h <= 0:
        raise ValueError("top order statistics are all equal: tail index undefined")
    return 1.0 / h


def critical_path_share(df: pd.DataFrame, dags: dict, threshold: float = 1.5) -> dict:
    """Fraction of stragglers (slowdown >= threshold) on their job's critical path, and the same
    fraction for the other tasks. ``df`` is a task table or an already computed slowdown table."""
    s = df if "slowdown" in df else slowdowns(df, dags)
    on_cp = {(j, t) for j, G in dags.items() for t in (G.graph.get("critical_path") or ())}
    on = np.array([(j, t) in on_cp for j, t in zip(s["job_name"], s["task_id"])], dtype=bool)
    strag = s["slowdown"].to_numpy() >= threshold
    frac = lambda m: float(on[m].mean()) if m.any() else float("nan")  # noqa: E731
    return {"threshold": threshold, "n_stragglers": int(strag.sum()),
            "n_non_stragglers": int((~strag).sum()),
            "straggler_on_critical_path": frac(strag), "non_straggler_on_critical_path": frac(~strag)}


def export_slowdown_csv(slowdowns_df: pd.DataFrame, path) -> Path:
    """Write ``SLOWDOWN_COLUMNS`` (job_name, task_id, level, response_time_s [s], reference_s [s],
    slowdown [-], group_size) sorted by job_name, task_id, without index. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    slowdowns_df[list(SLOWDOWN_COLUMNS)].sort_values(["job_name", "task_id"]).to_csv(path, index=False)
    return path


def sample_slowdowns(path_or_df, n: int, seed: int = 0) -> np.ndarray:
    """``n`` draws with replacement from the empirical ``slowdown`` distribution (CSV or table)."""
    s = path_or_df if isinstance(path_or_df, pd.DataFrame) else pd.read_csv(path_or_df)
    v = s["slowdown"].dropna().to_numpy(dtype=float)
    if v.size == 0:
        raise ValueError("no slowdown values to sample from")
    return np.random.default_rng(seed).choice(v, size=n, replace=True)
