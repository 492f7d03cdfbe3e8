"""Run-to-run comparison of accuracy numbers, and the README's results block."""

import json
import math
from pathlib import Path

import pytest

from flake_lib import determinism, report

REPO = Path(__file__).resolve().parents[1]


def _write_accuracy(folder: Path, pm_top1: float, seed: int = 0) -> Path:
    (folder / "accuracy").mkdir(parents=True)
    rows = [{"experiment": "e", "k": 2.0, "encoder": "addition", "targets": "augmented",
             "available_top1": 0.8, "degraded_top1": pm_top1, "degraded_top5": None}]
    (folder / "accuracy" / "pm.json").write_text(json.dumps({"rows": rows}))
    ablation = [{"experiment": "e", "k": math.nan, "encoder": math.nan, "terms": "NKD",
                 "degraded_top1": 0.7}]
    (folder / "accuracy" / "ablation.json").write_text(json.dumps({"rows": ablation}))
    (folder / "provenance.json").write_text(json.dumps({"seed": seed, "git_commit": "abc",
                                                        "parameters": {"seed": seed}}))
    return folder


def test_accuracy_numbers_skip_missing_fields_and_values(tmp_path):
    numbers = determinism.accuracy_numbers(_write_accuracy(tmp_path / "quick", 0.55))
    assert numbers == {
        "pm experiment=e k=2 encoder=addition targets=augmented: available_top1": 0.8,
        "pm experiment=e k=2 encoder=addition targets=augmented: degraded_top1": 0.55,
        "ablation experiment=e terms=NKD: degraded_top1": 0.7,
    }
    assert determinism.accuracy_numbers(tmp_path / "nothing") == {}
    assert determinism.snapshot(tmp_path / "nothing") is None
    snap = determinism.snapshot(tmp_path / "quick")
    assert snap["seed"] == 0 and snap["git_commit"] == "abc" and snap["accuracy"] == numbers


def test_compare_by_hand():
    table = determinism.compare({"a": 0.5, "b": 0.25, "only_a": 1.0}, {"a": 0.5, "b": 0.5, "only_b": 0.0})
    assert table["quantity"].tolist() == ["a", "b"]
    assert table["abs_diff"].tolist() == [0.0, 0.25]


def test_seed_folders_sorted_numerically(tmp_path):
    for name in ("quick", "quick-seed10", "quick-seed2", "quick-seedx", "quicker-seed1"):
        (tmp_path / name).mkdir()
    assert [p.name for p in determinism.seed_results_dirs(tmp_path / "quick")] == ["quick-seed2", "quick-seed10"]


def test_report_compares_same_seed_and_other_seeds(tmp_path):
    main = _write_accuracy(tmp_path / "quick", 0.55)
    _write_accuracy(tmp_path / "quick-seed1", 0.50, seed=1)
    prov = json.loads((main / "provenance.json").read_text())
    prov["previous_run"] = determinism.snapshot(main)
    text = "\n".join(report.determinism_section(main, prov))
    assert "**Same seed:**" in text and "identical (|Δ| = 0)" in text
    assert "**Seed 1**" in text and "max |Δ| = 5.00 points" in text
    assert "last started at commit `abc`" in text  # no per-notebook record: the run's last commit
    prov["previous_run"]["section_commits"] = {"02-parity-training": "0123456789ab", "04-latency": "ffff"}
    assert "02-parity-training at `0123456789`, seed 0" in "\n".join(report.determinism_section(main, prov))
    prov["previous_run"]["parameters"] = {"seed": 0, "parity_epochs": 9}
    assert "other parameters (parity_epochs)" in "\n".join(report.determinism_section(main, prov))


def test_update_readme_replaces_only_the_block(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n")
    with pytest.raises(ValueError, match="no results block"):
        report.update_readme(readme, tmp_path)
    readme.write_text(f"intro\n{report.README_START}\nold\n{report.README_END}\noutro\n")
    monkeypatch.setattr(report, "readme_results", lambda results: "new table")
    assert report.update_readme(readme, tmp_path)
    assert readme.read_text() == f"intro\n{report.README_START}\nnew table\n{report.README_END}\noutro\n"
    assert not report.update_readme(readme, tmp_path)  # unchanged the second time


def test_readme_shows_the_committed_quick_results():
    """The README's tables are those of results/quick (a rerun that changes them rewrites both)."""
    text = (REPO / "README.md").read_text()
    block = text.split(report.README_START, 1)[1].split(report.README_END, 1)[0].strip()
    assert block == report.readme_results(REPO / "results" / "quick")
    assert "| Flake |" in block and "paper GPM" in block and "paper top-1" in block
