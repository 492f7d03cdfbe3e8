"""The serving system: no query lost or answered twice, also under a killed worker; the decoder
path gives what the offline evaluation gives; malformed queries get an error answer."""

from collections import Counter

import numpy as np
import pytest
import torch

from flake_lib import coding, runtime, serving


@pytest.fixture(scope="module")
def linear_ir(tmp_path_factory):
    """A linear F (no bias) and the same model as parity model: the addition code is exact."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5, bias=False)).eval()
    path = tmp_path_factory.mktemp("ir") / "linear.xml"
    runtime.export(model, torch.zeros(1, 3, 8, 8), path)
    return model, str(path)


@pytest.fixture()
def transport(linear_ir):
    _, path = linear_ir
    t = serving.ProcessTransport()
    t.start([serving.WorkerSpec(name, path) for name in ("F0", "F1", "P0", "R0")])
    yield t
    t.close()


def _queries(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3, 8, 8)).astype(np.float32), rng.integers(0, 5, n)


def _offline(model, images):
    with torch.no_grad():
        return model(torch.from_numpy(images)).numpy()


def test_every_query_answered_once_under_a_killed_worker(transport, linear_ir):
    images, labels = _queries(80)
    arrivals = serving.poisson_arrivals(200, 80, seed=1)
    faults = serving.FaultSchedule(np.zeros(80), kills=[("F1", float(arrivals[30]))])
    records = serving.serve(transport, "pm", serving.Deployment(["F0", "F1"], ["P0"]), images, labels,
                            arrivals, faults, k=2, timing_bound_s=0.2)
    assert [r["query"] for r in records] == list(range(80))
    counts = Counter(r["outcome"] for r in records)
    assert sum(counts.values()) == 80 and counts["failed"] == 0, counts
    assert all(r["latency_ms"] is not None for r in records)
    later_on_f1 = [r for r in records[40:] if r["instance"] == "F1"]
    assert not later_on_f1  # nothing is sent to a dead instance


def test_decoder_path_matches_offline_evaluation(transport, linear_ir):
    model, _ = linear_ir
    n = 40
    images, labels = _queries(n, seed=2)
    delays = np.zeros(n)
    delays[[5, 12, 21]] = 0.5  # stragglers: one per group, far beyond the timing bound
    records = serving.serve(transport, "pm", serving.Deployment(["F0", "F1"], ["P0"]), images, labels,
                            serving.poisson_arrivals(100, n, seed=3), serving.FaultSchedule(delays),
                            k=2, timing_bound_s=0.05)
    outputs = _offline(model, images)
    groups = torch.arange(n).view(-1, 2)
    parity = torch.from_numpy(_offline(model, coding.add_encode(torch.from_numpy(images)[groups]).numpy()))
    offline = coding.decode_each(parity, torch.from_numpy(outputs)[groups]).reshape(n, -1).argmax(-1)
    rebuilt = [r for r in records if r["outcome"] == "reconstructed"]
    # the stragglers, and queries queued behind them on the same instance, are rebuilt
    assert {5, 12, 21} <= {r["query"] for r in rebuilt}
    for r in rebuilt:
        assert r["predicted"] == offline[r["query"]].item() == outputs[r["query"]].argmax()


def test_flake_rebuilds_two_unavailable_members_with_cached_partners(transport, linear_ir):
    model, _ = linear_ir
    n = 40
    images, labels = _queries(n, seed=4)
    delays = np.zeros(n)
    delays[[20, 21]] = 0.5  # both members of group 10
    flake = serving.serve(transport, "flake", serving.Deployment(["F0", "F1"], ["P0"]), images, labels,
                          serving.poisson_arrivals(100, n, seed=5), serving.FaultSchedule(delays),
                          k=2, timing_bound_s=0.05)
    outputs = _offline(model, images)
    for q in (20, 21):
        assert flake[q]["outcome"] == "reconstructed"
        assert flake[q]["predicted"] == outputs[q].argmax()
        assert flake[q]["latency_ms"] < 400  # did not wait for the 500 ms straggler


def test_malformed_query_gets_an_error_and_service_continues(transport):
    n = 20
    images, labels = _queries(n, seed=6)
    payloads = [images[i][None] for i in range(n)]
    payloads[3] = np.zeros((1, 3, 4, 4), dtype=np.float32)  # wrong shape
    payloads[7] = "not an image"
    records = serving.serve(transport, "none", serving.Deployment(["F0", "F1"]), images, labels,
                            serving.poisson_arrivals(100, n, seed=7), serving.FaultSchedule(np.zeros(n)),
                            payloads=payloads)
    assert records[3]["outcome"] == "error" and "shape" in records[3]["error"]
    assert records[7]["outcome"] == "error"
    assert Counter(r["outcome"] for r in records) == {"original": n - 2, "error": 2}


def test_latency_summary_by_hand():
    stats = serving.latency_summary([1.0, 2.0, 3.0, 10.0, None])
    assert stats["median_ms"] == 2.5 and stats["max_ms"] == 10.0 and stats["gmm_ms"] == 7.5
    with pytest.raises(ValueError):
        serving.poisson_arrivals(0, 5)
    arrivals = serving.poisson_arrivals(200, 20000, seed=0)
    assert np.all(np.diff(arrivals) > 0) and abs(20000 / arrivals[-1] - 200) < 10


def test_paused_instance_is_covered_by_the_replica(transport):
    n = 60
    images, labels = _queries(n, seed=8)
    arrivals = serving.poisson_arrivals(100, n, seed=9)
    pause = (float(arrivals[10]), float(arrivals[10]) + 0.3)
    records = serving.serve(transport, "srp", serving.Deployment(["F0", "F1"], backup=["R0"]), images, labels,
                            arrivals, serving.FaultSchedule(np.zeros(n), pauses=[("F1", *pause)]),
                            timing_bound_s=0.03)
    during = [r for r in records if r["instance"] == "F1" and pause[0] <= r["intended_s"] < pause[1] - 0.05]
    assert during and all(r["outcome"] == "replica" for r in during)
    assert all(r["latency_ms"] < 250 for r in during)  # answered by the replica, not after the pause
    assert Counter(r["outcome"] for r in records).keys() <= {"original", "replica"}
