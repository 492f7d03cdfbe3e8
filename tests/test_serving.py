"""The serving system: every query answered exactly once, by the source its method's rule implies,
also under faults the frontend is not told about (an outside SIGKILL, a stopped parity instance,
both members of a group unavailable); the decoder path gives what the offline evaluation gives;
eager decoding, the recovery budget, the restart of a dead worker, device emulation; a run that ends
after a kill with a full inbox exits. Latency ceilings are generous "did not wait for X" bounds."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter

import numpy as np
import pytest
import torch

from flake_lib import coding, runtime, serving

SHAPE = (3, 32, 32)  # a CIFAR-sized query: 12 KB, so that a few fill a pipe
PAD_S = 0.1  # device emulation of the padded replica S0


@pytest.fixture(scope="module")
def linear_ir(tmp_path_factory):
    """A linear F (no bias) and the same model as parity model: the addition code is exact."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(SHAPE)), 5, bias=False)).eval()
    path = tmp_path_factory.mktemp("ir") / "linear.xml"
    runtime.export(model, torch.zeros(1, *SHAPE), path)
    return model, str(path)


@pytest.fixture(scope="module")
def transport(linear_ir):
    """Workers shared by the tests that stop or delay but never kill: two deployed instances, two
    parity instances, a replica and a replica padded to ``PAD_S`` (device emulation)."""
    _, path = linear_ir
    t = serving.ProcessTransport()
    t.start([serving.WorkerSpec(name, path) for name in ("F0", "F1", "P0", "P1", "R0")] +
            [serving.WorkerSpec("S0", path, pad_to_s=PAD_S)])
    yield t
    t.close()


@pytest.fixture()
def fresh(linear_ir):
    """Workers of one test (they get killed)."""
    _, path = linear_ir
    t = serving.ProcessTransport()
    t.start([serving.WorkerSpec(name, path) for name in ("F0", "F1", "P0", "R0")])
    yield t
    t.close()


def _queries(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *SHAPE)).astype(np.float32), rng.integers(0, 5, n)


def _offline(model, images):
    with torch.no_grad():
        return model(torch.from_numpy(images)).numpy()


def _quiet(transport, seconds):
    """Let the workers finish what a run left behind (stragglers still sleeping) and drop it."""
    end = time.monotonic() + seconds
    while True:
        remaining = end - time.monotonic()
        if transport.receive(max(remaining, 0.05)) is None and remaining <= 0:
            return


def _answered_once(records, n):
    """Every query has one record and one real answer ("failed" is not an answer)."""
    assert [r["query"] for r in records] == list(range(n))
    counts = Counter(r["outcome"] for r in records)
    assert sum(counts.values()) == n and counts["failed"] == 0, counts
    assert all(r["latency_ms"] is not None and r["answered_s"] >= r["intended_s"] for r in records)
    return counts


def _kill_f1_and_recover(transport, n=80):
    """PM on ``transport``; F1 killed at query 30's time while query 29 (delayed 1 s) is outstanding
    there. Checks that every query is answered once, the death is reported once, nothing is routed to
    F1 after it, and what F1 lost is rebuilt by parity at once (the group is decodable: F0 and P0
    alive), not at the 200 ms bound. Returns the records and the time the death was seen."""
    images, labels = _queries(n)
    arrivals = serving.poisson_arrivals(200, n, seed=1)
    delays = np.zeros(n)
    delays[29] = 1.0
    stats = {}
    records = serving.serve(transport, "pm", serving.Deployment(["F0", "F1"], ["P0"]), images, labels, arrivals,
                            serving.FaultSchedule(delays, kills=[("F1", float(arrivals[30]))]),
                            timing_bound_s=0.2, restart_delay_s=None, stats=stats)
    _answered_once(records, n)
    (worker, death_s), = stats["deaths"]
    assert worker == "F1" and death_s >= arrivals[30]
    assert not [r for r in records if r["instance"] == "F1" and r["sent_s"] > death_s]  # no routing there
    lost = [r for r in records if r["lost"]]
    assert 29 in {r["query"] for r in lost} and all(r["instance"] == "F1" for r in lost)
    for r in lost:
        assert r["outcome"] == "reconstructed" and r["recovered_by"] == "parity", r
        assert r["answered_s"] - death_s < 0.1
    return records, death_s


def test_scheduled_kill_is_found_by_the_pipe_and_recovered_by_parity(fresh, linear_ir):
    _kill_f1_and_recover(fresh)


def test_decoder_path_matches_offline_evaluation(transport, linear_ir):
    model, _ = linear_ir
    n = 40
    images, labels = _queries(n, seed=2)
    delays = np.zeros(n)
    delays[[5, 12, 21]] = 0.5  # stragglers: one per group, far beyond the timing bound
    records = serving.serve(transport, "pm", serving.Deployment(["F0", "F1"], ["P0"]), images, labels,
                            serving.poisson_arrivals(100, n, seed=3), serving.FaultSchedule(delays),
                            k=2, timing_bound_s=0.05)
    _quiet(transport, 0.6)
    _answered_once(records, n)
    outputs = _offline(model, images)
    groups = torch.arange(n).view(-1, 2)
    parity = torch.from_numpy(_offline(model, coding.add_encode(torch.from_numpy(images)[groups]).numpy()))
    offline = coding.decode_each(parity, torch.from_numpy(outputs)[groups]).reshape(n, -1).argmax(-1)
    rebuilt = [r for r in records if r["outcome"] == "reconstructed"]
    # the stragglers, and queries queued behind them on the same instance, are rebuilt
    assert {5, 12, 21} <= {r["query"] for r in rebuilt}
    for r in rebuilt:
        assert r["predicted"] == offline[r["query"]].item() == outputs[r["query"]].argmax()


def test_both_members_unavailable_flake_uses_partners_pm_waits_for_one(transport, linear_ir):
    model, _ = linear_ir
    n = 40
    images, labels = _queries(n, seed=4)
    delays = np.zeros(n)
    delays[[20, 21]] = 0.5  # both members of group 10
    arrivals = serving.poisson_arrivals(100, n, seed=5)
    outputs = _offline(model, images)
    run = {}
    for method in ("flake", "pm"):
        run[method] = serving.serve(transport, method, serving.Deployment(["F0", "F1"], ["P0"]), images, labels,
                                    arrivals, serving.FaultSchedule(delays), timing_bound_s=0.05)
        _quiet(transport, 0.6)
        _answered_once(run[method], n)
    for q in (20, 21):  # Flake: a cache partner each, exact for a linear F, without waiting 500 ms
        r = run["flake"][q]
        assert r["outcome"] == "reconstructed" and r["recovered_by"] == "partner", r
        assert r["predicted"] == outputs[q].argmax()
        assert r["latency_ms"] < 400
    # PM (ParM): nothing to decode while both are missing; the first original in lets the other be rebuilt
    first, second = sorted((run["pm"][20], run["pm"][21]), key=lambda r: r["answered_s"])
    assert first["outcome"] == "original" and first["latency_ms"] >= 490
    assert second["outcome"] in ("original", "reconstructed")
    assert not [r for r in run["pm"] if r["recovered_by"] == "partner"]


class _OutsideKill:
    """The transport, plus a thread that SIGKILLs ``worker`` at run time ``at_s`` (timed from the
    run's first request, sent at ``first_s``); the frontend is not told."""

    def __init__(self, inner, worker, at_s, first_s):
        self.inner, self.worker, self.delay_s, self.timer = inner, worker, at_s - first_s, None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def send(self, worker, request_id, payload, delay_s=0.0):
        if self.timer is None:
            self.timer = threading.Timer(self.delay_s, os.kill, (self.inner.pid(self.worker), signal.SIGKILL))
            self.timer.start()
        self.inner.send(worker, request_id, payload, delay_s)


def test_outside_sigkill_is_detected_recovered_and_the_worker_restarted(fresh):
    """A thread SIGKILLs F1 while a straggler and the queries behind it wait there; no timing bound
    and 5 s deadlines, so only the detection of the death can act."""
    n, rate, kill_at, restart_delay = 300, 30.0, 1.0, 0.3
    images, labels = _queries(n, seed=10)
    arrivals = serving.poisson_arrivals(rate, n, seed=11)
    j = int(np.flatnonzero((arrivals > kill_at - 0.5) & (np.arange(n) % 2 == 1))[0])  # a query of F1
    assert arrivals[j] < kill_at - 0.1
    delays = np.zeros(n)
    delays[j] = 3.0
    for method, source in (("none", "F0"), ("srp", "R0")):
        stats, killer = {}, _OutsideKill(fresh, "F1", kill_at, float(arrivals[0]))
        records = serving.serve(killer, method, serving.Deployment(["F0", "F1"], backup=["R0"]), images, labels,
                                arrivals, serving.FaultSchedule(delays), timing_bound_s=None, deadline_s=5.0,
                                restart_delay_s=restart_delay, stats=stats)
        killer.timer.join()
        _answered_once(records, n)
        assert len(stats["deaths"]) == 1, (method, stats["deaths"])
        (worker, death_s), = stats["deaths"]
        assert worker == "F1" and kill_at - 0.1 < death_s < kill_at + 1.0  # found promptly
        lost = [r for r in records if r["lost"]]
        assert j in {r["query"] for r in lost} and all(r["instance"] == "F1" for r in lost)
        for r in lost:  # none: sent again to F0; srp: the replica
            assert r["answered_by"] == source and r["answered_s"] - death_s < 0.3, r
            assert (r["outcome"], r["recovered_by"]) == (("original", "retry") if method == "none"
                                                          else ("replica", "replica"))
        # the restart: nothing routed to F1 while it is dead, F1 serves again after it
        (worker, ready_s), = stats["restarts"]
        assert worker == "F1" and ready_s >= death_s + restart_delay
        assert not [r for r in records if r["instance"] == "F1" and death_s < r["sent_s"] < ready_s]
        again = [r for r in records if r["instance"] == "F1" and r["sent_s"] > ready_s]
        assert again and all(r["outcome"] == "original" and r["answered_by"] == "F1" for r in again)


@pytest.mark.parametrize("method,parity,source", [("pm", ["P0"], "original"), ("pm", ["P0", "P1"], "P1"),
                                                  ("flake", ["P0"], "original"), ("flake", ["P0", "P1"], "P1")])
def test_stopped_parity_instance(transport, method, parity, source):
    """P0 is stopped (SIGSTOP) while stragglers need recovery: its parity requests miss their
    deadline; with another parity instance the straggler is rebuilt there, else it waits for its
    original (never for P0)."""
    n, delay = 100, 0.4
    images, labels = _queries(n, seed=12)
    delays = np.zeros(n)
    delays[[40, 61]] = delay
    records = serving.serve(transport, method, serving.Deployment(["F0", "F1"], parity), images, labels,
                            serving.poisson_arrivals(100, n, seed=13),
                            serving.FaultSchedule(delays, pauses=[("P0", 0.1, 3.0)]), timing_bound_s=0.05)
    _quiet(transport, delay + 0.1)
    counts = _answered_once(records, n)
    for q in (40, 61):
        r = records[q]
        if source == "original":
            assert r["outcome"] == "original" and r["latency_ms"] >= 1000 * delay - 10, r
        else:
            assert r["outcome"] == "reconstructed" and r["answered_by"] == source, r
            assert r["latency_ms"] < 1000 * delay - 100  # did not wait for the straggler
    if source == "original":
        assert set(counts) == {"original"}
    assert not [r for r in records if r["answered_by"] == "P0"]


def test_eager_decoding_answers_at_the_decode_not_at_a_bound(transport):
    n = 30
    images, labels = _queries(n, seed=14)
    delays = np.zeros(n)
    delays[11] = 0.4  # on F1; its partner 10 and the parity query are fast
    arrivals = serving.poisson_arrivals(100, n, seed=15)
    run = {}
    for bound in (None, 0.2):
        run[bound] = serving.serve(transport, "pm", serving.Deployment(["F0", "F1"], ["P0"]), images, labels,
                                   arrivals, serving.FaultSchedule(delays), timing_bound_s=bound)
        _quiet(transport, 0.5)
        _answered_once(run[bound], n)
    eager, bounded = run[None][11], run[0.2][11]
    assert eager["outcome"] == bounded["outcome"] == "reconstructed"
    assert not eager["unavailable"] and bounded["unavailable"]  # eager: decoded before any deadline
    assert eager["latency_ms"] < 150 <= 200 <= bounded["latency_ms"]


def test_recovery_budget_caps_recovery_requests(transport):
    """F1 stopped for 0.5 s: about 25 queries need the replica. With ``max_queue=2`` the replica
    never holds more than 2 requests; with a bucket of 5/s at most its capacity + 5/s × run time are sent."""

    class Spy:
        def __init__(self, inner):
            self.inner, self.outstanding, self.peak = inner, Counter(), Counter()

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def send(self, worker, request_id, payload, delay_s=0.0):
            self.outstanding[worker] += 1
            self.peak[worker] = max(self.peak[worker], self.outstanding[worker])
            self.inner.send(worker, request_id, payload, delay_s)

        def receive(self, timeout):
            message = self.inner.receive(timeout)
            if isinstance(message, serving.Response):
                self.outstanding[message.worker] -= 1
            return message

    n = 100
    images, labels = _queries(n, seed=16)
    arrivals = serving.poisson_arrivals(100, n, seed=17)
    faults = serving.FaultSchedule(np.zeros(n), pauses=[("F1", 0.1, 0.6)])
    spy, stats = Spy(transport), {}
    records = serving.serve(spy, "srp", serving.Deployment(["F0", "F1"], backup=["S0"]), images, labels,
                            arrivals, faults, timing_bound_s=0.02, deadline_s={"replica": 1.0}, stats=stats,
                            recovery=serving.RecoveryBudget(max_queue=2, max_utilisation=None))
    _quiet(transport, PAD_S + 0.1)
    counts = _answered_once(records, n)
    unavailable = sum(r["unavailable"] for r in records)
    assert unavailable >= 15 and set(counts) <= {"original", "replica"}
    assert spy.peak["S0"] <= 2
    assert stats["recovery_replica"] < unavailable and stats["recovery_dropped"] > 0
    assert stats["recovery_deferred"] > 0
    # device emulation: S0 is busy PAD_S per request while computing for a small part of it
    assert stats["busy_s"]["S0"] >= 0.95 * PAD_S * stats["responses"]["S0"] > 0
    assert stats["compute_s"]["S0"] < 0.5 * stats["busy_s"]["S0"]

    # sized from the recovering instance: a (stated) 0.1 s service time at most half busy admits 5 per second,
    # beyond a window of 0.4 s of such work (2 requests)
    stats = {}
    budget = serving.RecoveryBudget(max_utilisation=0.5, window_s=0.4, service_s={"R0": 0.1})
    assert budget.rate("R0") == 5.0 and budget.capacity("R0") == 2.0 and budget.rate("F0") is None
    records = serving.serve(transport, "srp", serving.Deployment(["F0", "F1"], backup=["R0"]), images, labels,
                            arrivals, faults, timing_bound_s=0.02, stats=stats, recovery=budget)
    _answered_once(records, n)
    assert 1 <= stats["recovery_replica"] <= budget.capacity("R0") + 5.0 * stats["wall_s"] + 1
    assert stats["recovery_deferred"] > 0 and stats["admission_wait_max_ms"] > 0


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


def test_paused_instance_is_covered_by_the_replica(transport):
    n = 60
    images, labels = _queries(n, seed=8)
    arrivals = serving.poisson_arrivals(100, n, seed=9)
    pause = (float(arrivals[10]), float(arrivals[10]) + 0.3)
    records = serving.serve(transport, "srp", serving.Deployment(["F0", "F1"], backup=["R0"]), images, labels,
                            arrivals, serving.FaultSchedule(np.zeros(n), pauses=[("F1", *pause)]),
                            timing_bound_s=0.03)
    _answered_once(records, n)
    during = [r for r in records if r["instance"] == "F1" and pause[0] <= r["intended_s"] < pause[1] - 0.05]
    assert during and all(r["outcome"] == "replica" for r in during)
    assert all(r["latency_ms"] < 250 for r in during)  # answered by the replica, not after the pause
    assert Counter(r["outcome"] for r in records).keys() <= {"original", "replica"}


def test_run_exits_after_a_kill_with_a_full_inbox(linear_ir, tmp_path):
    """F0 is stopped, its inbox pipe filled past capacity, then killed; the run goes on and the
    interpreter exits without an explicit close. Fails if the process has not exited in 60 s."""
    _, path = linear_ir
    script = tmp_path / "full_inbox.py"
    script.write_text(textwrap.dedent(f"""
        import json
        import numpy as np
        from flake_lib import serving

        if __name__ == "__main__":
            t = serving.ProcessTransport()
            t.start([serving.WorkerSpec(name, {path!r}) for name in ("F0", "F1")])
            rng = np.random.default_rng(0)
            images = rng.standard_normal((60, 3, 32, 32)).astype(np.float32)
            t.pause("F0")
            for i in range(40):
                t.send("F0", -1 - i, images[i][None])
            waiting = len(t.outgoing["F0"])  # bytes the full pipe could not take
            n = 60
            arrivals = serving.poisson_arrivals(100, n, seed=1)
            faults = serving.FaultSchedule(np.zeros(n), kills=[("F0", float(arrivals[20]))])
            records = serving.serve(t, "none", serving.Deployment(["F0", "F1"]), images, np.zeros(n, int),
                                    arrivals, faults, timing_bound_s=0.05, restart_delay_s=None)
            print(json.dumps({{"waiting": waiting, "outcomes": [r["outcome"] for r in records]}}))
        """))
    try:
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    except subprocess.TimeoutExpired:
        pytest.fail("the run did not exit within 60 s after a kill with a full inbox")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["waiting"] > 0
    assert len(result["outcomes"]) == 60 and "failed" not in result["outcomes"]


def test_latency_summary_by_hand():
    from flake_lib.stats import tail_summary

    stats = tail_summary([1.0, 2.0, 3.0, 10.0])
    assert stats["median_ms"] == 2.0 and stats["max_ms"] == 10.0 and stats["gmm_ms"] == 8.0
    failed = tail_summary([1.0, 2.0, 3.0, 10.0, None])  # a failed query counts as +inf
    assert failed["median_ms"] == 3.0 and failed["max_ms"] == np.inf and failed["n_failed"] == 1
    with pytest.raises(ValueError):
        serving.poisson_arrivals(0, 5)
    arrivals = serving.poisson_arrivals(200, 20000, seed=0)
    assert np.all(np.diff(arrivals) > 0) and abs(20000 / arrivals[-1] - 200) < 10


def _approxifer_offline(model, images, k, n_workers, kept=None):
    """ApproxIFER done offline: each group of k encoded into n_workers coded queries, F on each, decoded
    from the workers ``kept`` (all by default); the top class of every query."""
    from flake_lib import approxifer

    predicted = []
    for start in range(0, len(images), k):
        coded = approxifer.encode(images[start:start + k], n_workers)
        results = _offline(model, coded)
        use = np.arange(n_workers) if kept is None else np.asarray(kept)
        predicted += list(approxifer.decode(results[use], use, k, n_workers).argmax(-1))
    return np.asarray(predicted)


def test_approxifer_decodes_every_group_as_offline_and_from_k_results_around_a_straggler(transport, linear_ir):
    model, _ = linear_ir
    n = 40
    images, labels = _queries(n, seed=5)
    delays = np.zeros(n)
    delays[7] = 0.5  # member 1 of group 3: its coded query on F1 straggles far beyond the bound
    records = serving.serve(transport, "approxifer", serving.Deployment(["F0", "F1"], ["R0"]), images, labels,
                            serving.poisson_arrivals(100, n, seed=6), serving.FaultSchedule(delays),
                            k=2, timing_bound_s=0.05)
    _quiet(transport, 0.6)
    counts = _answered_once(records, n)
    assert counts["original"] == 0  # not systematic: no query is answered by F alone
    full, without_f1 = _approxifer_offline(model, images, 2, 3), _approxifer_offline(model, images, 2, 3, kept=[0, 2])
    for r in records:
        if r["group"] < 3:  # before the straggler: all three results in, within the bound
            assert r["outcome"] == "decoded" and r["predicted"] == full[r["query"]], r
        elif r["outcome"] == "reconstructed":  # F1's queue is behind the straggler: decoded from F0 and R0
            assert r["recovered_by"] == "coded" and r["predicted"] == without_f1[r["query"]], r
            assert r["latency_ms"] < 400  # did not wait for the 500 ms straggler
        else:
            assert r["outcome"] == "decoded" and r["predicted"] == full[r["query"]], r
    assert all(r["outcome"] == "reconstructed" for r in records if r["group"] == 3)


def test_approxifer_eager_answers_from_the_first_k_results(transport, linear_ir):
    n = 20
    images, labels = _queries(n, seed=7)
    delays = np.zeros(n)
    delays[4] = 0.3
    records = serving.serve(transport, "approxifer", serving.Deployment(["F0", "F1"], ["R0"]), images, labels,
                            serving.poisson_arrivals(100, n, seed=8), serving.FaultSchedule(delays),
                            k=2, timing_bound_s=None)
    _quiet(transport, 0.4)
    _answered_once(records, n)
    group2 = [r for r in records if r["group"] == 2]
    assert all(r["outcome"] == "reconstructed" and r["latency_ms"] < 250 for r in group2), group2


def test_approxifer_survives_a_killed_instance(fresh, linear_ir):
    n = 60
    images, labels = _queries(n, seed=9)
    arrivals = serving.poisson_arrivals(200, n, seed=10)
    delays = np.zeros(n)
    delays[21] = 1.0  # outstanding on F1 when it is killed
    stats = {}
    records = serving.serve(fresh, "approxifer", serving.Deployment(["F0", "F1"], ["R0"]), images, labels,
                            arrivals, serving.FaultSchedule(delays, kills=[("F1", float(arrivals[22]))]),
                            timing_bound_s=0.2, restart_delay_s=None, stats=stats)
    _answered_once(records, n)
    assert [w for w, _ in stats["deaths"]] == ["F1"]
    after = [r for r in records if r["intended_s"] > stats["deaths"][0][1] + 0.01]
    assert after and all(r["outcome"] == "reconstructed" for r in after)  # F0 and R0 still decode every group


def test_a_cpu_quota_below_the_cpu_set_pins_to_as_many_cpus(tmp_path):
    from flake_lib.serving import pinning

    (tmp_path / "cpu.max").write_text("200000 100000\n")
    assert pinning.cpu_quota(tmp_path) == 2.0
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert pinning.cpu_quota(tmp_path) is None
    before = pinning.current()
    try:
        if len(before) >= 2:
            assert pinning.fit_to_quota(1.0) == before[:1] == pinning.current()
        assert pinning.fit_to_quota(float(len(pinning.current()))) == pinning.current()
    finally:
        pinning.pin(before)
