"""Tests of flake_lib.trace on hand-made batch_task tables (plus the real sample if mirrored)."""

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flake_lib import trace
from flake_lib.trace import TaskName, TraceSchemaError

HEADER = ",".join(trace.COLUMNS)


def write(tmp_path, rows, header=True, name="bt.csv"):
    """rows: (task_name, job_name, status, start, end) -> a batch_task CSV."""
    lines = [HEADER] if header else []
    lines += [f"{t},1.0,{j},1,{st},{s},{e},100.0,0.5" for t, j, st, s, e in rows]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def table(tmp_path, rows):
    df, _ = trace.load_batch_task(write(tmp_path, rows))
    return df


# DAG of job j: 1(10s) 2(3s) -> 3(5s) <- 1 ; 2 -> 4(20s) ; 3,4 -> 5(1s). Critical: 2 -> 4 -> 5 = 24 s.
DIAMOND = [("M1", "j", "Terminated", 100, 110), ("M2", "j", "Terminated", 100, 103),
           ("R3_1_2", "j", "Terminated", 110, 115), ("R4_2", "j", "Terminated", 103, 123),
           ("J5_3_4", "j", "Terminated", 123, 124)]


# ----------------------------------------------------------------------------- task names

@pytest.mark.parametrize("name, expected", [
    ("M1", TaskName("M", 1, ())), ("R2_1", TaskName("R", 2, (1,))),
    ("J5_3_4", TaskName("J", 5, (3, 4))), ("MergeTask12_10_11", TaskName("MergeTask", 12, (10, 11))),
    ("task_Nzg3ODAwNDgzMTAwNTc2NTQ3MQ==", None)])
def test_parse_task_name(name, expected):
    assert trace.parse_task_name(name) == expected


@pytest.mark.parametrize("name", ["M", "R2_", "X_1", "Mabc", "", "_1", "M1__2", "12_3", "M-1", " M1"])
def test_parse_task_name_malformed(name):
    with pytest.raises(ValueError, match="malformed task name"):
        trace.parse_task_name(name)


def test_loader_counts_malformed_and_truncated_names(tmp_path):
    # the trace cuts names at 50 characters: mid-number ("..._18_1" for "_19") or after a "_"
    cut_mid = ("J30_" + "_".join(str(i) for i in range(1, 40)))[:50]
    cut_sep = ("M123" + "".join(f"_{i}" for i in range(10, 40)))[:50]
    assert cut_mid.endswith("_18_1") and cut_sep.endswith("_24_") and len(cut_sep) == 50
    rows = [("M1", "j", "Terminated", 1, 2), ("Mabc", "j", "Terminated", 1, 2),
            ("task_abc", "k", "Terminated", 1, 2), (cut_mid, "j", "Terminated", 2, 3),
            (cut_sep, "l", "Terminated", 2, 3), ("", "l", "Terminated", 2, 3)]
    df, counts = trace.load_batch_task(write(tmp_path, rows))
    assert counts["malformed_name"] == 2 and counts["truncated_name"] == 2
    assert counts["independent_tasks"] == 1
    assert df["is_dag_task"].tolist() == [True, False, False, True, True, False]
    assert df["malformed_name"].tolist() == [False, True, False, False, False, True]
    assert df.loc[3, "task_id"] == 30 and df.loc[3, "deps"] == tuple(range(1, 19))  # partial "1" dropped
    assert df.loc[4, "task_id"] == 123 and df.loc[4, "deps"] == tuple(range(10, 25))


# ----------------------------------------------------------------------------- loading

def test_header_and_headerless_give_same_table(tmp_path):
    a, ca = trace.load_batch_task(write(tmp_path, DIAMOND, header=True, name="a.csv"))
    b, cb = trace.load_batch_task(write(tmp_path, DIAMOND, header=False, name="b.csv"))
    c, _ = trace.load_batch_task(write(tmp_path, DIAMOND, header=False, name="c.csv"), has_header=False)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, c)
    assert ca == cb and ca["rows_read"] == 5
    assert a["response_time_s"].tolist() == [10, 3, 5, 20, 1]
    assert a.loc[2, "task_id"] == 3 and a.loc[2, "deps"] == (1, 2)


def test_excluded_rows_are_counted(tmp_path):
    rows = [("M1", "j", "Terminated", 10, 20), ("M2", "j", "Running", 10, 0),
            ("M3", "j", "Waiting", 0, 0), ("M4", "j", "Terminated", 0, 5),
            ("M5", "j", "Terminated", 30, 20), ("M1", "k", "Terminated", 5, 5),
            ("M2", "k", "Failed", 5, 6)]
    df, counts = trace.load_batch_task(write(tmp_path, rows))
    assert counts["rows_read"] == 7 and counts["rows_kept"] == 2
    assert counts["excluded_not_terminated"] == 3 and counts["excluded_invalid_time"] == 2
    assert counts["not_terminated_by_status"] == {"Running": 1, "Waiting": 1, "Failed": 1}
    assert counts["jobs"] == 2 and counts["jobs_incomplete"] == 2
    assert df["response_time_s"].tolist() == [10, 0] and not df["job_complete"].any()


def test_missing_times_are_excluded_not_errors(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(HEADER + "\nM1,1.0,j,1,Terminated,,,,\nM2,1.0,j,1,Terminated,3,4,,\n")
    df, counts = trace.load_batch_task(path)
    assert counts["excluded_invalid_time"] == 1 and df["task_id"].tolist() == [2]


def test_schema_error_wrong_column_count(tmp_path):
    path = tmp_path / "eight.csv"
    path.write_text("M1,1.0,j,1,Terminated,1,2,100.0\nM2,1.0,j,1,Terminated,1,2,100.0\n")
    with pytest.raises(TraceSchemaError, match=r"eight\.csv.*8 columns, expected 9"):
        trace.load_batch_task(path)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("M1,1.0,j,1,Terminated,1,2,100.0,0.5\nM2,1.0,j,1,Terminated,1,2,100.0,0.5,9\n")
    with pytest.raises(TraceSchemaError, match=r"ragged\.csv.*number of columns"):
        trace.load_batch_task(ragged)


def test_schema_error_wrong_header(tmp_path):
    path = tmp_path / "hdr.csv"
    path.write_text(HEADER.replace("job_name", "job") + "\nM1,1.0,j,1,Terminated,1,2,100.0,0.5\n")
    with pytest.raises(TraceSchemaError, match=r"hdr\.csv.*'job'.*column 2"):
        trace.load_batch_task(path)


def test_schema_error_non_numeric_time(tmp_path):
    path = write(tmp_path, [("M1", "j", "Terminated", 1, 2), ("M2", "j", "Terminated", "1:00", 2)])
    with pytest.raises(TraceSchemaError) as err:
        trace.load_batch_task(path)
    msg = str(err.value)
    assert "bt.csv" in msg and "start_time" in msg and "'1:00'" in msg and "line 3" in msg
    assert "M2,1.0,j" in msg


def test_schema_error_empty_file(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(TraceSchemaError, match="empty"):
        trace.load_batch_task(tmp_path / "empty.csv")
    (tmp_path / "hdr_only.csv").write_text(HEADER + "\n")
    with pytest.raises(TraceSchemaError, match="no data rows"):
        trace.load_batch_task(tmp_path / "hdr_only.csv")


# ----------------------------------------------------------------------------- DAGs

def test_dangling_dependencies_dropped_and_counted(tmp_path):
    rows = [("M1", "j", "Terminated", 1, 2), ("R2_1", "j", "Terminated", 2, 3),
            ("J3_1_7", "j", "Terminated", 3, 4),           # task 7 is not in the job
            ("R4_5", "j", "Terminated", 3, 4), ("M5", "j", "Running", 2, 0),  # 5 dropped: not done
            ("M1", "k", "Terminated", 1, 2), ("R2_1_9_8", "k", "Terminated", 2, 3)]
    dags = trace.build_job_dags(table(tmp_path, rows))
    assert sorted(dags["j"].edges) == [(1, 2), (1, 3)] and dags["j"].graph["dangling_deps"] == 2
    assert sorted(dags["j"].nodes) == [1, 2, 3, 4] and not dags["j"].graph["complete"]
    assert list(dags["k"].edges) == [(1, 2)] and dags["k"].graph["dangling_deps"] == 2


def test_critical_path_on_hand_made_dag(tmp_path):
    dags = trace.build_job_dags(table(tmp_path, DIAMOND))
    G = dags["j"]
    assert {v: G.nodes[v]["level"] for v in G} == {1: 0, 2: 0, 3: 1, 4: 1, 5: 2}
    jt = trace.job_table(dags).set_index("job_name")
    assert jt.loc["j", "critical_path"] == [2, 4, 5] and jt.loc["j", "critical_path_s"] == 24
    assert jt.loc["j", "depth"] == 3 and jt.loc["j", "n_tasks"] == 5 and jt.loc["j", "n_edges"] == 5
    assert jt.loc["j", "completion_time_s"] == 24 and jt.loc["j", "dangling_deps"] == 0


def test_own_time_when_a_task_starts_before_its_dependency_ends(tmp_path):
    rows = [("M1", "o", "Terminated", 100, 110), ("R2_1", "o", "Terminated", 100, 115)]
    G = trace.build_job_dags(table(tmp_path, rows))["o"]
    assert [G.nodes[v]["own_s"] for v in (1, 2)] == [10, 5]
    assert G.graph["critical_path_s"] == 25                       # durations double count 100..110
    assert trace.critical_path(G, "own_s") == ([1, 2], 15)        # = completion time


def test_cycle_is_reported_and_skipped(tmp_path):
    rows = DIAMOND + [("J1_2", "c", "Terminated", 1, 2), ("J2_1", "c", "Terminated", 1, 3)]
    df = table(tmp_path, rows)
    with pytest.warns(UserWarning, match="cycles"):
        dags = trace.build_job_dags(df)
    jt = trace.job_table(dags).set_index("job_name")
    assert not jt.loc["c", "is_dag"] and jt.loc["c", "critical_path"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sd = trace.slowdowns(df, dags)
    assert "c" not in set(sd["job_name"]) and sd.attrs["excluded_cyclic"] == 2


def test_dependent_tasks(tmp_path):
    rows = [("M1", "alone", "Terminated", 1, 2),                  # no dependency
            ("task_x", "ind", "Terminated", 1, 2), ("Mx", "bad", "Terminated", 1, 2),
            ("M1", "pair", "Terminated", 1, 2), ("R2_1", "pair", "Terminated", 2, 3),
            ("M3", "pair", "Terminated", 1, 2),                   # in a DAG job but unconnected
            ("R2_1", "dang", "Terminated", 2, 3),                 # only a dangling dependency
            ("R2_2", "self", "Terminated", 2, 3)]                 # only itself
    dep = trace.dependent_tasks(table(tmp_path, rows))
    assert list(zip(dep["job_name"], dep["task_id"])) == [("pair", 1), ("pair", 2)]


def test_sample_tasks(tmp_path):
    df = pd.DataFrame({"x": range(100)})
    a, b = trace.sample_tasks(df, 10, seed=3), trace.sample_tasks(df, 10, seed=3)
    assert len(a) == 10 and a["x"].is_unique and a.equals(b) and a["x"].is_monotonic_increasing
    assert not a.equals(trace.sample_tasks(df, 10, seed=4))
    with pytest.raises(ValueError):
        trace.sample_tasks(df, 101)


# ----------------------------------------------------------------------------- long tail

def test_share_one_task_carries_80_percent():
    assert trace.share_of_tasks_for_fraction_of_time([1] * 5 + [100] + [1] * 4) == pytest.approx(0.1)


def test_share_two_tasks_needed():
    assert trace.share_of_tasks_for_fraction_of_time([5, 40, 5, 50]) == 0.5   # 50 < 80 <= 90
    assert trace.share_of_tasks_for_fraction_of_time([8, 1, 1]) == pytest.approx(1 / 3)  # exactly 80%
    assert trace.share_of_tasks_for_fraction_of_time([55] + [5] * 9, 0.55) == 0.1  # 0.55*100 > 55
    assert trace.share_of_tasks_for_fraction_of_time([1, 1, 1, 1], 1.0) == 1.0
    assert trace.share_of_tasks_for_fraction_of_time([0, 0, 3, 0]) == 0.25


def test_share_invalid_inputs():
    for bad in ([0, 0], [], [1, -1], [1, np.nan]):
        with pytest.raises(ValueError):
            trace.share_of_tasks_for_fraction_of_time(bad)
    with pytest.raises(ValueError):
        trace.share_of_tasks_for_fraction_of_time([1, 2], 0)


def test_lorenz_and_ccdf():
    x, y = trace.lorenz_curve([1, 3, 6])
    np.testing.assert_allclose(x, [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(y, [0, 0.6, 0.9, 1.0])
    v, p = trace.ccdf([3, 1, 3, 2])
    np.testing.assert_allclose(v, [1, 2, 3])
    np.testing.assert_allclose(p, [1.0, 0.75, 0.5])


def test_hill_recovers_pareto_index():
    x = np.random.default_rng(0).pareto(2.0, 50_000) + 1.0   # Pareto, x_m = 1, alpha = 2
    assert trace.tail_index_hill(x, k=2000) == pytest.approx(2.0, rel=0.1)
    assert trace.tail_index_hill(x) == pytest.approx(2.0, rel=0.1)
    with pytest.raises(ValueError):
        trace.tail_index_hill([1.0] * 5)


# ----------------------------------------------------------------------------- slowdowns

def test_slowdown_on_hand_made_job(tmp_path):
    rows = [("M1", "j", "Terminated", 10, 20), ("M2", "j", "Terminated", 10, 20),
            ("M3", "j", "Terminated", 10, 50),                           # level 0: 10, 10, 40
            ("R4_1_2_3", "j", "Terminated", 50, 55),                     # level 1: singleton
            ("R5_4", "j", "Terminated", 55, 55), ("R6_4", "j", "Terminated", 55, 55),
            ("R7_4", "j", "Terminated", 55, 58)]                         # level 2: 0, 0, 3
    df = table(tmp_path, rows)
    sd = trace.slowdowns(df).set_index("task_id")
    assert list(sd.columns) == ["job_name", "level", "response_time_s", "reference_s",
                                "slowdown", "group_size"]
    assert 4 not in sd.index and sd.attrs["excluded_singleton"] == 1
    assert sd.loc[[1, 2, 3], "slowdown"].tolist() == [1.0, 1.0, 4.0]
    assert sd.loc[[5, 6, 7], "reference_s"].tolist() == [1.0] * 3     # median 0 -> 1 s floor
    assert sd.loc[[5, 6, 7], "slowdown"].tolist() == [0.0, 0.0, 3.0]
    assert sd.loc[3, "group_size"] == 3 and sd.loc[7, "level"] == 2
    fb = trace.slowdowns(df, singleton="job").set_index("task_id")      # job median of 10,10,40,5,0,0,3
    assert fb.loc[4, "reference_s"] == 5.0 and fb.loc[4, "slowdown"] == 1.0
    assert fb.loc[4, "group_size"] == 7 and fb.attrs["excluded_singleton"] == 0
    shares = trace.slowdown_shares(sd, thresholds=(1.5, 2, 8))
    assert shares == {1.5: pytest.approx(2 / 6), 2: pytest.approx(2 / 6), 8: 0.0}


def test_critical_path_share(tmp_path):
    rows = DIAMOND + [("M6", "j", "Terminated", 100, 140)]  # level 0: 10, 3, 40 -> 6 straggles
    df = table(tmp_path, rows)
    dags = trace.build_job_dags(df)
    assert dags["j"].graph["critical_path"] == [6]                  # 40 s alone beats 2-4-5 (24 s)
    r = trace.critical_path_share(df, dags, threshold=1.5)
    # slowdowns: level 0 (10, 3, 40; median 10) -> 1, 0.3, 4 ; level 1 (5, 20; median 12.5) -> 0.4, 1.6
    assert r["n_stragglers"] == 2 and r["n_non_stragglers"] == 3
    assert r["straggler_on_critical_path"] == 0.5 and r["non_straggler_on_critical_path"] == 0.0


def test_export_and_sample_slowdowns(tmp_path):
    sd = trace.slowdowns(table(tmp_path, DIAMOND))
    path = trace.export_slowdown_csv(sd, tmp_path / "out" / "slowdowns.csv")
    back = pd.read_csv(path)
    assert tuple(back.columns) == trace.SLOWDOWN_COLUMNS and len(back) == len(sd) == 4
    assert list(zip(back["job_name"], back["task_id"])) == sorted(zip(sd["job_name"], sd["task_id"]))
    draws = trace.sample_slowdowns(path, 500, seed=1)
    assert draws.shape == (500,) and set(draws) <= set(sd["slowdown"])
    np.testing.assert_array_equal(draws, trace.sample_slowdowns(sd, 500, seed=1))


# ----------------------------------------------------------------------------- real sample

def test_real_sample_if_mirrored():
    mirror = os.environ.get("FLAKE_DATA_MIRROR")
    if not mirror:
        pytest.skip("FLAKE_DATA_MIRROR is not set")
    path = Path(mirror) / trace.SAMPLE_RELPATH
    if not path.is_file():
        pytest.skip(f"{path} is not in the mirror")
    df, counts = trace.load_batch_task(path)
    assert counts["rows_read"] == len(df) + counts["excluded_not_terminated"] + counts["excluded_invalid_time"]
    assert len(df) > 0 and (df["response_time_s"] >= 0).all()
    dep = trace.dependent_tasks(df)
    share = trace.share_of_tasks_for_fraction_of_time(dep["response_time_s"])
    assert 0 < share < 1
    dags = trace.build_job_dags(df)
    sd = trace.slowdowns(df, dags)
    assert len(sd) > 0 and (sd["slowdown"] >= 0).all()
