"""The latency experiment without the notebook: a method end to end on exported models, the capacity
search, the fault builders, the rotation of the method order, Fig. 6's bursts and the queueing model."""

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

from flake_lib import latency as lt
from flake_lib import runtime, serving

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def model_paths(tmp_path_factory):
    """A linear F (no bias) serves as every model: the addition code is exact for it."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5, bias=False)).eval()
    path = tmp_path_factory.mktemp("ir") / "linear.xml"
    runtime.export(model, torch.zeros(1, 3, 8, 8), path)
    return {name: str(path) for name in ("F", "PM", "Flake", "NKD")}


@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(0)
    return rng.standard_normal((64, 3, 8, 8)).astype(np.float32), rng.integers(0, 5, 64)


@pytest.fixture(scope="module")
def bench(model_paths, pool):
    frontend, workers = lt.placement(1)
    images, labels = pool
    b = lt.Bench("native", lt.workers_for(["none", "pm", "flake", "nkd", "srp"], instances=1), model_paths,
                 images, labels, frontend_cpus=frontend, worker_cpus=workers, drain_s=5.0, restart_delay_s=0.2)
    with b:
        yield b


SLOWDOWNS = 1 + np.random.default_rng(7).pareto(1.1, 20_000)


# ----------------------------------------------------------------------------- end to end


def test_methods_end_to_end_on_one_transport(bench, pool):
    """Two methods on the same schedule (stragglers, a pause and a kill): every query answered once,
    the summary and utilisation are filled in, and the killed worker is back before the next run."""
    config = lt.FaultConfig(straggler_rate_per_s=10, reference_ms=20.0, cap_ms=200, pause_rate_per_s=0.0, kills=1,
                            roles=("deployed1",))
    schedule = lt.make_schedule(200, 300, len(pool[0]), config, SLOWDOWNS, seed=1)
    schedule.plan.pauses.append(("redundant0", 0.3, 0.4))
    assert schedule.plan.kills and schedule.plan.kills[0][0] == "deployed1"
    for method in ("pm", "nkd"):
        frame, info = bench.run(method, schedule, bound_ms=10.0)
        assert sorted(frame["query"]) == list(range(300))  # every query exactly once
        assert frame["outcome"].notna().all() and info["n_failed"] == 0
        assert info["n_queries"] == 300 and info["deaths"] == 1
        assert info["faults"] == "injected" and info["mode"] == "native"
        assert 0 <= info["deployed_util"] <= 1 and info["redundant_util"] > 0
        assert info["gmm_ms"] >= info["gpm_ms"] >= 0
        recovered = info["n_reconstructed"] if method == "pm" else info["n_student"]
        assert recovered > 0  # the straggler and the kill made queries the redundancy answered
    bench.settle()  # what every run begins with: the killed worker back, every worker idle
    assert all(bench.transport.is_alive(w) for w in bench.workers)


def test_no_fault_control_uses_the_same_arrivals(bench, pool):
    config = lt.FaultConfig(straggler_rate_per_s=20, reference_ms=30.0)
    schedule = lt.make_schedule(100, 60, len(pool[0]), config, SLOWDOWNS, seed=2)
    frame, info = bench.run("none", schedule, faults=False, bound_ms=10.0)
    assert info["faults"] == "none" and (frame["delay_s"] == 0).all()
    assert np.allclose(frame["intended_s"], schedule.arrivals)


# ----------------------------------------------------------------------------- capacity search


def _knee(capacity):
    return lambda qps: 5.0 + 100.0 * qps / max(capacity - qps, 1e-9) if qps < capacity else math.inf


@pytest.mark.parametrize("capacity", [430.0, 777.0, 1010.0])
def test_capacity_is_bracketed_within_ten_percent(capacity):
    stat = _knee(capacity)
    bound = 50.0
    meets = capacity * 45 / 145  # stat(q) = 50 at q = 45/145 of the capacity
    calls = Counter()

    def measure(q):
        calls[q] += 1
        return stat(q)

    result = lt.find_capacity(measure, [100, 200, 300, 400, 600, 800], bound, tolerance=0.10)
    low, high = result["bracket_qps"]
    assert not result["censored"] and result["bracketed"]
    assert low <= meets < high and high / low <= 1.10
    assert result["capacity_qps"] == low
    assert max(calls.values()) == 1  # every level measured once
    assert [q for q, _ in result["levels_tried"]] == sorted(calls)


def test_capacity_censored_when_every_level_meets_the_objective():
    result = lt.find_capacity(lambda q: 10.0, [200, 400, 800], 50.0)
    assert result["censored"] and result["capacity_qps"] is None
    assert result["bracket_qps"] == [800.0, None]


def test_capacity_below_the_lowest_level_and_noise_above_the_knee():
    below = lt.find_capacity(lambda q: 80.0, [200, 400], 50.0)
    assert below["capacity_qps"] is None and not below["censored"] and below["bracket_qps"] == [None, 200.0]
    noisy = {200: 10.0, 400: 60.0, 600: 20.0, 800: 90.0}  # 600 meets it again: noise, not capacity
    result = lt.find_capacity(lambda q: noisy.get(q, 30.0 if q < 300 else 70.0), list(noisy), 50.0)
    assert result["bracket_qps"][1] <= 400 and result["capacity_qps"] < 400


def test_capacity_ratio_interval_from_brackets():
    a = {"capacity_qps": 500.0, "censored": False, "bracket_qps": [500.0, 540.0]}
    b = {"capacity_qps": 400.0, "censored": False, "bracket_qps": [400.0, 430.0]}
    r = lt.capacity_ratio(a, b)
    assert r["ratio"] == pytest.approx(1.25) and r["low"] == pytest.approx(500 / 430)
    assert r["high"] == pytest.approx(540 / 400)
    censored = lt.capacity_ratio({"capacity_qps": None, "censored": True, "bracket_qps": [800.0, None]}, b)
    assert censored["ratio"] is None and "censored" in censored["note"]


# ----------------------------------------------------------------------------- faults


@pytest.mark.parametrize("share", [0.25, 0.5, 0.75])
def test_stated_share_of_stragglers_exceeds_the_bound(share):
    reference = lt.straggler_reference_ms(SLOWDOWNS, 10.0, share)
    config = lt.FaultConfig(straggler_rate_per_s=50, reference_ms=reference, cap_ms=math.inf)
    arrivals = serving.poisson_arrivals(500, 100_000, seed=3)
    plan = lt.fault_plan(arrivals, lt.fault_timeline(arrivals[-1], config, SLOWDOWNS, seed=4))
    assert lt.share_of_stragglers_over(plan, 10.0) == pytest.approx(share, abs=0.02)
    assert lt.share_of_stragglers_over(plan, 10.0 * 0.5) > share  # a looser mapping would differ


def test_fault_rates_are_per_second_at_every_load():
    """Stragglers and pauses per second do not change with the offered load; kills are per run."""
    config = lt.FaultConfig(straggler_rate_per_s=4.0, reference_ms=20.0, pause_rate_per_s=2.0, pause_ms=50,
                            kills=1)
    per_second = {}
    for qps in (200.0, 800.0):
        arrivals = serving.poisson_arrivals(qps, int(qps * 400), seed=5)
        plan = lt.fault_plan(arrivals, lt.fault_timeline(400.0, config, SLOWDOWNS, seed=int(qps)))
        duration = arrivals[-1]
        per_second[qps] = ((plan.delays_s > 0).sum() / duration, len(plan.pauses) / duration)
        assert len(plan.kills) == 1 and 0.2 * duration <= plan.kills[0][1] <= 0.8 * duration
        assert all(e - s == pytest.approx(0.05) for _, s, e in plan.pauses)
        assert {r for r, _, _ in plan.pauses} == set(config.roles)  # any instance may be paused
    for qps, (stragglers, pauses) in per_second.items():
        assert stragglers == pytest.approx(4.0, rel=0.1) and pauses == pytest.approx(2.0, rel=0.15), qps


def test_sweep_levels_replay_the_same_faults_at_the_same_times():
    """Two levels of a sweep (same duration, different loads): the same stragglers (time and delay)
    land on the first query sent at or after their time, the same pauses; only the load differs."""
    config = lt.FaultConfig(straggler_rate_per_s=5.0, reference_ms=20.0, pause_rate_per_s=0.5, pause_ms=100)
    low, high = (lt.level_schedule(qps, 8.0, 64, config, SLOWDOWNS, seed=3) for qps in (200.0, 1000.0))
    assert (low.n, high.n) == (1600, 8000) and not np.array_equal(low.arrivals[:50], high.arrivals[:50])
    timeline = lt.fault_timeline(8.0, config, SLOWDOWNS, seed=3)
    for schedule, gap in ((low, 0.05), (high, 0.01)):
        hit = np.flatnonzero(schedule.plan.delays_s > 0)
        kept = [(t, d) for t, d in timeline.stragglers if t < schedule.arrivals[-1]]
        assert len(hit) == len(kept) >= 30
        assert np.allclose(schedule.plan.delays_s[hit], [d for _, d in kept])
        assert np.all(schedule.arrivals[hit] - np.array([t for t, _ in kept]) < gap)
    assert low.plan.pauses == [p for p in high.plan.pauses if p[1] < low.arrivals[-1]] and low.plan.pauses


def test_fault_plan_maps_roles_to_each_method():
    plan = lt.FaultPlan(np.zeros(4), pauses=[("redundant0", 0.1, 0.2), ("deployed1", 0.3, 0.4)],
                        kills=[("redundant0", 0.5)])
    assert lt.role_map("flake") == {"deployed0": "F0", "deployed1": "F1", "redundant0": "FP0"}
    flake = plan.for_method("flake")
    assert flake.pauses == [("FP0", 0.1, 0.2), ("F1", 0.3, 0.4)] and flake.kills == [("FP0", 0.5)]
    none = plan.for_method("none")  # no redundant instance: its faults are dropped
    assert none.pauses == [("F1", 0.3, 0.4)] and none.kills == []
    assert plan.for_method("equal").pauses[0][0] == "FR0" and plan.for_method("nkd", 2).kills == [("NKD0", 0.5)]
    assert lt.deployment("pm", 2).parity == ["PM0", "PM1"] and lt.deployment("srp").backup == ["FR0"]


def test_tail_attribution_counts_own_queued_and_instance_faults():
    records = pd.DataFrame({
        "sent_s": [0.0, 0.01, 0.02, 0.03, 1.0, 2.0], "answered_s": [0.5, 0.51, 0.03, 0.6, 1.3, 2.001],
        "latency_ms": [500.0, 500.0, 10.0, 570.0, 300.0, 1.0], "instance": ["F0", "F0", "F1", "F0", "F1", "F0"],
        "unavailable": [True, True, False, True, True, False]})
    plan = lt.FaultPlan(np.array([0.4, 0, 0, 0, 0, 0]), pauses=[("deployed1", 0.9, 1.2)])
    carriers = lt.fault_carriers(records, plan, lt.role_map("pm"))
    assert carriers["own_delay"].tolist() == [True, False, False, False, False, False]
    assert carriers["queued"].tolist() == [False, True, False, True, False, False]
    assert carriers["instance_fault"].tolist() == [False, False, False, False, True, False]
    top = lt.tail_attribution(records, plan, lt.role_map("pm"), top=0.5)  # the 3 slowest
    assert top["n_top"] == 3 and top["share_carried"] == 1.0 and top["share_own_delay"] == pytest.approx(1 / 3)
    assert top["share_group_unavailable"] == pytest.approx(2 / 3)  # queries 0 and 1 form a stuck group; 3 not
    killed = lt.FaultPlan(np.zeros(6), kills=[("deployed0", 0.005)])  # F0 killed, back at 0.5 s
    hit = lt.fault_carriers(records, killed, lt.role_map("pm"), restarts=[("F0", 0.5)])["instance_fault"]
    assert hit.tolist() == [True, True, False, True, False, False]  # not the query sent after the restart
    forever = lt.fault_carriers(records, killed, lt.role_map("pm"))["instance_fault"]
    assert forever.tolist() == [True, True, False, True, False, True]


# ----------------------------------------------------------------------------- interleaving, paired


def test_method_order_rotates_across_repeats():
    methods = ["none", "srp", "pm", "flake", "nkd"]
    orders = lt.rotated_orders(methods, 10)
    assert orders[0] == methods and orders[1][0] == "srp" and orders[5] == methods
    for position in range(len(methods)):
        assert Counter(o[position] for o in orders) == Counter({m: 2 for m in methods})
    plan = lt.headline_plan(["srp", "pm"], 3, control_repeats=2, peers=["hedge"], peer_repeats=1)
    assert [len(p) for p in plan] == [4, 3, 2]
    assert ("none", "none") in plan[1] and ("hedge", "injected") not in plan[1]
    assert plan[0][0] != plan[1][0]  # the first method differs between repeats


def test_paired_table_says_not_distinguishable_when_the_interval_covers_zero():
    table = pd.DataFrame({"method": ["a"] * 5 + ["b"] * 5, "repeat": list(range(5)) * 2,
                          "gpm_ms": [10, 11, 9, 10, 12, 10.5, 10, 10, 11, 10],
                          "gmm_ms": [30, 31, 32, 30, 33, 20, 21, 20, 22, 21]})
    rows = lt.paired_table(table, [("a", "b")]).set_index("statistic")
    assert rows.loc["gpm_ms", "says"] == "not distinguishable"
    assert rows.loc["gmm_ms", "says"] == "a > b" and rows.loc["gmm_ms", "n"] == 5


# ----------------------------------------------------------------------------- Fig. 6


@pytest.mark.parametrize("k", [2, 3])
def test_burst_holds_exactly_m_stalled_queries_with_one_intended_time(k):
    counts = [1, 2, 3, 4, 5]
    arrivals, delays, tags = lt.burst_schedule(counts, bursts=2, k=k, gap_s=0.1, stall_s=0.05, warmup=4)
    assert len(arrivals) == len(delays) == len(tags) and np.all(np.diff(arrivals) >= 0)
    start = int(np.flatnonzero(tags)[0])
    start -= start % k
    for m in counts:
        for t in np.unique(arrivals[tags == m]):
            burst = np.flatnonzero(arrivals == t)
            assert burst[0] % k == 0 and len(burst) % k == 0  # starts at a coding-group boundary
            assert (tags[burst] == m).sum() == m  # m unavailable queries at the same intended time
            for instance in range(k):  # on each instance the stalled query comes before the waiting ones
                on = [q for q in burst if (q - burst[0]) % k == instance and tags[q] == m]
                if on:
                    assert delays[on[0]] == 0.05 and (delays[on[1:]] == 0).all()
            assert (delays[burst][tags[burst] == 0] == 0).all()


def test_fig6_queries_are_unavailable_at_the_same_moment(bench, pool):
    counts = [1, 2, 3]
    arrivals, delays, tags = lt.burst_schedule(counts, bursts=2, gap_s=0.12, stall_s=0.06, warmup=6)
    index = np.arange(len(arrivals)) % len(pool[0])
    schedule = lt.Schedule(100.0, arrivals, index, lt.FaultPlan(delays), seed=0, tags=tags)
    results = {}
    for method in ("pm", "flake", "nkd"):
        frame, _ = bench.run(method, schedule, bound_ms=10.0)
        burst = frame[tags > 0]
        assert burst["unavailable"].all()
        for t, part in burst.groupby("intended_s"):  # all m outstanding when the bound passes
            assert (part["answered_s"] > t + 0.010).all()
            assert len(part) == tags[frame["intended_s"] == t].max()
        results[method] = pd.DataFrame(lt.fig6_rows(frame, tags)).set_index("n_unavailable")
    for method in ("flake", "nkd"):  # partner recovery and the student cover every m before the stall ends
        assert results[method]["n_recovered"].tolist() == [2, 4, 6]
        assert (results[method]["max_ms"] < 60.0).all()
    # PM rebuilds a group with one unavailable member at the bound; with both stalled it has to wait
    # for one original (the stall) before it can decode the other
    assert results["pm"].loc[1, "max_ms"] < 60.0 and results["pm"].loc[2, "median_ms"] >= 60.0
    assert "partner" in results["flake"].loc[2, "recovered_by"]


# ----------------------------------------------------------------------------- prediction


def test_queueing_model_by_hand():
    service = {"F": 0.004, "PM": 0.004, "Flake": 0.002, "NKD": 0.002}
    arrivals = np.repeat(np.arange(4) * 0.1, 2) + np.tile([0.0, 0.001], 4)  # groups far apart: no queueing
    quiet = np.zeros(8)
    for method in ("none", "srp", "pm", "flake", "nkd"):
        assert np.allclose(lt.queueing.latencies(method, arrivals, quiet, service, 0.010), 4.0)
    one = quiet.copy()
    one[2] = 0.05  # a straggler: PM rebuilds it at the bound, NKD at the bound plus its student
    assert lt.queueing.latencies("none", arrivals, one, service, 0.010)[2] == pytest.approx(54.0)
    assert lt.queueing.latencies("pm", arrivals, one, service, 0.010)[2] == pytest.approx(10.0)
    assert lt.queueing.latencies("nkd", arrivals, one, service, 0.010)[2] == pytest.approx(12.0)
    assert lt.queueing.latencies("pm", arrivals, one, service, None)[2] == pytest.approx(5.0)  # eager: at the decode
    two = quiet.copy()
    two[2] = two[3] = 0.05  # both members of group 1: PM waits, Flake uses cache partners
    arrivals2 = arrivals.copy()
    arrivals2[3] = arrivals2[2]
    pm = lt.queueing.latencies("pm", arrivals2, two, service, 0.010)
    flake = lt.queueing.latencies("flake", arrivals2, two, service, 0.010)
    assert pm[2] == pytest.approx(54.0) and flake[2] == pytest.approx(12.0) and flake[3] == pytest.approx(14.0)
    ratio = lt.queueing.predict_native_ratio({"F": 0.8, "PM": 0.8, "Flake": 0.4})
    assert ratio["low"] == 1.0 and ratio["high"] == pytest.approx(1.2 / 1.0)


def test_emulated_mode_pads_each_worker_to_its_device_time(model_paths, pool):
    """Emulated devices: F takes its stated time (the linear model computes in far less), a student
    half of it (FLOPs-proportional), and the worker's busy time says so."""
    times = lt.device_times({"F": 2.0, "PM": 2.0, "Flake": 1.0, "NKD": 1.0}, f_ms=20.0)
    assert times == {"F": 20.0, "PM": 20.0, "Flake": 10.0, "NKD": 10.0}
    specs = lt.worker_specs(["F0", "NKD0"], model_paths, "emulated", emulated_ms=times)
    assert [s.pad_to_s for s in specs] == [0.02, 0.01]
    assert all(s.pad_to_s == 0 for s in lt.worker_specs(["F0", "FP0"], model_paths, "native"))
    images, labels = pool
    with lt.Bench("emulated", ["F0", "F1"], model_paths, images, labels, emulated_ms=times, drain_s=5.0) as b:
        schedule = lt.make_schedule(10, 20, len(images), None, SLOWDOWNS, seed=3)
        frame, info = b.run("none", schedule, bound_ms=100.0)
    latency = frame["latency_ms"].astype(float)
    assert (latency >= 20.0).all() and info["median_ms"] < 60.0
    assert info["deployed_util"] == pytest.approx(10 * 0.020 / 2, rel=0.5)  # 10 qps, 20 ms, two instances


def test_load_sweep_shares_schedules_rotates_and_refines_only_the_named_methods():
    class FakeBench:
        mode = "native"

        def __init__(self):
            self.calls = []

        def run(self, method, schedule, bound_ms):
            self.calls.append((method, schedule.qps, id(schedule)))
            knee = {"pm": 700.0, "flake": 900.0, "none": 500.0}[method]
            stat = 10.0 if schedule.qps < knee else 100.0
            return None, {"method": method, "qps": schedule.qps, "p99_ms": stat, "cpu_percent": 0.0, "wall_s": 0.0}

    def schedule_at(qps):
        return lt.Schedule(qps, np.zeros(2), np.zeros(2, dtype=int), lt.FaultPlan.none(2), seed=0)

    fake = FakeBench()
    rows, caps = lt.run_load_sweep(fake, ["none", "pm", "flake"], [200.0, 600.0, 1000.0], schedule_at, bound_ms=10.0,
                                   tail_bound_ms=50.0, statistic="p99_ms", refine=["pm", "flake"])
    grid = fake.calls[:9]
    assert [c[1] for c in grid] == [200.0] * 3 + [600.0] * 3 + [1000.0] * 3
    assert [c[0] for c in grid[:3]] != [c[0] for c in grid[3:6]]  # the order rotates from level to level
    assert len({c[2] for c in grid if c[1] == 600.0}) == 1  # one schedule per level for every method
    assert caps["none"]["bracket_qps"] == [200.0, 600.0]  # not refined: the levels' bracket
    for method, knee in (("pm", 700.0), ("flake", 900.0)):
        low, high = caps[method]["bracket_qps"]
        assert caps[method]["bracketed"] and low < knee <= high and high / low <= 1.10
    assert {c[0] for c in fake.calls[9:]} == {"pm", "flake"} and sum(r["refined"] for r in rows) == len(fake.calls) - 9


def test_queries_file_round_trips(tmp_path):
    """queries.parquet keeps every row and value (times to float32), groups empty where a method has none."""
    rng = np.random.default_rng(0)
    n = 1000
    frame = pd.DataFrame({"query": np.arange(n), "method": ["pm"] * 500 + ["srp"] * 500,
                          "group": [i // 2 for i in range(500)] + [None] * 500,
                          "intended_s": np.sort(rng.uniform(0, 5, n)), "latency_ms": rng.exponential(3, n),
                          "answered_s": rng.uniform(0, 5, n), "outcome": ["original"] * n, "repeat": 0})
    frame.loc[3, "latency_ms"] = None
    lt.write_queries(frame, tmp_path / "q.parquet")
    back = pd.read_parquet(tmp_path / "q.parquet")
    assert len(back) == n and (back["query"] == frame["query"]).all() and back["group"].isna().sum() == 500
    assert back["latency_ms"].isna().sum() == 1 and back["latency_ms"].dtype == np.float32
    assert np.allclose(back["intended_s"], frame["intended_s"], atol=1e-6)


def test_engines_run_in_abba_order():
    assert lt.abba_order(["process", "ray"], 3) == [("process", 0), ("ray", 0), ("ray", 1), ("process", 1),
                                                     ("process", 2), ("ray", 2)]


def test_engine_overhead_is_the_paired_difference_per_repeat():
    runs = pd.DataFrame([
        {"engine": "process", "repeat": 0, "method": "flake", "median_ms": 1.0, "p999_ms": 20.0},
        {"engine": "ray", "repeat": 0, "method": "flake", "median_ms": 1.6, "p999_ms": 26.0},
        {"engine": "ray", "repeat": 1, "method": "flake", "median_ms": 1.9, "p999_ms": 21.0},
        {"engine": "process", "repeat": 1, "method": "flake", "median_ms": 1.2, "p999_ms": 24.0},
    ])
    table = lt.engine_overhead(runs, statistics=("median_ms", "p999_ms")).set_index("statistic")
    # median: differences 0.6 and 0.7; p99.9: +6 and -3 (medians of two are their means)
    assert table.loc["median_ms", ["process", "ray", "difference", "difference_min", "difference_max"]].tolist() == \
        pytest.approx([1.1, 1.75, 0.65, 0.6, 0.7])
    assert table.loc["p999_ms", ["difference", "difference_min", "difference_max"]].tolist() == \
        pytest.approx([1.5, -3.0, 6.0])
    assert set(table["repeats"]) == {2}
