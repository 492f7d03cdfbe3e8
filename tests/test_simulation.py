"""The discrete-event model: the real frontend over a simulated transport and a virtual clock gives
latencies that can be computed by hand, freezes paused workers, reports deaths and restarts, and
depends only on its seeds."""

from collections import Counter

import numpy as np
import pytest

from flake_lib import methods, serving
from flake_lib.serving.simulation import SimulatedTransport

MS = 1e-3


def _transport(service_ms=1.0, link_ms=0.0, frontend_ms=0.0, workers=("F0", "F1", "P0", "R0"), **kwargs):
    t = SimulatedTransport({"F": [service_ms * MS], "PM": [service_ms * MS]}, link_s=link_ms * MS,
                           frontend_s=frontend_ms * MS, **kwargs)
    t.start([serving.WorkerSpec(w, "PM" if w.startswith("P") else "F") for w in workers])
    return t


def _queries(n):
    return np.zeros((n, 3, 4, 4), dtype=np.float32), np.zeros(n, dtype=int)


def test_latency_of_an_idle_system_is_service_plus_links_plus_frontend():
    images, labels = _queries(5)
    arrivals = np.arange(1, 6) * 0.1  # far apart: no queueing
    records = serving.serve(_transport(2.0, link_ms=0.5, frontend_ms=0.1), "none", serving.Deployment(["F0", "F1"]),
                            images, labels, arrivals, serving.FaultSchedule(np.zeros(5)), drain_s=1.0)
    # send (0.1 frontend) + link 0.5 + service 2 + link 0.5 + take (0.1 frontend) = 3.2 ms
    assert [r["latency_ms"] for r in records] == pytest.approx([3.2] * 5, abs=1e-9)


def test_queueing_on_one_instance_adds_up():
    images, labels = _queries(4)
    arrivals = np.zeros(4) + 0.01  # four queries at once, two per instance
    records = serving.serve(_transport(5.0), "none", serving.Deployment(["F0", "F1"]), images, labels, arrivals,
                            serving.FaultSchedule(np.zeros(4)), drain_s=1.0)
    assert sorted(r["latency_ms"] for r in records) == pytest.approx([5, 5, 10, 10], abs=1e-9)


def test_pm_rebuilds_a_straggler_at_the_timing_bound():
    images, labels = _queries(4)
    delays = np.array([0.0, 0.5, 0.0, 0.0])  # query 1 (on F1) straggles far beyond the bound
    records = serving.serve(_transport(1.0), "pm", serving.Deployment(["F0", "F1"], ["P0"]), images, labels,
                            np.array([0.01, 0.011, 0.1, 0.101]), serving.FaultSchedule(delays), timing_bound_s=0.01,
                            drain_s=1.0)
    rebuilt = records[1]
    assert rebuilt["outcome"] == "reconstructed" and rebuilt["recovered_by"] == "parity"
    assert rebuilt["latency_ms"] == pytest.approx(10.0, abs=1e-9)  # decoded the moment the bound passed
    assert records[2]["latency_ms"] == pytest.approx(1.0)  # F0 is free; query 3 on F1 queues behind the straggler


def test_a_paused_worker_freezes_its_request_and_a_killed_one_restarts():
    t = _transport(1.0, startup_s=0.3)
    images, labels = _queries(6)
    arrivals = np.array([0.01, 0.02, 0.2, 0.21, 0.6, 0.61])
    faults = serving.FaultSchedule(np.zeros(6), pauses=[("F1", 0.0195, 0.05)], kills=[("F0", 0.15)])
    stats = {}
    records = serving.serve(t, "srp", serving.Deployment(["F0", "F1"], backup=["R0"]), images, labels, arrivals,
                            faults, timing_bound_s=0.01, restart_delay_s=0.05, drain_s=1.0, stats=stats)
    assert Counter(r["outcome"] for r in records)["failed"] == 0
    assert records[1]["outcome"] == "replica"  # F1 paused for 50 ms: the replica answered after the bound
    assert [w for w, _ in stats["deaths"]] == ["F0"] and [w for w, _ in stats["restarts"]] == ["F0"]
    death, restart = stats["deaths"][0][1], stats["restarts"][0][1]
    assert restart - death == pytest.approx(0.05 + 0.3)  # restart delay, then the start-up time
    assert records[4]["instance"] == "F0" and records[4]["outcome"] == "original"  # back in service


def test_a_simulation_depends_only_on_its_seeds():
    def run(seed):
        t = SimulatedTransport({"F": np.linspace(0.5, 3.0, 50) * MS, "PM": np.linspace(0.5, 3.0, 50) * MS}, seed=seed)
        t.start([serving.WorkerSpec(w, "PM" if w == "P0" else "F") for w in ("F0", "F1", "P0")])
        images, labels = _queries(400)
        delays = np.where(np.arange(400) % 37 == 0, 0.05, 0.0)
        records = serving.serve(t, "flake", serving.Deployment(["F0", "F1"], ["P0"]), images, labels,
                                serving.poisson_arrivals(400, 400, seed=1), serving.FaultSchedule(delays),
                                timing_bound_s=0.01, drain_s=1.0)
        return [(r["outcome"], r["latency_ms"]) for r in records]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_workers_sharing_one_core_wait_for_it_and_padding_leaves_it_free():
    images, labels = _queries(2)
    arrivals = np.array([0.01, 0.01])  # one query to each instance at the same time
    shared = serving.serve(_transport(4.0, cpus=1, sharing="fifo"), "none", serving.Deployment(["F0", "F1"]), images,
                           labels, arrivals, serving.FaultSchedule(np.zeros(2)), drain_s=1.0)
    assert sorted(r["latency_ms"] for r in shared) == pytest.approx([4.0, 8.0])  # one core: one after the other
    own = serving.serve(_transport(4.0), "none", serving.Deployment(["F0", "F1"]), images, labels, arrivals,
                        serving.FaultSchedule(np.zeros(2)), drain_s=1.0)
    assert [r["latency_ms"] for r in own] == pytest.approx([4.0, 4.0])  # a core (device) each
    padded = _transport(1.0, cpus=1, sharing="fifo", pad_s={"F": 0.01})  # emulated: 1 ms of compute, 10 of service
    emulated = serving.serve(padded, "none", serving.Deployment(["F0", "F1"]), images, labels, arrivals,
                             serving.FaultSchedule(np.zeros(2)), drain_s=1.0)
    assert sorted(r["latency_ms"] for r in emulated) == pytest.approx([10.0, 11.0])  # the core is free while padding


def test_time_sharing_slows_every_computing_worker_alike():
    images, labels = _queries(2)
    arrivals = np.array([0.01, 0.01])
    shared = serving.serve(_transport(4.0, cpus=1), "none", serving.Deployment(["F0", "F1"]), images, labels,
                           arrivals, serving.FaultSchedule(np.zeros(2)), drain_s=1.0)
    assert [r["latency_ms"] for r in shared] == pytest.approx([8.0, 8.0])  # each at half speed, both end at 8 ms
    two_cores = serving.serve(_transport(4.0, cpus=2), "none", serving.Deployment(["F0", "F1"]), images, labels,
                              arrivals, serving.FaultSchedule(np.zeros(2)), drain_s=1.0)
    assert [r["latency_ms"] for r in two_cores] == pytest.approx([4.0, 4.0])
    # staggered: F0 alone for 1 ms (1 done, 3 left), then both at half speed: F0 ends after 6 more ms
    # (at 7), F1 has done 3 of 4 by then and ends 1 ms later, at 8 (latency 8 - 1 = 7)
    staggered = serving.serve(_transport(4.0, cpus=1), "none", serving.Deployment(["F0", "F1"]), images, labels,
                              np.array([0.010, 0.011]), serving.FaultSchedule(np.zeros(2)), drain_s=1.0)
    assert [r["latency_ms"] for r in staggered] == pytest.approx([7.0, 7.0])
    padded = _transport(1.0, cpus=1, pad_s={"F": 0.01})  # compute 2 ms at half speed, padded to 10 ms
    emulated = serving.serve(padded, "none", serving.Deployment(["F0", "F1"]), images, labels, arrivals,
                             serving.FaultSchedule(np.zeros(2)), drain_s=1.0)
    assert [r["latency_ms"] for r in emulated] == pytest.approx([10.0, 10.0])


@pytest.mark.parametrize("sharing, first_ms, second_ms", [
    # F0 computes 2 ms, is stopped at 12 ms (2 ms left) and frees the core: F1 computes 12..16 ms;
    # F0 resumes at 50 ms with its 2 ms left
    ("fifo", 52.0 - 10.0, 16.0 - 10.5),
    # F0 alone 10..10.5 (0.5 done), both at half speed to 12 (F0 1.25 done, F1 0.75); F0 stopped: F1 alone
    # ends at 12 + 3.25 = 15.25; F0 resumes at 50 with 2.75 left
    ("time", 52.75 - 10.0, 15.25 - 10.5),
])
def test_a_paused_computing_worker_gives_its_core_back(sharing, first_ms, second_ms):
    t = _transport(4.0, cpus=1, sharing=sharing)
    images, labels = _queries(2)
    faults = serving.FaultSchedule(np.zeros(2), pauses=[("F0", 0.012, 0.05)])
    records = serving.serve(t, "none", serving.Deployment(["F0", "F1"]), images, labels, np.array([0.01, 0.0105]),
                            faults, timing_bound_s=None, drain_s=1.0)
    assert records[1]["latency_ms"] == pytest.approx(second_ms)
    assert records[0]["latency_ms"] == pytest.approx(first_ms)


def test_the_load_sweep_and_capacity_search_run_on_the_model():
    from flake_lib import latency as lt

    workers = lt.workers_for(["none", "pm", "flake", "approxifer"])
    service = {"F": np.full(50, 2.0), "PM": np.full(50, 2.0), "Flake": np.full(50, 1.0)}
    images, labels = _queries(64)
    bench = lt.Bench.simulated("native", workers, service, images, labels, cpus=1, frontend_ms=0.01,
                               recovery=serving.RecoveryBudget())
    config = lt.FaultConfig(straggler_rate_per_s=2.0, reference_ms=20.0, pause_rate_per_s=0.0)
    slowdowns = np.linspace(1.0, 5.0, 100)

    def schedule(qps):
        return lt.level_schedule(qps, 2.0, len(images), config, slowdowns, seed=3)

    rows, capacities = lt.run_load_sweep(bench, ["none", "pm", "flake", "approxifer"], [50.0, 150.0, 400.0],
                                         schedule, bound_ms=10.0, tail_bound_ms=30.0, statistic="p99_ms",
                                         max_refinements=1)
    table = {(r["method"], r["qps"]): r for r in rows}
    assert all(r["n_failed"] == 0 for r in rows if r["qps"] <= 150)
    # one core, 2 ms per inference: at 400 qps F alone needs 0.8 of it and PM's parity queries another 0.4
    # (overload), at 50 qps 0.15
    assert table[("none", 400.0)]["median_ms"] > table[("none", 50.0)]["median_ms"]
    assert capacities["pm"]["capacity_qps"] is None or capacities["pm"]["capacity_qps"] < 400
    again, _ = lt.run_load_sweep(bench, ["pm"], [150.0], schedule, bound_ms=10.0, tail_bound_ms=30.0,
                                 statistic="p99_ms", max_refinements=0)
    assert again[0]["p99_ms"] > 0


def test_calibration_finds_the_link_that_made_the_measurement_and_validation_checks_it():
    from flake_lib import latency as lt
    from flake_lib import scaleout

    parameters = {"straggler_rate_per_s": 2.0, "straggler_reference_ms": 20.0, "pause_rate_per_s": 0.0,
                  "pause_ms": 100.0, "recovery": {"max_utilisation": 0.8, "window_s": 1.0}}
    service = {"F": np.full(20, 1.0), "PM": np.full(20, 1.0), "Flake": np.full(20, 0.5), "NKD": np.full(20, 0.5)}
    methods = ["none", "pm", "flake"]
    slowdowns = np.linspace(1.0, 5.0, 100)

    def schedule(qps):
        return lt.level_schedule(qps, 1.0, 64, scaleout.sweep_config(parameters), slowdowns, seed=5)

    def bench(link):
        return scaleout.model_bench("native", methods, service, parameters, link_ms=link, frontend_ms=0.0)

    truth = scaleout.run_levels(bench(0.3), methods, [100.0, 300.0], schedule, bound_ms=10.0).assign(mode="native",
                                                                                                         repeat=0)
    link, grid = scaleout.calibrate(bench, methods, 100.0, schedule, truth[truth["qps"] == 100.0], 10.0,
                                    [0.0, 0.1, 0.2, 0.3, 0.4])
    assert link == 0.3 and grid["mean_abs_error_median"].min() == pytest.approx(0.0)
    modelled = scaleout.run_levels(bench(link), methods, [100.0, 300.0], schedule, 10.0).assign(mode="native")
    table = scaleout.validation(modelled, truth, calibration_qps={"native": 100.0}, knee_qps={"native": 250.0})
    assert table["within_tolerance"].all() and set(table["load"]) == {100.0, 300.0}
    assert table["median_within"].all() and table["p99_within"].all()
    assert table.loc[table["load"] == 300.0, "below_knee"].eq(False).all() and table["calibration"].sum() == 3


def test_a_fleet_runs_every_method_with_one_frontend():
    from flake_lib import scaleout

    parameters = {"straggler_rate_per_s": 2.0, "straggler_reference_ms": 20.0, "pause_rate_per_s": 0.05,
                  "pause_ms": 100.0, "emulated_ms": {"F": 4.0, "PM": 4.0, "Flake": 2.0, "NKD": 2.0}}
    service = {m: np.full(10, 0.3) for m in ("F", "PM", "Flake", "NKD")}
    rows = [scaleout.fleet_run(m, deployed=8, k=4, per_instance_qps=50.0, n_queries=800, service_ms=service,
                               parameters=parameters, slowdowns=np.linspace(1, 5, 50), link_ms=0.1, frontend_ms=0.01,
                               bound_ms=10.0) for m in methods.keys(fleet=True)]
    by = {r["method"]: r for r in rows}
    assert all(r["n_failed"] == 0 and r["qps"] == 400.0 for r in rows)
    assert by["pm"]["redundant"] == 2 and by["none"]["redundant"] == 0
    assert by["none"]["p99_ms"] > by["flake"]["p99_ms"]  # redundancy cuts the straggler tail
    assert scaleout.fleet_frontends(100_000, 0.05) == 10


def test_link_curve_charges_each_message_by_its_receivers_idle_time():
    images, labels = _queries(2)
    # one-way 0.1 ms to a receiver that was just busy, 0.5 ms after 10 ms idle, linear in between
    t = _transport(2.0, link_curve=([0.0, 0.010], [0.1 * MS, 0.5 * MS]))
    records = serving.serve(t, "none", serving.Deployment(["F0", "F1"]), images, labels, np.array([0.1, 0.2]),
                            serving.FaultSchedule(np.zeros(2)), drain_s=1.0)
    # to the worker (idle for ≥ 100 ms): 0.5; compute 2; back to the frontend, idle since it sent 2.5 ms
    # before: 0.1 + 0.4 · 0.25 = 0.2 ms
    assert [r["latency_ms"] for r in records] == pytest.approx([2.7, 2.7])


def test_a_single_queue_leaves_only_the_straggler_behind():
    """One 200 ms straggler on F0 at 100 qps: with per-instance queues the queries sent to F0 after it
    wait behind it; with one frontend queue the idle F1 takes them, and only the straggler is late."""
    n = 60
    images, labels = _queries(n)
    arrivals = np.arange(1, n + 1) * 0.01
    delays = np.zeros(n)
    delays[10] = 0.2
    late = {}
    for dispatch in ("round_robin", "single_queue"):
        records = serving.serve(_transport(1.0), "none", serving.Deployment(["F0", "F1"]), images, labels, arrivals,
                                serving.FaultSchedule(delays), timing_bound_s=None, dispatch=dispatch)
        assert Counter(r["outcome"] for r in records) == {"original": n}
        late[dispatch] = sorted(r["query"] for r in records if r["latency_ms"] > 20)
    assert late["single_queue"] == [10]
    assert len(late["round_robin"]) >= 8 and late["round_robin"][0] == 10
    with pytest.raises(ValueError, match="single queue"):
        serving.serve(_transport(1.0), "approxifer", serving.Deployment(["F0", "F1"], parity=["P0"]), images, labels,
                      arrivals, serving.FaultSchedule(delays), dispatch="single_queue")


@pytest.mark.parametrize("stated_ms, deferred", [(1.0, False), (50.0, True)])
def test_admission_is_sized_from_the_recovering_instance(stated_ms, deferred):
    """F1 stalls 0.5 s at 200 qps: 50 unavailable queries at 100 per second for SRP's replica. A replica
    of 1 ms at most 80 % busy admits 800 per second: nothing waits. One stated at 50 ms admits 16 per
    second beyond a window of 0.8 s of work (16 requests): the rest waits, and the wait is reported."""
    n = 200
    images, labels = _queries(n)
    arrivals = np.arange(1, n + 1) * 0.005
    delays = np.zeros(n)
    delays[41] = 0.5  # on F1
    stats = {}
    budget = serving.RecoveryBudget(max_utilisation=0.8, window_s=1.0, service_s={"R0": stated_ms / 1000})
    records = serving.serve(_transport(1.0), "srp", serving.Deployment(["F0", "F1"], backup=["R0"]), images, labels,
                            arrivals, serving.FaultSchedule(delays), timing_bound_s=0.01, recovery=budget, stats=stats)
    assert sum(r["unavailable"] for r in records) >= 45
    assert (stats["recovery_deferred"] > 0) == deferred
    assert (stats["admission_wait_max_ms"] > 0) == deferred
    assert stats["admission_requests"] >= 45


def test_parity_queries_pass_the_same_admission():
    """PM's parity queries are redundant work too: a parity instance stated to take 40 ms, at most half
    busy, admits 12.5 per second; 50 groups per second arrive, so parity queries wait (and are dropped
    when their group completes first)."""
    n = 200
    images, labels = _queries(n)
    arrivals = np.arange(1, n + 1) * 0.01
    stats = {}
    budget = serving.RecoveryBudget(max_utilisation=0.5, window_s=0.2, service_s={"P0": 0.04})
    records = serving.serve(_transport(1.0), "pm", serving.Deployment(["F0", "F1"], parity=["P0"]), images, labels,
                            arrivals, serving.FaultSchedule(np.zeros(n)), timing_bound_s=0.01, recovery=budget,
                            stats=stats)
    assert Counter(r["outcome"] for r in records) == {"original": n}
    assert stats["recovery_deferred"] > 0 and stats["recovery_dropped"] > 0
    assert stats["parity_sent"] < n // 2
