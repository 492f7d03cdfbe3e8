"""How far a profile's accuracy numbers move between runs (docs/DESIGN.md §8: runs are seeded; a rerun
reproduces its accuracy numbers within a stated tolerance).

Two comparisons, both read from metrics the notebooks wrote, never recomputed:

- **same seed**: the chain snapshots the accuracy numbers already in ``results/<profile>/`` before a
  run that retrains them (:func:`snapshot`, stored as ``previous_run`` in ``provenance.json``), so
  the new run can be compared with the one it overwrote;
- **another seed**: ``./run_all.sh --seed N`` writes to ``results/<profile>-seedN/``
  (:func:`seed_results_dirs` finds them beside the main results).

Each number is ``|Δ| = |a − b|`` in accuracy (fraction), per quantity.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from . import methods
from . import results as result_files

#: Metrics files that hold accuracy rows, and the row fields that name a model within them.
ACCURACY_FILES = (*methods.keys(paper=True), "ablation")
_ROW_KEYS = ("experiment", "k", "encoder", "targets", "terms")
_METRICS = ("available_top1", "degraded_top1", "degraded_top5")


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _label(file: str, row: dict) -> str:
    parts = [file] + [f"{key}={row[key]:g}" if isinstance(row[key], float) else f"{key}={row[key]}"
                      for key in _ROW_KEYS if _present(row.get(key))]
    return " ".join(parts)


def accuracy_numbers(results: str | Path) -> dict[str, float]:
    """Every accuracy number of ``results/accuracy/*.json``, keyed ``"<file> <model fields>: <metric>"``."""
    numbers = {}
    for file in ACCURACY_FILES:
        path = Path(results) / "accuracy" / f"{file}.json"
        if not path.is_file():
            continue
        for row in result_files.read_metrics(path).get("rows", []):
            for metric in _METRICS:
                if _present(row.get(metric)):
                    numbers[f"{_label(file, row)}: {metric}"] = float(row[metric])
    return numbers


def snapshot(results: str | Path) -> dict | None:
    """The accuracy numbers in ``results`` with the commit and seed that produced them, or None."""
    numbers = accuracy_numbers(results)
    if not numbers:
        return None
    path = Path(results) / "provenance.json"
    prov = result_files.read_metrics(path) if path.is_file() else {}
    return {"seed": prov.get("seed"), "parameters": prov.get("parameters"),
            "git_commit": prov.get("git_commit"),
            # the commit each notebook section last ran at (the accuracy notebooks' is the one that matters)
            "section_commits": {k: v.get("git_commit") for k, v in (prov.get("notebooks") or {}).items()},
            "updated_utc": prov.get("updated_utc"), "accuracy": numbers}


def compare(reference: dict[str, float], other: dict[str, float]) -> pd.DataFrame:
    """``quantity, reference, other, abs_diff`` for the quantities both runs measured."""
    common = sorted(set(reference) & set(other))
    table = pd.DataFrame({"quantity": common, "reference": [reference[q] for q in common],
                          "other": [other[q] for q in common]})
    table["abs_diff"] = (table["reference"] - table["other"]).abs()
    return table


def seed_results_dirs(results: str | Path) -> list[Path]:
    """Sibling folders ``<results>-seed<N>/`` written by ``./run_all.sh --seed N``, by seed."""
    results = Path(results)
    found = [p for p in results.parent.glob(f"{results.name}-seed*") if p.is_dir()
             and p.name.removeprefix(f"{results.name}-seed").isdigit()]
    return sorted(found, key=lambda p: int(p.name.removeprefix(f"{results.name}-seed")))
