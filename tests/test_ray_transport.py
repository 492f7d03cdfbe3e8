"""The serving system over Ray actors (flake_lib.serving.ray_transport) on a local cluster of three
nodes started with ``ray start`` as on real edge nodes: a head (the frontend's) and two edge nodes,
each with its own custom resource (``edge0``, ``edge1``), temporary folder and a small object store.
The workers run on the nodes their resources name, no query is lost, a worker killed on an edge node
is found through Ray's error and its query rebuilt by parity, and ``Bench.settle`` brings it back. At
the end exactly the processes these nodes started are stopped, by process id (never ``ray stop``,
which would end every Ray process of the machine), and none is left."""

import contextlib
import time
from collections import Counter

import numpy as np
import pytest

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

from test_serving import _answered_once, _kill_f1_and_recover, _queries, _quiet, linear_ir  # noqa: E402, F401

from flake_lib import latency, serving  # noqa: E402
from flake_lib.serving import ray_cluster, ray_transport  # noqa: E402

EDGES = ("edge0", "edge1")
PLACEMENT = {"F0": "edge0", "P0": "edge0", "F1": "edge1", "R0": "edge1"}
SHAPE = (3, 32, 32)
_running = ray_cluster.running


@pytest.fixture(scope="module")
def cluster():
    local = ray_cluster.LocalCluster(EDGES)
    try:
        local.start()
        local.nodes = local.connect()
        yield local
    finally:
        if ray.is_initialized():
            ray.shutdown()
        left = local.stop()
        assert not left, f"Ray processes left running: {[(p.pid, p.name()) for p in left]}"
        assert not local.root.exists()  # its temporary folder removed with it


@pytest.fixture(scope="module")
def linear_path(linear_ir):  # noqa: F811 (the fixture imported above)
    """test_serving's linear F (no bias), used as parity model too: the addition code is exact."""
    return linear_ir[1]


@pytest.fixture(scope="module")
def transport(cluster, linear_path):
    t = ray_transport.RayTransport(PLACEMENT, ship_models=True)
    t.start([serving.WorkerSpec(name, linear_path) for name in PLACEMENT])
    yield t
    cluster.track(t.pids.values())
    t.close()


def test_each_worker_runs_on_the_edge_node_of_its_resource(cluster, transport):
    by_resource = {edge: node["NodeID"] for node in cluster.nodes for edge in EDGES if edge in node["Resources"]}
    assert len(set(by_resource.values())) == len(EDGES)  # one node per edge resource
    frontend_node = ray.get_runtime_context().get_node_id()
    for worker, edge in PLACEMENT.items():
        assert transport.nodes[worker] == by_resource[edge] != frontend_node
        assert transport.input_shapes[worker] == (1, *SHAPE)
    assert transport.nodes["F0"] != transport.nodes["F1"]
    assert len(set(transport.pids.values())) == len(PLACEMENT)
    assert set(transport.agents) == set(by_resource.values())  # one fault agent per node with workers
    for name in ("head", *EDGES):  # every node keeps its files in its own temporary folder
        assert list((cluster.root / name).glob("session_*")), name


def test_a_worker_serves_its_calls_one_at_a_time_in_the_order_sent(transport):
    images, _ = _queries(6, seed=3)
    ids = [-1000 - i for i in range(6)]  # negative: never a frontend's
    for i, request_id in enumerate(ids):
        transport.send("F0", request_id, images[i][None], delay_s=0.02)
    responses, end = [], time.monotonic() + 30
    while len(responses) < len(ids) and time.monotonic() < end:
        message = transport.receive(0.5)
        if isinstance(message, serving.Response) and message.request_id in ids:
            responses.append(message)
    by_start = sorted(responses, key=lambda r: r.started)
    assert [r.request_id for r in by_start] == ids
    assert all(b.started >= a.finished for a, b in zip(by_start, by_start[1:]))
    assert all(r.error is None and r.finished - r.started >= 0.02 for r in responses)


def test_no_query_is_lost_under_stragglers_and_a_remote_pause(transport):
    n = 80
    images, labels = _queries(n, seed=20)
    arrivals = serving.poisson_arrivals(100, n, seed=21)
    delays = np.zeros(n)
    delays[[9, 30, 51]] = 0.3  # stragglers far beyond the bound, on F1 (odd) and F0 (even)
    records = serving.serve(transport, "pm", serving.Deployment(["F0", "F1"], ["P0"]), images, labels, arrivals,
                            serving.FaultSchedule(delays), timing_bound_s=0.05)
    _quiet(transport, 0.4)
    counts = _answered_once(records, n)
    assert counts["reconstructed"] >= 3 and set(counts) <= {"original", "reconstructed"}
    pause = (float(arrivals[10]), float(arrivals[10]) + 0.3)  # F1 stopped on its edge node (SIGSTOP, SIGCONT)
    records = serving.serve(transport, "srp", serving.Deployment(["F0", "F1"], backup=["R0"]), images, labels,
                            arrivals, serving.FaultSchedule(np.zeros(n), pauses=[("F1", *pause)]),
                            timing_bound_s=0.03)
    counts = _answered_once(records, n)
    # the stop travels through Ray to the node's fault agent: queries of the window's first and last
    # 50 ms may still meet a running F1
    during = [r for r in records if r["instance"] == "F1" and pause[0] + 0.05 <= r["intended_s"] < pause[1] - 0.05]
    assert during and all(r["outcome"] == "replica" for r in during)
    assert set(counts) <= {"original", "replica"}


def test_kill_on_an_edge_node_is_found_by_rays_error_and_recovered_by_parity(transport):
    _kill_f1_and_recover(transport)
    assert "RayActorError" in transport.errors["F1"] or "ActorDied" in transport.errors["F1"]
    assert not psutil.pid_exists(transport.pids["F1"]) or not _running(psutil.Process(transport.pids["F1"]))


def test_detection_time_and_settle_bring_killed_workers_back(cluster, transport, linear_path):
    killed_pid = transport.pids["F1"]
    times = ray_transport.measure_detection(transport, "F1", kills=3)
    summary = ray_transport.detection_summary(times)
    print(f"dead-actor detection after SIGKILL: {summary}")
    assert len(times) == 3 and all(0 < t < 60 for t in times)
    assert transport.is_alive("F1") and transport.pids["F1"] != killed_pid
    assert transport.nodes["F1"] == transport.nodes["R0"]  # back on its edge node
    transport.kill("F0")  # not yet seen dead: settle finds it through its barrier and restarts it
    images, labels = _queries(8)
    bench = latency.Bench("native", list(PLACEMENT), {"F": linear_path}, images, labels, transport=transport)
    bench.settle(timeout_s=60.0)
    assert all(transport.is_alive(w) for w in PLACEMENT)
    records = serving.serve(transport, "none", serving.Deployment(["F0", "F1"]), images, labels,
                            serving.poisson_arrivals(50, 8, seed=2), serving.FaultSchedule(np.zeros(8)))
    _answered_once(records, 8)
    assert Counter(r["answered_by"] for r in records) == {"F0": 4, "F1": 4}


def test_the_same_schedule_runs_through_both_engines(cluster, linear_path):
    """``Bench(engine=...)``: worker processes here, then Ray actors on the edge nodes, then processes
    again (ABBA), one schedule; nothing lost on either engine."""
    images, labels = _queries(60, seed=9)
    schedule = latency.make_schedule(100, 60, len(images), None, np.ones(10), seed=5)
    paths = {m: linear_path for m in ("F", "PM", "Flake", "NKD")}
    workers = latency.workers_for(["flake"])

    @contextlib.contextmanager
    def open_bench(engine):
        with latency.Bench("native", workers, paths, images, labels, engine=engine,
                             ray_placement={"F0": "edge0", "F1": "edge1", "FP0": "edge1"}, drain_s=1.0) as bench:
            if engine == "ray":
                cluster.track(bench.transport.pids.values())
                assert bench.transport.nodes["F0"] != bench.transport.nodes["F1"]
            yield bench

    runs = latency.engine_comparison(open_bench, ["flake"], schedule, bound_ms=50.0, repeats=2)
    assert list(runs["engine"]) == ["process", "ray", "ray", "process"]
    assert (runs["n_queries"] == 60).all() and (runs["n_failed"] == 0).all()
    table = latency.engine_overhead(runs)
    assert set(table["statistic"]) == {"median_ms", "p999_ms", "gmm_ms", "gpm_ms"} and (table["repeats"] == 2).all()
