"""A load sweep driven past what the workers can serve: queries fail (nothing answers them before the
run's drain ends), their tail statistics are infinite, and every file of the latency experiment is still
written, read back and judged. On a slower, noisier machine than the one the reference run came from
this is what notebook 04 meets at its upper load levels."""

import math

import numpy as np
import pandas as pd
import pytest

from flake_lib import claims, results, serving
from flake_lib import latency as lt

METHODS = ["none", "srp", "pm", "flake", "nkd"]


@pytest.fixture(scope="module")
def overloaded():
    """The sweep on the discrete-event model: one shared core, 2 ms per inference of F; at 2,000 qps the
    workers need four cores' worth, so the backlog outgrows the 0.1 s drain and queries fail."""
    rng = np.random.default_rng(0)
    images, labels = rng.standard_normal((32, 3, 4, 4)).astype(np.float32), rng.integers(0, 5, 32)
    service = {"F": np.full(20, 2.0), "PM": np.full(20, 2.0), "Flake": np.full(20, 1.0), "NKD": np.full(20, 1.0)}
    bench = lt.Bench.simulated("native", lt.workers_for(METHODS), service, images, labels, cpus=1, drain_s=0.1,
                               recovery=serving.RecoveryBudget())
    config = lt.FaultConfig(straggler_rate_per_s=4.0, reference_ms=10.0, pause_rate_per_s=0.0)

    def schedule(qps):
        return lt.level_schedule(qps, 1.0, len(images), config, np.linspace(1.0, 4.0, 50), seed=5)

    rows, capacities = lt.run_load_sweep(bench, METHODS, [100.0, 2000.0], schedule, bound_ms=10.0,
                                         tail_bound_ms=30.0, statistic="p99_ms", max_refinements=2)
    return pd.DataFrame(rows), capacities


def test_an_overloaded_level_fails_queries_and_fails_the_objective(overloaded):
    sweep, capacities = overloaded
    top = sweep[sweep["qps"] == 2000.0]
    assert (top["n_failed"] > 0).all() and np.isinf(top["p99_ms"]).all()
    assert (sweep.loc[sweep["qps"] == 100.0, "n_failed"] == 0).all()
    for method, record in capacities.items():
        assert not record["censored"], method  # the failing level is a failure, not an error
        assert record["bracket_qps"][1] is not None and record["bracket_qps"][1] <= 2000.0
        assert any(math.isinf(statistic) for _, statistic in record["levels_tried"])
        assert dict(map(tuple, record["failed_queries"]))[2000.0] > 0


def test_every_latency_file_is_written_and_read_back_with_its_infinities(overloaded, tmp_path):
    sweep, capacities = overloaded
    latency = tmp_path / "latency"
    latency.mkdir()
    sweep.to_csv(latency / "load_sweep.csv", index=False)
    record = {"objective": {"statistic": "p99_ms", "bound_ms": 30.0},
              "modes": {"native": {"methods": capacities,
                                   "flake_over_pm": lt.capacity_ratio(capacities["flake"], capacities["pm"])}}}
    results.write_metrics(record, latency / "capacity.json")
    results.write_table(sweep[["method", "qps", "p99_ms", "n_failed"]], latency / "load_sweep_table")
    assert "Infinity" not in (latency / "capacity.json").read_text()  # strict JSON
    back = results.read_metrics(latency / "capacity.json")
    for method, original in capacities.items():
        assert back["modes"]["native"]["methods"][method]["levels_tried"] == [list(x) for x in
                                                                              original["levels_tried"]]
    again = pd.read_csv(latency / "load_sweep.csv")
    assert np.isinf(again.loc[again["qps"] == 2000.0, "p99_ms"]).all()
    verdict = claims.e4e_capacity(tmp_path)  # the reader judges it
    assert verdict.verdict in ("reproduced", "partly", "not", "inconclusive")


def test_each_run_reports_its_block_method_level_queries_and_eta(monkeypatch, tmp_path):
    """The latency experiment's status line (the chain shows it in the terminal): which block, which run
    of how many, which method at which level, how many queries were sent, and an ETA."""
    from flake_lib import progress
    from flake_lib.serving import frontend

    status = tmp_path / "status.txt"
    monkeypatch.setenv(progress.FILE_ENV, str(status))
    monkeypatch.setattr(progress, "FILE_INTERVAL", 0.0)
    monkeypatch.setattr(frontend, "PROGRESS_INTERVAL_S", 0.0)  # every pass of the frontend's loop
    seen = []
    monkeypatch.setattr(progress, "status", lambda text, force=False: seen.append(text) or True)
    rng = np.random.default_rng(0)
    images, labels = rng.standard_normal((8, 3, 4, 4)).astype(np.float32), rng.integers(0, 5, 8)
    plan = progress.Plan({"sweep": 2.0}, log=seen.append)
    bench = lt.Bench.simulated("native", lt.workers_for(["pm"]), {"F": [1.0], "PM": [1.0]}, images, labels,
                               plan=plan)
    plan.block("load sweep (native)", runs=2)
    for qps in (50.0, 100.0):
        bench.run("pm", lt.level_schedule(qps, 1.0, len(images), None, np.ones(2), seed=1))
    assert seen[0].startswith("load sweep (native): 2 run(s)")
    during = [t for t in seen if "queries" in t and not t.startswith("load sweep (native): ")]
    assert any("run 2/2" in t and "pm at 100 qps (native)" in t and "/100 queries" in t for t in during)
    assert all("elapsed" in t and "left" in t for t in during)
    assert "~?" not in during[-1]  # an ETA once one run is done
