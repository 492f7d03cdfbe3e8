import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from flake_lib import metrics, results  # noqa: E402


def test_save_figure_writes_png_and_pdf(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    written = results.save_figure(fig, tmp_path / "figs" / "line")
    assert [p.name for p in written] == ["line.png", "line.pdf"]
    assert (tmp_path / "figs" / "line.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "figs" / "line.pdf").read_bytes()[:4] == b"%PDF"


def test_write_table_three_formats(tmp_path):
    df = pd.DataFrame({"method": ["pm", "flake"], "top1": [0.75291, np.nan]})
    results.write_table(df, tmp_path / "t", caption="Table II")
    assert pd.read_csv(tmp_path / "t.csv").equals(df)
    md = (tmp_path / "t.md").read_text()
    assert "| method | top1 |" in md and "| pm | 0.7529 |" in md and "| flake |  |" in md
    assert "\\begin{tabular}" in (tmp_path / "t.tex").read_text()


def test_write_metrics_converts_numpy_and_torch(tmp_path):
    path = results.write_metrics({"a": np.float32(0.5), "b": torch.tensor([1, 2]), "c": np.int64(3)},
                                tmp_path / "m.json")
    assert json.loads(path.read_text()) == {"a": 0.5, "b": [1, 2], "c": 3}
    path = results.write_metrics({"d": float("nan"), "e": [np.float32("nan"), 1.0]}, tmp_path / "n.json")
    assert "NaN" not in path.read_text() and json.loads(path.read_text()) == {"d": None, "e": [None, 1.0]}


def test_provenance_has_the_design_keys(tmp_path):
    results.write_provenance(tmp_path, profile="smoke", seed=3, data_source={"cifar10": "mirror"})
    results.write_provenance(tmp_path, profile="smoke", section="00-x", parameters={"n": 1})
    prov = json.loads((tmp_path / "provenance.json").read_text())
    for key in ("git_commit", "git_dirty", "profile", "packages", "devices", "cpu", "seed", "data_source"):
        assert key in prov
    assert prov["seed"] == 3 and prov["data_source"] == {"cifar10": "mirror"}
    assert prov["notebooks"]["00-x"]["parameters"] == {"n": 1}
    assert prov["packages"]["torch"].startswith("2.")


def test_metrics_by_hand():
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 1, 0])
    assert metrics.top_k_accuracy(scores, labels, 1) == pytest.approx(1 / 3)
    assert metrics.top_k_accuracy(scores, labels, 2) == pytest.approx(2 / 3)
    assert metrics.agreement(scores, scores.flip(0)) == pytest.approx(1 / 3)
    est, target = torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 5.0]])
    assert abs(metrics.relative_error(est, target) - (10 ** 0.5) / 5) < 1e-6
    assert metrics.overall_accuracy(0.9, 0.5, 0.25) == pytest.approx(0.8)


def test_method_record_rows_are_strict_json():
    table = pd.DataFrame({"dataset": ["cifar10", "cifar10"], "data_source": ["mirror", "mirror"],
                          "k": [2.0, float("nan")], "degraded_top1": [0.5, 0.25]})
    record = results.method_record("pm", table, ["k", "degraded_top1"], profile="quick")
    assert record == {"method": "pm", "dataset": "cifar10", "data_source": "mirror", "profile": "quick",
                      "rows": [{"k": 2, "degraded_top1": 0.5}, {"k": None, "degraded_top1": 0.25}]}
    assert isinstance(record["rows"][0]["k"], int)
    json.dumps(record, allow_nan=False)  # no NaN in the file


def test_metrics_write_infinities_as_strict_json_and_read_them_back(tmp_path):
    import json
    import math

    path = results.write_metrics({"p99_ms": math.inf, "low": -math.inf, "nan": float("nan"),
                                  "levels": [[200.0, 3.5], [1500.0, math.inf]], "name": "inf ok"}, tmp_path / "m.json")
    strict = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert strict["p99_ms"] == "inf" and strict["low"] == "-inf" and strict["nan"] is None
    back = results.read_metrics(path)
    assert back["p99_ms"] == math.inf and back["low"] == -math.inf and back["levels"][1] == [1500.0, math.inf]
    assert back["name"] == "inf ok"
