"""The notebook chain under the smoke profile, executed as run_all.sh does, then its outputs checked."""

import json
import re

import pytest

from flake_lib import chain

SMOKE_CELL_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def smoke_results(mirror, tmp_path_factory):
    out = tmp_path_factory.mktemp("results") / "smoke"
    # no smoke cell takes more than ~2 min on a 2-core machine: a cell past 15 min is a hang, and the
    # chain's error then names the notebook and the cell instead of CI's time limit passing unexplained
    executed = chain.run_chain("smoke", mirror=str(mirror), results_root=out, progress=False,
                               cell_timeout_s=SMOKE_CELL_TIMEOUT_S)
    return out, executed


def test_chain_executes_every_notebook(smoke_results):
    out, executed = smoke_results
    assert [p.name for p in executed] == [nb.name for nb in chain.all_notebooks()]
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["profile"] == "smoke" and set(prov["chain_seconds"]) == {nb.stem for nb in chain.all_notebooks()}
    assert set(prov["chain_commits"]) == set(prov["chain_seconds"])
    assert prov["data_source"]["mirror"]


#: Stream outputs an executed notebook may hold: printed summaries, never a progress bar's refreshes (under
#: the chain the kernels draw no bars, flake_lib.progress, and a cell's streams are merged into one per
#: stream name, so a cell holds at most two). A progress bar left in would add hundreds.
MAX_STREAMS_PER_NOTEBOOK = 25


def test_executed_notebooks_hold_no_warnings_and_few_streams(smoke_results):
    _, executed = smoke_results
    for path in executed:
        cells = json.loads(path.read_text())["cells"]
        outputs = [o for c in cells for o in c.get("outputs", [])]
        streams = [o for o in outputs if o["output_type"] == "stream"]
        texts = ["".join(o["text"]) if isinstance(o["text"], list) else o["text"] for o in streams]
        warnings = [t for o, t in zip(streams, texts) if o["name"] == "stderr" and "Warning" in t]
        assert not warnings, f"{path.name} has a warning on stderr: {warnings[0][:400]}"
        assert len(streams) <= MAX_STREAMS_PER_NOTEBOOK, f"{path.name} has {len(streams)} stream outputs"
        for cell in cells:
            names = [o["name"] for o in cell.get("outputs", []) if o["output_type"] == "stream"]
            assert len(names) == len(set(names)), f"{path.name}: a cell's streams are not merged: {names}"
        bars = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
                and re.search(r"\d+/\d+ \[|it/s|s/it", "".join(o["data"].get("text/plain", "")))]
        assert not bars, f"{path.name} holds a progress-bar widget (interactive controls are fine)"
        assert not any(re.search(r"it/s\]|s/it\]", t) for t in texts), f"{path.name} holds a text progress bar"


def test_primer_measures_exact_linear_code_and_cnn_error(smoke_results):
    out, _ = smoke_results
    summary = json.loads((out / "primer" / "summary.json").read_text())
    assert [row["k"] for row in summary["linear"]] == [2, 3, 4]
    assert all(row["relative error"] < 1e-4 and row["top-1 agreement"] == 1.0 for row in summary["linear"])
    by_model = {row["F"]: row for row in summary["naive_reconstruction_k2"]}
    assert by_model["ResNet-8 (CNN)"]["relative error"] > 0.05  # the code is not exact for a CNN
    assert summary["images"]["source"].startswith("mirror:cifar10-test-lossless")
    for name in ("naive_reconstruction", "encoded_images"):
        assert (out / "primer" / f"{name}.png").stat().st_size > 1000
        assert (out / "primer" / f"{name}.pdf").is_file()


def test_trace_analysis_exports_summary_and_slowdowns(smoke_results):
    import pandas as pd

    out, _ = smoke_results
    summary = json.loads((out / "trace" / "summary.json").read_text())
    for key in ("n_tasks", "n_jobs", "share_of_tasks_for_80pct_time", "paper_share_of_tasks_for_80pct_time",
                "p50_s", "p99_s", "max_s"):
        assert key in summary
    assert summary["paper_share_of_tasks_for_80pct_time"] == 0.1272
    assert 0 < summary["share_of_tasks_for_80pct_time"] < 0.5  # a long tail: a minority carries 80%
    assert summary["p50_s"] <= summary["p99_s"] <= summary["max_s"]
    slow = pd.read_csv(out / "trace" / "slowdown.csv")
    assert list(slow.columns) == ["job_name", "task_id", "level", "response_time_s", "reference_s",
                                  "slowdown", "group_size"]
    assert len(slow) == summary["slowdown"]["n"] and (slow["slowdown"] >= 0).all()
    assert (out / "trace" / "long_tail.png").is_file() and (out / "trace" / "long_tail.pdf").is_file()


def test_parity_training_writes_pm_and_srp(smoke_results):
    import pandas as pd

    out, _ = smoke_results
    pm = json.loads((out / "accuracy" / "pm.json").read_text())
    srp = json.loads((out / "accuracy" / "srp.json").read_text())
    keys = {"k", "encoder", "model", "params", "flops", "available_top1", "available_top5", "degraded_top1",
            "degraded_top5", "reconstruction_agreement"}
    assert pm["method"] == "pm" and srp["method"] == "srp"
    assert pm["data_source"].startswith("mirror:cifar10-jpeg")
    codes = {(r["experiment"], r["k"], r["encoder"], r["targets"]) for r in pm["rows"]}
    assert ("cifar10-resnet", 2, "addition", "augmented") in codes
    assert ("cifar10-resnet", 2, "concatenation", "augmented") in codes
    assert ("cifar10-resnet", 2, "addition", "clean") in codes  # compare_targets in smoke
    assert any(r["experiment"] == "tinyimagenet-mobilenetv3" for r in pm["rows"])
    for row in pm["rows"] + srp["rows"]:
        assert keys <= set(row)
        assert all(0.0 <= row[m] <= 1.0 for m in keys if m.endswith(("top1", "top5", "agreement")))
        assert row["degraded_top1"] <= row["degraded_top5"] and row["params"] > 0 and row["flops"] > 0
    for row in srp["rows"]:
        assert row["degraded_top1"] == row["available_top1"]
    images = {r["images"] for r in pm["lossless_vs_jpeg"]}
    assert images == {"lossless (canonical)", "JPEG (mirror)"}
    assert all(r["seconds_per_epoch"] > 0 for r in pm["training_time"])
    for name in ("pm_learning_curves", "pm_overall_accuracy", "pm_decoded_examples", "groups_pm_learning_curves"):
        assert (out / "accuracy" / f"{name}.png").is_file()
    groups = pd.read_csv(out / "accuracy" / "groups_pm_curves.csv")  # larger groups (smoke: k = 4 and r = 2)
    for name in ("cifar10-resnet", "tinyimagenet-mobilenetv3"):
        part = groups[groups["experiment"] == name]
        assert set(zip(part["k"], part["encoder"])) == {(4, "addition"), (4, "weighted")}
        assert part["val_degraded_top1"].between(0, 1).all() and (part["train_loss"] > 0).all()
    assert not {r["k"] for r in pm["rows"]} - {2}  # the paper's k = 2 only: larger groups stay out of pm.json


def test_distillation_writes_flake_nkd_and_ablation(smoke_results):
    import pandas as pd

    out, _ = smoke_results
    flake = json.loads((out / "accuracy" / "flake.json").read_text())
    nkd = json.loads((out / "accuracy" / "nkd.json").read_text())
    ablation = json.loads((out / "accuracy" / "ablation.json").read_text())
    assert flake["method"] == "flake" and nkd["method"] == "nkd"
    terms = {(r["experiment"], r["terms"]) for r in ablation["rows"]}
    for name in ("cifar10-resnet", "tinyimagenet-mobilenetv3"):
        assert {(name, t) for t in ("PM (teacher)", "L_task", "L_task + L_KD", "L_task + L_Inter",
                                    "L_task + L_KD + L_Inter")} <= terms
    for row in flake["rows"] + nkd["rows"]:
        assert row["flops_vs_pm"] < 0.5  # one block per stage: well under half of PM's FLOPs
        assert 0 <= row["degraded_top1"] <= row["degraded_top5"] <= 1
        assert row["latency_median_ms"] > 0
    assert any("NKD" in r["model"] for r in nkd["training_time"])
    assert (out / "accuracy" / "distillation_ablation.md").is_file()
    groups = pd.read_csv(out / "accuracy" / "groups_flake_curves.csv")  # Flake of every larger code but weighted
    assert set(zip(groups["experiment"], groups["k"], groups["encoder"])) == {
        ("cifar10-resnet", 4, "addition"), ("tinyimagenet-mobilenetv3", 4, "addition")}
    assert (out / "accuracy" / "groups_flake_learning_curves.png").is_file()


def test_beyond_the_paper_writes_approxifer_by_k_and_int8(smoke_results):
    import pandas as pd

    out, _ = smoke_results
    approx = json.loads((out / "accuracy" / "approxifer.json").read_text())
    assert {(r["k"], r["s"], r["n"]) for r in approx["rows"]} == {(2, 1, 3), (4, 2, 6)}
    for row in approx["rows"]:
        assert 0 <= row["degraded_top1"] <= row["degraded_top5"] <= 1
        assert row["extra_inferences_per_query"] == pytest.approx(row["s"] / row["k"])
        assert row["overall_top1"] == pytest.approx(0.9 * row["full_top1"] + 0.1 * row["degraded_top1"])
    by_k = pd.read_csv(out / "accuracy" / "by_k.csv")
    assert {"method", "encoder", "k", "r", "n_unavailable", "degraded_top1", "extra_inferences_per_query",
            "flops_per_protected_query"} <= set(by_k.columns)
    assert {"approxifer", "pm", "flake"} <= set(by_k["method"])
    learned = by_k[by_k["method"] != "approxifer"]
    assert {(m, 4, 1) for m in ("pm", "flake")} <= set(zip(learned["method"], learned["k"], learned["r"]))
    r2 = learned[learned["r"] == 2].set_index("n_unavailable")
    assert set(r2.index) == {1, 2} and (r2["extra_inferences_per_query"] == 0.5).all()
    two = json.loads((out / "accuracy" / "two_parity.json").read_text())
    assert two["k"] == 4 and two["condition"] == pytest.approx(4.27, abs=0.01)
    assert 0 <= two["two_top1"] <= 1 and two["n_two"] == 2 * 6 * two["n_groups"]
    assert r2.loc[2, "degraded_top1"] == pytest.approx(two["two_top1"])
    int8 = json.loads((out / "accuracy" / "int8.json").read_text())
    assert {(r["model"], r["precision"]) for r in int8["rows"]} == {
        (m, p) for m in ("F", "PM", "Flake") for p in ("FP32", "INT8")}
    assert all(r["service_median_ms"] > 0 and 0 <= r["top1"] <= 1 for r in int8["rows"])
    assert len(int8["service_rounds"]) == 3 * 6
    assert (out / "beyond" / "by_k.png").is_file() and (out / "beyond" / "int8.md").is_file()


def test_scale_out_validates_the_model_and_models_fleets(smoke_results):
    import pandas as pd

    from flake_lib import methods, scaleout

    out, _ = smoke_results
    validation = pd.read_csv(out / "latency" / "sim_validation.csv")
    assert {"load", "mode", "method", "measured_median_ms", "modelled_median_ms", "measured_p99_ms", "modelled_p99_ms",
            "relative_error_median", "relative_error_p99", "tolerance_median", "tolerance_p99",
            "within_tolerance"} <= set(validation.columns)
    assert set(validation["mode"]) == {"native"}
    assert validation["calibration"].any() and (~validation["calibration"]).any()
    assert (validation["tolerance_median"] >= scaleout.TOLERANCE).all()
    fleet = pd.read_csv(out / "latency" / "sim_fleet.csv")
    assert set(fleet["fleet"]) == {4, 8} and set(fleet["method"]) == set(methods.keys(fleet=True))
    assert (fleet["frontends"] >= 1).all() and (fleet["n_queries"] == 400).all()
    whatif = pd.read_csv(out / "latency" / "sim_whatif.csv")
    assert whatif["scenario"].nunique() == 2 and (out / "latency" / "sim_validation.png").is_file()


def test_scale_out_runs_the_same_schedule_through_both_engines(smoke_results):
    import pandas as pd
    import psutil

    out, _ = smoke_results
    runs = pd.read_csv(out / "latency" / "engine_runs.csv")
    assert list(runs["engine"]) == ["process", "ray", "ray", "process"]  # ABBA, engine_repeats = 2
    assert (runs["n_queries"] == 100).all() and (runs["n_failed"] == 0).all()
    overhead = pd.read_csv(out / "latency" / "engine_overhead.csv")
    assert {"qps", "method", "statistic", "process", "ray", "difference", "difference_min", "difference_max",
            "repeats"} <= set(overhead.columns)
    assert set(overhead["statistic"]) == {"median_ms", "p999_ms", "gmm_ms", "gpm_ms"}
    assert (overhead["process"] > 0).all() and (overhead["ray"] > 0).all()
    # the notebook's local Ray cluster (its temporary folder is /tmp/flkray*) is gone
    left = [p.pid for p in psutil.process_iter(["cmdline"]) if "/tmp/flkray" in " ".join(p.info["cmdline"] or ())]
    assert not left, f"Ray processes of notebook 07 left running: {left}"


def test_table2_and_report_have_every_row(smoke_results):
    import pandas as pd

    out, _ = smoke_results
    table = pd.read_csv(out / "tables" / "table2.csv")
    assert list(table.columns[:8]) == ["method", "model", "params", "dataset", "top1", "top5",
                                       "paper_top1", "paper_top5"]
    assert set(zip(table["method"], table["dataset"])) == {(m, d) for m in ("srp", "pm", "nkd", "flake")
                                                           for d in ("cifar10", "cifar100")}
    cifar100 = table[table["dataset"] == "cifar100"]
    assert cifar100["top1"].isna().all() and cifar100["note"].str.contains("not measured").all()
    assert table[table["dataset"] == "cifar10"]["top1"].notna().all()
    report = (out / "REPORT.md").read_text()
    for claim in ("E0", "E1", "E2", "E3a", "E3b", "E3c", "E3d", "E4a", "E4b", "E4c", "E4d", "E4e",
                  "E5 flake cifar10", "E5 flake cifar100", "X1", "X2", "X3"):
        assert f"| {claim} " in report, f"REPORT.md lacks {claim}"
    assert "12.72%" in report
    for figure in ("fig5_statistics", "accuracy_vs_tail"):  # Fig. 5 redrawn, and the accuracy-tail trade
        assert (out / "tables" / f"{figure}.png").is_file()
    # written by the chain after its last notebook: the header gives every notebook's time and commit
    prov = json.loads((out / "provenance.json").read_text())
    for nb in chain.all_notebooks():
        commit = prov["chain_commits"][nb.stem]["git_commit"]
        assert f"| {nb.stem} | {prov['chain_seconds'][nb.stem]:.1f} | `{commit}` |" in report


def test_latency_benchmark_accounts_for_every_query(smoke_results):
    import pandas as pd

    from flake_lib import latency as lt

    out, _ = smoke_results
    latency = out / "latency"
    queries = pd.read_parquet(latency / "queries.parquet")
    table1 = pd.read_csv(latency / "table1.csv")
    assert list(table1.columns[:len(lt.TABLE1_COLUMNS)]) == lt.TABLE1_COLUMNS
    assert set(table1["method"]) == {"none", "srp", "pm", "nkd", "flake", "hedge", "equal", "approxifer"}
    assert set(table1["regime"]) == {"R1", "R2", "R3"} and set(table1["mode"]) == {"native"}
    assert set(table1["dispatch"]) == {"round_robin", "single_queue"} and set(table1["block"]) == {"Table I", "peers"}
    assert set(table1.loc[table1["faults"] == "none", "method"]) == {"none"}  # the noise floor
    main = table1[(table1["block"] == "Table I") & (table1["faults"] == "injected")]
    assert main.groupby(["regime", "dispatch", "method"])["repeat"].nunique().eq(2).all()  # same repeats everywhere
    for column in ("n_over_bound", "n_groups_2plus", "stall_s", "recovery_deferred", "recovery_dropped",
                   "admission_wait_max_ms", "frontend_lag_max_ms", "admission_acted_idle"):
        assert column in table1, column
    judged = main[(main["regime"] == "R1") & (main["dispatch"] == "round_robin")]
    firsts = judged[judged["order"] == 0].sort_values("repeat")["method"].tolist()
    assert len(firsts) == 2 and firsts[0] != firsts[1]  # the method order rotates across repeats
    for key, part in queries.groupby(["method", "repeat", "faults"]):
        assert len(part) == part["query"].nunique() == 200, key  # every query exactly once
        assert part["outcome"].notna().all()
    assert (table1["gmm_ms"] >= table1["gpm_ms"]).all() and (table1["n_failed"] >= 0).all()
    outcomes = ("original", "decoded", "reconstructed", "replica", "student", "hedge", "error", "failed")
    assert (table1["n_queries"] == table1[[f"n_{o}" for o in outcomes]].sum(axis=1)).all()
    approx = table1[table1["method"] == "approxifer"]
    assert (approx["n_original"] == approx["n_retry"]).all()  # not systematic: F alone answers only a retry
    predictions = pd.read_csv(latency / "predictions.csv")
    expected = {"regime", "mode", "method", "predicted_median_ms", "predicted_p999_ms", "predicted_max_ms"}
    assert expected <= set(predictions)
    assert set(predictions["regime"]) == {"R1", "R2", "R3"}
    assert len(pd.read_csv(latency / "predicted_vs_measured.csv")) > 0
    capacity = json.loads((latency / "capacity.json").read_text())
    assert capacity["objective"] == {"statistic": "p99_ms", "bound_ms": 50.0} and set(capacity["modes"]) == {"native"}
    for record in capacity["modes"].values():
        assert set(record["methods"]) == {"pm", "flake"}
        for method in record["methods"].values():
            assert method["repeats"] == 2 and len(method["per_repeat"]) == 2 and method["levels"] == [200.0, 800.0]
    runs = pd.read_csv(latency / "capacity_runs.csv")
    assert runs.groupby(["method", "qps"])["repeat"].nunique().eq(2).all()
    bound = pd.read_csv(latency / "bound_sweep.csv")
    assert list(bound.columns[:len(lt.BOUND_COLUMNS)]) == lt.BOUND_COLUMNS
    assert bound["bound_ms"].isna().any() and set(bound["bound_ms"].dropna()) == {10.0}  # eager beside the bound
    for name in ("admission_sweep", "cap_sweep", "device_settings", "paired"):
        assert len(pd.read_csv(latency / f"{name}.csv")) > 0, name
    fig6 = pd.read_csv(latency / "fig6.csv")
    assert list(fig6.columns[:len(lt.FIG6_COLUMNS)]) == lt.FIG6_COLUMNS
    assert set(fig6["n_unavailable"]) == {1, 2} and set(fig6["instances"]) == {1, 2}
    assert (fig6["n"] == fig6["n_unavailable"]).all()  # one burst of m simultaneously unavailable queries
    assert (fig6["n_recovered"] <= fig6["n"]).all()
    for name in ("fig5_latency_cdf", "table1_repeats", "capacity", "bound_sweep", "admission_and_cap",
                 "fig6_unavailable"):
        assert (latency / f"{name}.png").is_file(), name


def test_rerun_and_second_seed_are_compared_in_report(smoke_results):
    """Same seed: a rerun of 02/03 (checkpoints in place, so it re-evaluates) gives identical
    accuracy numbers; --seed 1 writes beside the results, and REPORT.md compares both."""
    out, _ = smoke_results
    chain.run_chain("smoke", only="02", seed=1, results_root=out, progress=False)
    seed_dir = out.parent / f"{out.name}-seed1"
    assert json.loads((seed_dir / "provenance.json").read_text())["seed"] == 1
    assert (seed_dir / "accuracy" / "pm.json").is_file() and not (seed_dir / "latency").exists()
    chain.run_chain("smoke", only="02,03,05", results_root=out, progress=False)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["previous_run"]["seed"] == prov["seed"] == 0
    report = (out / "REPORT.md").read_text()
    assert "**Same seed:**" in report and "identical (|Δ| = 0)" in report
    assert "**Seed 1**" in report and "| F, A_a top-1 (cifar10-resnet) |" in report
