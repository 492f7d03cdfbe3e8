"""Each claim's rule on hand-made metrics files: one case that passes, one that fails, one with a
missing file; and REPORT.md's header against provenance.json."""

import json
from pathlib import Path

import pandas as pd
import pytest

from flake_lib import claims, report

REPO = Path(__file__).resolve().parents[1]
N = 10_000  # test images


def _json(folder: Path, relative: str, record: dict) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return folder


def _accuracy(folder: Path, *, pm=0.75, a_a=0.80, flake=0.74, nkd=0.69, flake_flops=40, pm_flops=100,
              dataset="cifar10") -> Path:
    base = {"experiment": "e", "dataset": dataset, "test_images": N, "available_top1": a_a}
    _json(folder, "accuracy/pm.json", {"dataset": dataset, "rows": [
        {**base, "k": 2, "encoder": "addition", "targets": "augmented", "model": "resnet14",
         "flops": pm_flops, "degraded_top1": pm, "degraded_top5": 0.95},
        {**base, "k": 2, "encoder": "addition", "targets": "clean", "flops": pm_flops, "degraded_top1": 0.1}]})
    _json(folder, "accuracy/srp.json", {"dataset": dataset, "rows": [
        {**base, "model": "resnet14", "flops": pm_flops, "degraded_top1": a_a, "degraded_top5": 0.99}]})
    _json(folder, "accuracy/flake.json", {"dataset": dataset, "rows": [
        {**base, "k": 2, "encoder": "addition", "terms": "L_task + L_KD + L_Inter", "flops": flake_flops,
         "model": "resnet14 keeping [1, 1, 1] blocks/stage", "degraded_top1": flake, "degraded_top5": 0.9},
        {**base, "k": 2, "encoder": "addition", "terms": "L_task + L_KD + L_Inter", "variant": "tuned",
         "flops": 99, "degraded_top1": 0.0}]})  # this artifact's variant: never judged as the paper's
    _json(folder, "accuracy/nkd.json", {"dataset": dataset, "rows": [
        {**base, "terms": "NKD", "flops": flake_flops, "degraded_top1": nkd, "degraded_top5": 0.95}]})
    return folder


# ----------------------------------------------------------------------------- E0, E1

def _primer(folder, linear, naive):
    return _json(folder, "primer/summary.json", {
        "linear": [{"k": k, "relative error": linear} for k in (2, 3, 4)],
        "naive_reconstruction_k2": [{"F": "linear", "relative error": linear},
                                    {"F": "CNN", "relative error": naive}]})


def test_e0(tmp_path):
    assert claims.e0_code(_primer(tmp_path / "a", 1e-6, 0.6)).verdict == "reproduced"
    assert claims.e0_code(_primer(tmp_path / "b", 1e-2, 1e-6)).verdict == "not"
    partly = claims.e0_code(_primer(tmp_path / "c", 1e-6, 1e-6))
    assert partly.verdict == "partly" and "holds: exact for a linear F" in partly.why
    missing = claims.e0_code(tmp_path / "none")
    assert missing.verdict == "not run" and "primer/summary.json" in missing.why and "notebook 00" in missing.why


def _trace(folder, mean, p5, p95):
    return _json(folder, "trace/summary.json", {
        "n_tasks": 1021, "share_of_tasks_for_80pct_time": 0.16, "share_all_dependent_tasks": 0.14,
        "n_dependent_tasks": 50000, "share_samples": {"n": 200, "mean": mean, "p5": p5, "p95": p95}})


def test_e1(tmp_path):
    ok = claims.e1_trace_share(_trace(tmp_path / "a", 0.13, 0.12, 0.14))
    assert ok.verdict == "reproduced" and "mean 13.00%" in ok.ours and "12.00%–14.00%" in ok.ours
    assert "16.00" not in ok.ours  # the one seeded draw is not the headline
    assert claims.e1_trace_share(_trace(tmp_path / "b", 0.35, 0.30, 0.40)).verdict == "not"
    partly = claims.e1_trace_share(_trace(tmp_path / "c", 0.1437, 0.1283, 0.1577))
    assert partly.verdict == "partly" and "below our 5th percentile" in partly.why
    missing = claims.e1_trace_share(tmp_path / "none")
    assert missing.verdict == "not run" and "trace/summary.json" in missing.why and "notebook 01" in missing.why


# ----------------------------------------------------------------------------- E2, E3

def test_e2(tmp_path):
    # the decision point: ParM's published gap (6.1 points) plus the 3-point tolerance
    assert claims.e2_parity_model(_accuracy(tmp_path / "a", pm=0.79, a_a=0.80)).verdict == "reproduced"
    assert claims.e2_parity_model(_accuracy(tmp_path / "b", pm=0.15, a_a=0.80)).verdict == "not"
    far = claims.e2_parity_model(_accuracy(tmp_path / "c", pm=0.57, a_a=0.81))
    assert far.verdict == "not" and "lies above 9.1 points" in far.why and "ParM's" in far.differs
    assert far.effects[0]["paper"] == pytest.approx(1.54) and far.effects[0]["value"] == pytest.approx(24.0)
    assert claims.e2_parity_model(_accuracy(tmp_path / "d", pm=0.71, a_a=0.80)).verdict == "inconclusive"
    # an F at chance level: a small gap proves nothing
    assert claims.e2_parity_model(_accuracy(tmp_path / "e", pm=0.11, a_a=0.11)).verdict == "not"
    missing = claims.e2_parity_model(tmp_path / "none")
    assert missing.verdict == "not run" and "accuracy/pm.json" in missing.why and "notebook 02" in missing.why


def test_e3a(tmp_path):
    assert claims.e3a_compression(_accuracy(tmp_path / "a", flake_flops=46)).verdict == "reproduced"
    assert claims.e3a_compression(_accuracy(tmp_path / "b", flake_flops=60)).verdict == "not"
    folder = _accuracy(tmp_path / "c")
    (folder / "accuracy" / "flake.json").unlink()
    missing = claims.e3a_compression(folder)
    assert missing.verdict == "not run" and "accuracy/flake.json" in missing.why and "notebook 03" in missing.why


def test_e3b(tmp_path):
    assert claims.e3b_accuracy_kept(_accuracy(tmp_path / "a", pm=0.75, flake=0.74)).verdict == "reproduced"
    assert claims.e3b_accuracy_kept(_accuracy(tmp_path / "b", pm=0.57, flake=0.50)).verdict == "not"
    assert claims.e3b_accuracy_kept(_accuracy(tmp_path / "c", pm=0.75, flake=0.72)).verdict == "inconclusive"
    folder = _accuracy(tmp_path / "d")
    (folder / "accuracy" / "pm.json").unlink()
    assert "accuracy/pm.json" in claims.e3b_accuracy_kept(folder).why


def test_e3c(tmp_path):
    ok = claims.e3c_flake_above_nkd(_accuracy(tmp_path / "a", flake=0.75, nkd=0.69))
    assert ok.verdict == "reproduced" and "superposition" in ok.why
    assert claims.e3c_flake_above_nkd(_accuracy(tmp_path / "b", flake=0.50, nkd=0.76)).verdict == "not"
    assert claims.e3c_flake_above_nkd(_accuracy(tmp_path / "c", flake=0.70, nkd=0.70)).verdict == "inconclusive"
    folder = _accuracy(tmp_path / "d")
    (folder / "accuracy" / "nkd.json").unlink()
    missing = claims.e3c_flake_above_nkd(folder)
    assert missing.verdict == "not run" and "accuracy/nkd.json" in missing.why


def _ablation(folder, seed, kd, inter, leave=None):
    """Add-one-in arms with the given effects; with ``leave`` (the full objective's A_d), the leave-one-out
    arms too, placed so that each term's leave-one-out effect is the same as its add-one-in effect."""
    arms = [("L_task", 0.50), ("L_task + L_KD", 0.50 + kd), ("L_task + L_Inter", 0.50 + inter)]
    if leave is not None:
        arms = [("L_task", 0.50), ("L_task + L_KD + L_Inter", leave), ("L_task + L_KD", leave - inter),
                ("L_task + L_Inter", leave - kd), ("L_KD + L_Inter", leave - 0.1)]
    rows = [{"experiment": "e", "encoder": "addition", "terms": terms, "degraded_top1": top1} for terms, top1 in arms]
    rows.append({"experiment": "e", "encoder": None, "terms": "NKD", "degraded_top1": 0.7})
    _json(folder, "accuracy/ablation.json", {"rows": rows})
    return _json(folder, "provenance.json", {"seed": seed})


def test_e3d_on_leave_one_out_with_a_t_interval(tmp_path):
    for seed, (kd, inter) in enumerate([(0.010, 0.012), (0.012, 0.010), (0.011, 0.011)]):
        _ablation(tmp_path / "a" / ("quick" if seed == 0 else f"quick-seed{seed}"), seed, kd, inter, leave=0.55)
    ok = claims.e3d_loss_terms(tmp_path / "a" / "quick")
    assert ok.verdict == "reproduced" and "leave-one-out" in ok.ours and "t interval" in ok.ours
    assert "sign test p = 0.25" in ok.ours and "L_task (e, addition, leave-one-out)" in ok.ours
    for seed, (kd, inter) in enumerate([(0.010, -0.012), (0.012, -0.010), (0.011, -0.011)]):
        _ablation(tmp_path / "b" / ("quick" if seed == 0 else f"quick-seed{seed}"), seed, kd, inter, leave=0.55)
    partly = claims.e3d_loss_terms(tmp_path / "b" / "quick")
    assert partly.verdict == "partly" and "L_KD (e, addition, leave-one-out)" in partly.why.split(" — ")[0]
    assert "L_Inter" not in partly.why.split(" — ")[0]


def test_e3d(tmp_path):
    for seed, (kd, inter) in enumerate([(0.010, 0.012), (0.012, 0.010), (0.011, 0.011)]):
        _ablation(tmp_path / "a" / ("quick" if seed == 0 else f"quick-seed{seed}"), seed, kd, inter)
    assert claims.e3d_loss_terms(tmp_path / "a" / "quick").verdict == "reproduced"
    for seed in range(3):
        _ablation(tmp_path / "b" / ("quick" if seed == 0 else f"quick-seed{seed}"), seed, -0.01 - seed / 1000, -0.02)
    assert claims.e3d_loss_terms(tmp_path / "b" / "quick").verdict == "not"
    _ablation(tmp_path / "c" / "quick", 0, 0.0043, 0.0011)
    _ablation(tmp_path / "c" / "quick-seed1", 1, 0.0025, -0.0045)
    few = claims.e3d_loss_terms(tmp_path / "c" / "quick")
    assert few.verdict == "inconclusive" and "seed 0: +0.43" in few.ours and "seed 1: -0.45" in few.ours
    missing = claims.e3d_loss_terms(tmp_path / "none")
    assert missing.verdict == "not run" and "accuracy/ablation.json" in missing.why


# ----------------------------------------------------------------------------- E4

def _table1(folder: Path, gpm: dict, gmm: dict, repeats: int = 5, events: int = 30, acted_idle: bool = False,
            legacy: bool = False) -> Path:
    """One row per method and repeat (each value plus a small per-repeat jitter) in the judged block (R1,
    emulated, round robin), with decoy rows (noise floor, native mode, R2, single queue) whose values would
    reverse every order if they were read. ``legacy``: a file from before regimes (native rows judged)."""
    rows = []
    for r in range(repeats):
        for method, value in gpm.items():
            jitter = 0.1 * ((r * 7 + len(method)) % 3 - 1)
            row = {"method": method, "repeat": r, "qps": 200.0, "n_queries": 10_000, "median_ms": 3.0,
                   "p999_ms": 3.0 + value, "gpm_ms": value + jitter, "gmm_ms": gmm[method] + jitter,
                   "n_failed": 0, "accuracy": 0.8}
            flipped = {"gpm_ms": -row["gpm_ms"], "gmm_ms": -row["gmm_ms"]}
            if legacy:
                rows.append({**row, "mode": "native", "faults": "injected"})
                rows.append({**row, "mode": "native", "faults": "none", **flipped})
                rows.append({**row, "mode": "emulated", "faults": "injected", **flipped})
                continue
            judged = {"regime": "R1", "mode": "emulated", "dispatch": "round_robin", "faults": "injected",
                      "n_over_bound": events // repeats + 1, "admission_acted_idle": acted_idle and method == "srp"}
            rows.append({**row, **judged})
            for decoy in ({"faults": "none"}, {"mode": "native"}, {"regime": "R2"}, {"dispatch": "single_queue"}):
                rows.append({**row, **judged, **decoy, **flipped})
    (folder / "latency").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "latency" / "table1.csv", index=False)
    return folder


PAPER_GPM = {"flake": 4, "pm": 9, "srp": 17, "nkd": 5}
PAPER_GMM = {"flake": 16, "pm": 22, "srp": 26, "nkd": 15}
REVERSED = {"flake": 17, "pm": 9, "srp": 4, "nkd": 5}


@pytest.mark.parametrize("function, statistic", [(claims.e4a_gpm_order, "gpm"), (claims.e4b_gmm_order, "gmm")])
def test_e4ab_orders(tmp_path, function, statistic):
    def folder(name, values, repeats=5):
        other = PAPER_GMM if statistic == "gpm" else PAPER_GPM
        gpm, gmm = (values, other) if statistic == "gpm" else (other, values)
        return _table1(tmp_path / name, gpm, gmm, repeats)

    assert function(folder("a", PAPER_GPM)).verdict == "reproduced"
    assert function(folder("b", REVERSED)).verdict == "not"
    partly = function(folder("c", {"flake": 4, "pm": 9, "srp": 9, "nkd": 5}))
    assert partly.verdict == "partly" and "holds: Flake < PM" in partly.why
    two = function(folder("d", PAPER_GPM, repeats=2))
    assert two.verdict == "inconclusive" and "no interval" in two.ours
    missing = function(tmp_path / "none")
    assert missing.verdict == "not run" and "latency/table1.csv" in missing.why and "notebook 04" in missing.why


def test_e4a_is_inconclusive_when_the_harness_decided_or_events_were_few(tmp_path):
    acted = claims.e4a_gpm_order(_table1(tmp_path / "a", PAPER_GPM, PAPER_GMM, acted_idle=True))
    assert acted.verdict == "inconclusive" and "under 10 % busy" in acted.why
    few = claims.e4a_gpm_order(_table1(tmp_path / "b", PAPER_GPM, PAPER_GMM, events=10))
    assert few.verdict == "inconclusive" and "fewer than 20 fault events" in few.why


def test_e4a_reads_an_older_table1_without_regimes_mode_and_faults(tmp_path):
    _table1(tmp_path, PAPER_GPM, PAPER_GMM, legacy=True)
    assert claims.e4a_gpm_order(tmp_path).verdict == "reproduced"
    table = pd.read_csv(tmp_path / "latency" / "table1.csv")
    table = table[(table["faults"] == "injected") & (table["mode"] == "native")].drop(columns=["mode", "faults"])
    table.to_csv(tmp_path / "latency" / "table1.csv", index=False)
    assert claims.e4a_gpm_order(tmp_path).verdict == "reproduced"


def test_e4c_ratios(tmp_path):
    more = {"flake": 4, "pm": 10, "srp": 18, "nkd": 5}  # cuts at least as deep as the paper's
    ok = claims.e4c_paper_ratios(_table1(tmp_path / "a", more, {"flake": 10, "pm": 22, "srp": 26, "nkd": 15}))
    assert ok.verdict == "reproduced" and "GMM SRP/Flake (largest) 2.60" in ok.ours
    equal = {"flake": 9, "pm": 9, "srp": 9, "nkd": 9}
    assert claims.e4c_paper_ratios(_table1(tmp_path / "b", equal, equal)).verdict == "not"
    deeper = claims.e4c_paper_ratios(_table1(tmp_path / "c", {"flake": 1, "pm": 9, "srp": 17, "nkd": 5},
                                             {"flake": 10, "pm": 22, "srp": 26, "nkd": 15}))
    assert deeper.verdict == "partly" and "outside the band [1.50, 3.38]" in deeper.why  # a far larger cut
    assert "holds: GMM SRP/Flake" in deeper.why
    missing = claims.e4c_paper_ratios(tmp_path / "none")
    assert missing.verdict == "not run" and "latency/table1.csv" in missing.why


def _fig6(folder: Path, flake: list, nkd: list, repeats: int = 3) -> Path:
    rows = []
    for r in range(repeats):
        for method, medians in (("flake", flake), ("nkd", nkd)):
            for m, median in enumerate(medians, 1):
                for instances in (1, 2):
                    value = median + 0.1 * r if instances == 1 else 1000.0 * m  # decoy: 2 instances
                    rows.append({"method": method, "n_unavailable": m, "instances": instances, "repeat": r,
                                 "n": 10 * m, "n_recovered": 10 * m, "median_ms": value, "p99_ms": value,
                                 "max_ms": value, "recovered_by": "reconstructed:1"})
    (folder / "latency").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "latency" / "fig6.csv", index=False)
    return folder


def test_e4d_fig6(tmp_path):
    flat, grows = [10, 10.2, 10.1, 10.3, 10.2], [10, 20, 30, 40, 50]
    assert claims.e4d_fig6(_fig6(tmp_path / "a", flat, grows)).verdict == "reproduced"
    assert claims.e4d_fig6(_fig6(tmp_path / "b", grows, flat)).verdict == "not"
    partly = claims.e4d_fig6(_fig6(tmp_path / "c", flat, flat))
    assert partly.verdict == "partly" and "holds: Flake flat" in partly.why
    assert claims.e4d_fig6(_fig6(tmp_path / "d", flat, grows, repeats=2)).verdict == "inconclusive"
    missing = claims.e4d_fig6(tmp_path / "none")
    assert missing.verdict == "not run" and "latency/fig6.csv" in missing.why


def _capacity(folder: Path, ratio, low, high, censored=False) -> Path:
    def method(qps):
        return {"capacity_qps": None if censored else qps, "censored": censored,
                "bracket_qps": [400.0, None] if censored else [qps, qps * 1.1], "levels_tried": [200, 400]}
    mode = {"methods": {"pm": method(300.0), "flake": method(300.0 * ratio)},
            "flake_over_pm": {"ratio": None if censored else ratio, "low": None if censored else low,
                              "high": None if censored else high, "note": "censored" if censored else ""}}
    return _json(folder, "latency/capacity.json", {"objective": {"statistic": "p999_ms", "bound_ms": 50.0},
                                                   "modes": {"native": mode, "emulated": mode}})


def test_e4e_capacity_from_repeats(tmp_path):
    from flake_lib.latency import capacity

    def record(per_repeat):
        return {"per_repeat": per_repeat, "capacity_qps": sorted(per_repeat)[1], "low": min(per_repeat),
                "high": max(per_repeat), "censored": False, "non_monotone": [], "levels": [300.0, 400.0, 500.0],
                "repeats": len(per_repeat)}

    def folder(name, flake, pm):
        caps = {"flake": record(flake), "pm": record(pm)}
        return _json(tmp_path / name, "latency/capacity.json", {
            "objective": {"statistic": "p999_ms", "bound_ms": 50.0},
            "modes": {"emulated": {"methods": caps,
                                   "flake_over_pm": capacity.repeats_ratio(caps["flake"], caps["pm"])}}})

    assert claims.e4e_capacity(folder("a", [500.0, 500.0, 450.0], [300.0, 300.0, 320.0])).verdict == "supported"
    noisy = claims.e4e_capacity(folder("b", [500.0, 300.0, 400.0], [300.0, 500.0, 400.0]))
    assert noisy.verdict == "inconclusive" and "3 repeats" in noisy.why
    two = claims.e4e_capacity(folder("c", [500.0, 500.0], [300.0, 300.0]))
    assert two.verdict == "inconclusive" and "fewer than 3" in two.why


def test_e4e_capacity(tmp_path):
    ok = claims.e4e_capacity(_capacity(tmp_path / "a", 1.5, 1.3, 1.7))
    assert ok.verdict == "supported" and ok.origin == "this artifact" and "p999_ms ≤ 50.0 ms" in ok.claim
    assert claims.e4e_capacity(_capacity(tmp_path / "b", 0.8, 0.7, 0.9)).verdict == "not supported"
    censored = claims.e4e_capacity(_capacity(tmp_path / "c", 1.0, 1.0, 1.0, censored=True))
    assert censored.verdict == "inconclusive" and "≥ 400" in censored.ours
    missing = claims.e4e_capacity(tmp_path / "none")
    assert missing.verdict == "not run" and "latency/capacity.json" in missing.why


# ----------------------------------------------------------------------------- E5

def test_e5_rows_on_the_gap_to_f(tmp_path):
    # the paper: Flake 1.37 points below its SRP (F), PM 1.54 below; ours judged on our gap to our F (a_a)
    folder = _accuracy(tmp_path / "a", flake=0.6863, pm=0.50, a_a=0.70)
    assert claims.e5_table2_row(folder, "flake", "cifar10").verdict == "reproduced"
    assert claims.e5_table2_row(folder, "pm", "cifar10").verdict == "not"
    reference = claims.e5_table2_row(folder, "srp", "cifar10")
    assert reference.verdict == "reference" and "normally exceeds 93" in reference.differs
    close = claims.e5_table2_row(_accuracy(tmp_path / "b", flake=0.6563, a_a=0.70), "flake", "cifar10")
    assert close.verdict == "inconclusive"
    no_dataset = claims.e5_table2_row(folder, "flake", "cifar100")
    assert no_dataset.verdict == "not run" and "no cifar100 experiment" in no_dataset.why
    missing = claims.e5_table2_row(tmp_path / "none", "nkd", "cifar10")
    assert missing.verdict == "not run" and "accuracy/nkd.json" in missing.why and "notebook 03" in missing.why


# ----------------------------------------------------------------------------- every claim, the report

def test_every_claim_states_its_rule_and_runs_on_an_empty_folder(tmp_path):
    verdicts = claims.all_claims(tmp_path)
    assert [v.id for v in verdicts][:12] == ["E0", "E1", "E2", "E3a", "E3b", "E3c", "E3d",
                                             "E4a", "E4b", "E4c", "E4d", "E4e"]
    assert len(verdicts) == 12 + 8 + 4 and all(v.verdict == "not run" for v in verdicts)
    assert all(v.rule and "notebook" in v.why for v in verdicts)


def test_claims_loop_over_every_experiment(tmp_path):
    folder = _accuracy(tmp_path, flake_flops=40)
    record = json.loads((folder / "accuracy" / "flake.json").read_text())
    record["rows"].append({**record["rows"][0], "experiment": "second", "flops": 90})
    (folder / "accuracy" / "flake.json").write_text(json.dumps(record))
    pm = json.loads((folder / "accuracy" / "pm.json").read_text())
    pm["rows"].append({**pm["rows"][0], "experiment": "second"})
    (folder / "accuracy" / "pm.json").write_text(json.dumps(pm))
    verdict = claims.e3a_compression(folder)
    assert verdict.verdict == "partly" and "holds: e, k = 2 addition" in verdict.why and "second" in verdict.why


def _provenance(folder: Path) -> dict:
    prov = {"git_commit": "0123456789abcdef", "git_dirty": True, "profile": "quick", "seed": 7,
            "cpu": "Test CPU", "devices": ["CPU: Test CPU"], "packages": {"torch": "9.9"},
            "machine": {"cpu_count": 2, "os": "TestOS", "python": "3.11.7", "torch_threads": 2, "cuda": None},
            "data_source": {"mirror": "../shared/data", "cifar10-resnet:train": "mirror:cifar10-jpeg.zip"},
            "parameters": {"experiments": {"cifar10-resnet": {"dataset": "cifar10", "deployed_arch": "resnet14",
                                                              "student_keep": [1, 1, 1]}},
                           "deployed_epochs": 7, "parity_epochs": 3, "distill_epochs": 3, "nkd_epochs": 3},
            "chain_seconds": {"00-coded-computation-primer": 12.5, "04-latency-benchmark": 600.0},
            "chain_commits": {"00-coded-computation-primer": {"git_commit": "aaa", "git_dirty": False},
                              "04-latency-benchmark": {"git_commit": "bbb", "git_dirty": True}}}
    _json(folder, "provenance.json", prov)
    return prov


def _header_rows(text: str) -> dict:
    return {cells[0]: cells[1:] for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in text.split("## ")[0].splitlines()
             if line.startswith("| ") and not line.startswith("| ---"))}


def test_report_header_equals_provenance(tmp_path):
    prov = _provenance(tmp_path)
    rows = _header_rows(report.build_report(tmp_path).split("## This run", 1)[1])
    assert rows["commit"] == ["`0123456789abcdef`, uncommitted changes: yes"]
    assert rows["profile, seed"] == ["`quick`, seed 7"]
    assert rows["machine"][0].startswith("Test CPU, 2 cores, TestOS")
    assert rows["OpenVINO devices"] == ["CPU: Test CPU"]
    assert rows["data"] == ["../shared/data; mirror:cifar10-jpeg.zip"]
    for name, seconds in prov["chain_seconds"].items():
        commit = prov["chain_commits"][name]
        assert rows[name] == [f"{seconds:.1f}", f"`{commit['git_commit']}`", "yes" if commit["git_dirty"] else "no"]
    assert rows["total"][0] == "612.5 (10.2 min)"


def test_report_names_models_and_deviations(tmp_path):
    _provenance(tmp_path)
    _accuracy(tmp_path)
    text = report.build_report(tmp_path)
    assert "ResNet-8 (ResNet-14 keeping 1 block per stage)" in text and "resnet14 keeping" not in text
    assert "(this artifact's `paper` profile) | F 7, PM 3, Flake 3, NKD 3 |" in text
    assert report.model_name("resnet152-cifar keeping [3, 4, 6, 3] blocks/stage").startswith("ResNet-50")
    for term in report.GLOSSARY:
        assert f"- **{term}**:" in text


def test_deviations_give_the_epochs_the_models_were_trained_with(tmp_path):
    """A partial rerun (say notebooks 04 and 05) rewrites the chain's parameters; the epochs shown are
    those notebooks 02 and 03 recorded when they trained the models."""
    prov = _provenance(tmp_path)
    prov["parameters"].update(deployed_epochs=10, parity_epochs=5)
    prov.setdefault("notebooks", {})["02-parity-training"] = {"parameters": {"deployed_epochs": 7, "parity_epochs": 3}}
    _json(tmp_path, "provenance.json", prov)
    _accuracy(tmp_path)
    text = report.build_report(tmp_path)
    assert "| F 7, PM 3, Flake 3, NKD 3 |" in text and "F 10" not in text


def test_table1_shows_each_repeat_until_there_are_more_than_three(tmp_path):
    _table1(tmp_path / "two", PAPER_GPM, PAPER_GMM, repeats=2)
    _table1(tmp_path / "five", PAPER_GPM, PAPER_GMM, repeats=5)
    two = "\n".join(report.table1_lines(tmp_path / "two"))
    five = "\n".join(report.table1_lines(tmp_path / "five"))
    assert "| Flake | 2 | 3.0, 3.0 |" in two and "Noise floor" in two and "Emulated devices" in two
    assert "| Flake | 5 | 3.0 (3.0–3.0) |" in five


def test_committed_report_header_equals_its_provenance():
    """No stale header: results/quick/REPORT.md opens with the header its provenance.json gives."""
    results = REPO / "results" / "quick"
    prov = json.loads((results / "provenance.json").read_text())
    assert "\n".join(report.header(prov)) in (results / "REPORT.md").read_text()


# ----------------------------------------------------------------------------- beyond the paper (X)

def _approxifer(folder, degraded, k=2, s=1):
    return _json(folder, "accuracy/approxifer.json", {"rows": [
        {"experiment": "e", "k": k, "s": s, "n": k + s, "degraded_top1": degraded, "full_top1": 0.8,
         "n_queries": N, "n_missing_sets": 3}]})


def test_x1(tmp_path):
    ok = claims.x1_approxifer_vs_pm(_approxifer(_accuracy(tmp_path / "a", pm=0.60), 0.70))
    assert ok.verdict == "supported" and ok.origin == "this artifact" and "ApproxIFER 70.00% vs PM 60.00%" in ok.ours
    assert claims.x1_approxifer_vs_pm(_approxifer(_accuracy(tmp_path / "b", pm=0.75), 0.50)).verdict == "not supported"
    assert claims.x1_approxifer_vs_pm(_approxifer(_accuracy(tmp_path / "c", pm=0.70), 0.702)).verdict == "inconclusive"
    other_code = claims.x1_approxifer_vs_pm(_approxifer(_accuracy(tmp_path / "d"), 0.9, k=4))
    assert other_code.verdict == "not run" and "K = 2, S = 1" in other_code.why
    missing = claims.x1_approxifer_vs_pm(_accuracy(tmp_path / "e"))
    assert missing.verdict == "not run" and "accuracy/approxifer.json" in missing.why and "notebook 06" in missing.why


def _int8(folder, pm_int8, flake_fp32, pm_ms, flake_ms):
    rows = [{"experiment": "e", "model": "PM", "precision": "INT8", "top1": pm_int8, "test_images": N},
            {"experiment": "e", "model": "Flake", "precision": "FP32", "top1": flake_fp32, "test_images": N}]
    rounds = [{"experiment": "e", "round": r, "model": m, "precision": p, "service_median_ms": ms + 0.01 * r}
              for r in range(len(pm_ms)) for m, p, ms in (("PM", "INT8", pm_ms[r]), ("Flake", "FP32", flake_ms[r]))]
    return _json(folder, "accuracy/int8.json", {"rows": rows, "service_rounds": rounds})


def test_x2(tmp_path):
    ok = claims.x2_int8_pm_accuracy(_int8(tmp_path / "a", 0.60, 0.58, [0.3] * 3, [0.4] * 3))
    assert ok.verdict == "supported" and ok.origin == "this artifact"
    below = claims.x2_int8_pm_accuracy(_int8(tmp_path / "b", 0.50, 0.58, [0.3] * 3, [0.4] * 3))
    assert below.verdict == "not supported"
    assert claims.x2_int8_pm_accuracy(_int8(tmp_path / "c", 0.55, 0.58, [0.3] * 3, [0.4] * 3)).verdict == "inconclusive"
    missing = claims.x2_int8_pm_accuracy(tmp_path / "none")
    assert missing.verdict == "not run" and "accuracy/int8.json" in missing.why


def test_x3(tmp_path):
    ok = claims.x3_int8_pm_speed(_int8(tmp_path / "a", 0.6, 0.6, [0.30, 0.31, 0.29], [0.40, 0.41, 0.42]))
    assert ok.verdict == "supported" and "-0.11 ms" in ok.why
    slower = claims.x3_int8_pm_speed(_int8(tmp_path / "b", 0.6, 0.6, [0.50, 0.52, 0.51], [0.40, 0.41, 0.42]))
    assert slower.verdict == "not supported"
    assert claims.x3_int8_pm_speed(_int8(tmp_path / "c", 0.6, 0.6, [0.30, 0.50, 0.40], [0.40, 0.40, 0.40])).verdict \
        == "inconclusive"
    two = claims.x3_int8_pm_speed(_int8(tmp_path / "d", 0.6, 0.6, [0.30, 0.31], [0.40, 0.41]))
    assert two.verdict == "inconclusive" and "no interval" in two.why
    assert claims.x3_int8_pm_speed(tmp_path / "none").verdict == "not run"


def _two_parity(folder, two_top1, approx_degraded, approx_s=2):
    _approxifer(folder, approx_degraded, k=4, s=approx_s)
    return _json(folder, "accuracy/two_parity.json", {"experiment": "e", "k": 4, "two_top1": two_top1, "n_two": N,
                                                       "condition": 4.27})


def test_x4(tmp_path):
    ok = claims.x4_two_parity_vs_approxifer(_two_parity(tmp_path / "a", 0.60, 0.50))
    assert ok.verdict == "supported" and ok.origin == "this artifact" and "condition number 4.27" in ok.ours
    assert claims.x4_two_parity_vs_approxifer(_two_parity(tmp_path / "b", 0.40, 0.50)).verdict == "not supported"
    assert claims.x4_two_parity_vs_approxifer(_two_parity(tmp_path / "c", 0.501, 0.50)).verdict == "inconclusive"
    other = claims.x4_two_parity_vs_approxifer(_two_parity(tmp_path / "d", 0.6, 0.5, approx_s=1))
    assert other.verdict == "not run" and "S = 2" in other.why
    missing = claims.x4_two_parity_vs_approxifer(_approxifer(tmp_path / "e", 0.5, k=4, s=2))
    assert missing.verdict == "not run" and "accuracy/two_parity.json" in missing.why
