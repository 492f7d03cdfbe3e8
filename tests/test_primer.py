"""The primer's pieces (flake_lib.primer): reconstructions, A_o, the measured bound sweep, exercises."""

import json
import math

import matplotlib
import pandas as pd
import pytest
import torch
from torch import nn

from flake_lib import coding, data, models, primer

matplotlib.use("Agg")


def _split(n=256, seed=0):
    """A learnable toy split: the class is which colour channel is brightest (3 classes)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = torch.randint(0, 80, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    images[torch.arange(n), labels] += 150
    return data.ImageSplit(images, labels, ["red", "green", "blue"], "cifar10", "train", "test", False)


def _linear_models():
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10, bias=False)).eval()
    return primer.PrimerModels(linear, linear, "test", "a linear F as its own parity model")


def test_compare_reconstructions_is_exact_for_a_linear_model():
    x = torch.randn(40, 3, 32, 32)
    labels = torch.randint(0, 10, (40,))
    groups = coding.make_groups(40, 2, torch.Generator().manual_seed(0))
    table, tensors = primer.compare_reconstructions(_linear_models(), x, labels, groups)
    assert list(table["reconstruction"].str.split(":").str[0]) == ["naive", "learned"]
    assert (table["relative error"] < 1e-4).all() and (table["agreement with F"] == 1.0).all()
    assert torch.allclose(tensors["naive"], tensors["outputs"], atol=1e-4)
    assert tensors["outputs"].shape == (20, 2, 10)


def test_compare_reconstructions_separates_naive_and_learned():
    """With F_p = 0 the learned reconstruction is −F(x2): a different (worse) row than the naive one."""
    models_ = _linear_models()
    zero = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10, bias=False))
    nn.init.zeros_(zero[1].weight)
    models_.parity = zero.eval()
    x = torch.randn(40, 3, 32, 32)
    groups = coding.make_groups(40, 2, torch.Generator().manual_seed(0))
    table, _ = primer.compare_reconstructions(models_, x, torch.zeros(40, dtype=torch.long), groups)
    assert table.loc[0, "relative error"] < 1e-4 < table.loc[1, "relative error"]


def test_train_in_seconds_learns_a_parity_model():
    split = _split()
    trained = primer.train_in_seconds(split, epochs=3, seed=0, batch_size=32)
    assert trained.source == "trained in seconds" and "3 epochs on 256 training images" in trained.description
    x = data.normalize(split.images, *split.normalization)
    groups = coding.make_groups(len(x), 2, torch.Generator().manual_seed(1))
    table, _ = primer.compare_reconstructions(trained, x, split.labels, groups)
    assert table.loc[0, "A_a of F (top-1)"] > 0.6  # F learned the toy task
    # the parity model, trained on F's targets, reconstructs better than F used as its own parity model
    assert table.loc[1, "relative error"] < table.loc[0, "relative error"]
    assert torch.get_num_threads() >= 1


def test_load_checkpoints_only_when_both_exist(tmp_path):
    spec = {"dataset": "cifar10", "deployed_arch": "resnet8", "width": 0.5}
    assert primer.load_checkpoints(tmp_path, "cifar10-resnet", spec) is None
    folder = tmp_path / "checkpoints" / "cifar10-resnet"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    saved = {}
    for name in ("deployed", "pm-k2-addition"):
        saved[name] = models.build_model("resnet8", 10, width=0.5).eval()
        torch.save({"model": saved[name].state_dict()}, folder / f"{name}.pt")
        if name == "deployed":
            assert primer.load_checkpoints(tmp_path, "cifar10-resnet", spec) is None  # PM still missing
    loaded = primer.load_checkpoints(tmp_path, "cifar10-resnet", spec)
    assert loaded.source == "checkpoints" and "pm-k2-addition.pt" in loaded.description
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.parity(x), saved["pm-k2-addition"](x))
        assert torch.allclose(loaded.deployed(x), saved["deployed"](x))


def test_cifar10_experiment_prefers_the_served_one():
    experiments = {"tiny": {"dataset": "tinyimagenet"}, "a": {"dataset": "cifar10"}, "b": {"dataset": "cifar10"}}
    assert primer.cifar10_experiment(experiments, "b") == "b"
    assert primer.cifar10_experiment(experiments, "tiny") == "a"
    assert primer.cifar10_experiment({"tiny": {"dataset": "tinyimagenet"}}, "tiny") is None


def test_code_table_exact_only_for_addition_on_a_linear_model():
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10, bias=False)).eval()
    table = primer.code_table({"linear": linear}, torch.randn(64, 3, 32, 32), ks=(2, 3, 4), n_groups=8)
    assert set(zip(table["k"], table["encoder"])) == {(2, "addition"), (2, "concatenation"), (3, "addition"),
                                                      (4, "addition"), (4, "concatenation")}
    addition = table[table["encoder"] == "addition"]
    assert (addition["relative error"] < 1e-4).all()
    assert (table[table["encoder"] == "concatenation"]["relative error"] > 0.1).all()


def _metrics(folder, pm_rows, flake_rows=None):
    (folder / "accuracy").mkdir(parents=True, exist_ok=True)
    (folder / "accuracy" / "pm.json").write_text(json.dumps({"method": "pm", "rows": pm_rows}))
    if flake_rows is not None:
        (folder / "accuracy" / "flake.json").write_text(json.dumps({"method": "flake", "rows": flake_rows}))


def test_accuracy_sources_and_overall_accuracy(tmp_path):
    assert primer.accuracy_sources(tmp_path).empty
    row = {"experiment": "e", "k": 2, "encoder": "addition", "available_top1": 0.8, "degraded_top1": 0.5}
    _metrics(tmp_path, [{**row, "targets": "augmented"}, {**row, "targets": "clean", "degraded_top1": 0.1},
                        {**row, "encoder": "concatenation", "targets": "augmented", "degraded_top1": 0.7}],
             [{**row, "terms": "L_task + L_KD + L_Inter", "degraded_top1": 0.4},
              {**row, "terms": "L_task", "degraded_top1": 0.2}])
    sources = primer.accuracy_sources(tmp_path)
    assert list(sources["label"]) == ["PM k=2 addition", "PM k=2 concatenation", "Flake k=2 addition"]
    assert list(sources["A_d"]) == [0.5, 0.7, 0.4]  # the clean-target PM and the ablation arm are left out
    table = primer.overall_accuracy_table(sources, [0, 0.25, 1])
    assert table.loc["PM k=2 addition", "f_u = 0.25"] == pytest.approx(0.75 * 0.8 + 0.25 * 0.5)
    assert table["f_u = 0"].tolist() == pytest.approx([0.8] * 3)
    assert table["f_u = 1"].tolist() == pytest.approx([0.5, 0.7, 0.4])
    html = primer.overall_accuracy_html(sources, 0.3)
    shown = [float(v) for v in pd.Series(html.split("class='flake-ao'")[1:]).str.extract(r">([0-9.]+)<")[0]]
    assert shown == pytest.approx([0.7 * 0.8 + 0.3 * d for d in (0.5, 0.7, 0.4)], abs=1e-4)
    assert "<span class='flake-fu'>0.30</span>" in html


def test_fu_explorer_updates_the_table():
    sources = pd.DataFrame([{"label": "PM k=2 addition", "method": "pm", "A_a": 0.9, "A_d": 0.6, "source": "x"}])
    box = primer.fu_explorer(sources, value=0.1)
    slider, table = box.children
    assert "0.8700" in table.value
    slider.value = 0.5
    assert "0.7500" in table.value and "0.8700" not in table.value


def _sweep():
    rows = []
    for bound in (math.nan, 10.0, 50.0):
        for repeat, p999 in enumerate((10.0, 20.0)):
            extra = 0.0 if math.isnan(bound) else bound
            rows.append({"method": "pm", "mode": "native", "point": "headline", "qps": 200.0, "bound_ms": bound,
                         "repeat": repeat, "median_ms": 2.0, "p99_ms": 5.0, "p999_ms": p999 + extra,
                         "max_ms": 90.0, "n_queries": 100, "n_failed": repeat, "n_reconstructed": 3})
    return pd.DataFrame(rows)


def test_bound_sweep_is_read_and_summarised(tmp_path):
    assert primer.read_bound_sweep(tmp_path) is None
    (tmp_path / "latency").mkdir()
    _sweep().drop(columns="p99_ms").to_csv(tmp_path / "latency" / "bound_sweep.csv", index=False)
    with pytest.raises(ValueError, match="p99_ms"):
        primer.read_bound_sweep(tmp_path)
    _sweep().to_csv(tmp_path / "latency" / "bound_sweep.csv", index=False)
    summary = primer.bound_summary(primer.read_bound_sweep(tmp_path))
    assert list(summary["bound"]) == ["eager", "10 ms", "50 ms"]
    assert list(summary["p999_ms"]) == [15.0, 25.0, 65.0]  # mean over the two repeats
    assert list(summary["repeats"]) == [2, 2, 2] and list(summary["n_failed"]) == [1, 1, 1]
    pivot = primer.bound_pivot(summary)
    assert pivot.loc[("native", "headline", "50 ms"), "pm"] == 65.0
    box = primer.bound_explorer(summary)
    choice, table = box.children
    choice.value = "50 ms"
    assert "65.00" in table.value and "25.00" not in table.value


def test_answer_time_follows_the_frontend_rule():
    assert primer.answer_time_ms(35, 20, 12, [8], 1) == 21  # declared unavailable at the bound, then decoded
    assert primer.answer_time_ms(15, 20, 12, [8], 1) == 15  # the original arrives first
    assert primer.answer_time_ms(35, 20, 30, [8], 1) == 31  # the decoder waits for the parity output
    assert primer.answer_time_ms(math.inf, 20, 12, [8, 25]) == 25  # a failed instance: all partners needed


def test_exercises_check_answers(capsys):
    assert primer.check_exercise(1, None) == "not yet" and "Hint" in capsys.readouterr().out
    assert primer.check_exercise(1, 8) == "right"
    assert primer.check_exercise(1, 6) == "wrong" and "F_p(p) − F(x1) − F(x3)" in capsys.readouterr().out
    assert primer.check_exercise(2, 0.1) == "right" and primer.check_exercise(2, 0.3) == "wrong"
    assert primer.check_exercise(3, 21) == "right" and primer.check_exercise(3, 35) == "wrong"
    assert primer.check_exercise(3, "twenty") == "wrong"


def test_figures_draw():
    import matplotlib.pyplot as plt

    fig = primer.draw_system()
    assert len(fig.axes[0].patches) >= 15  # boxes and arrows
    errors = pd.DataFrame([{"F": "linear", "relative error": 1e-6, "top-1 agreement": 1.0, "majority-class share": 0.2},
                           {"F": "CNN", "relative error": 0.6, "top-1 agreement": 0.7, "majority-class share": 0.99}])
    fig2 = primer.plot_naive_errors(errors)
    assert fig2.axes[0].get_xscale() == "log"
    fig3 = primer.plot_bound_sweep(primer.bound_summary(_sweep()))
    assert len(fig3.axes) == 1
    plt.close("all")
