"""Results under ``results/<profile>/``: figures, tables, metrics JSON and provenance (docs/DESIGN.md §6).

Every notebook writes through these helpers, so that every output has the same form:
figures as PNG and PDF, tables as CSV, Markdown and LaTeX, metrics as indented JSON, and a
``provenance.json`` that says which commit, packages, machine, seed and data produced them.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import warnings
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pandas as pd

from . import figure_check

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "torchvision", "openvino", "numpy", "pandas", "matplotlib", "seaborn",
            "papermill", "networkx", "flake-lib")


def results_dir(profile: str, root: str | os.PathLike | None = None) -> Path:
    """``<repository>/results/<profile>`` (or under ``root``), created if missing."""
    path = Path(root) if root is not None else REPO_ROOT / "results" / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


def _atomic_write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def save_figure(fig, path: str | os.PathLike, dpi: int = 150) -> list[Path]:
    """Save a matplotlib figure as ``<path>.png`` and ``<path>.pdf`` (suffix in ``path`` ignored), with a
    :class:`~flake_lib.figure_check.FigureDefectWarning` warning for each defect :func:`figure_check.defects`
    finds (overlapping tick labels or titles, a marker hidden in a bar of its colour)."""
    for defect in figure_check.defects(fig):
        warnings.warn(f"{Path(path).name}: {defect}", figure_check.FigureDefectWarning, stacklevel=2)
    base = Path(path).with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in (".png", ".pdf"):
        target = base.with_suffix(suffix)
        fig.savefig(target, dpi=dpi, bbox_inches="tight",
                    metadata={"CreationDate": None} if suffix == ".pdf" else None)
        written.append(target)
    return written


def markdown_table(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured Markdown table of ``df`` (index dropped)."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else format(value, floatfmt)
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in df.columns) + " |"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n"


def write_table(df: pd.DataFrame, path: str | os.PathLike, caption: str | None = None,
                floatfmt: str = ".4g") -> list[Path]:
    """Write ``df`` as ``<path>.csv``, ``<path>.md`` and ``<path>.tex``."""
    base = Path(path).with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    csv = base.with_suffix(".csv")
    df.to_csv(csv, index=False)
    md = _atomic_write_text(base.with_suffix(".md"),
                            (f"{caption}\n\n" if caption else "") + markdown_table(df, floatfmt))
    latex = df.to_latex(index=False, caption=caption, float_format=lambda v: format(v, floatfmt))
    tex = _atomic_write_text(base.with_suffix(".tex"), latex)
    return [csv, md, tex]


def _json_default(value):
    if hasattr(value, "tolist"):  # numpy and torch scalars and arrays
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


#: How an infinite number is written in a metrics file: strict JSON has no infinity, and a tail
#: statistic that reaches a failed query *is* infinite (:func:`flake_lib.stats.tail_summary`).
#: :func:`read_metrics` turns these strings back into floats; ``float("inf")`` reads them too.
INFINITY_TEXT = {math.inf: "inf", -math.inf: "-inf"}


def _strict(value):
    """NaN as ``None`` (JSON ``null``), ±inf as ``"inf"`` / ``"-inf"``, everything else as it is."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return INFINITY_TEXT.get(value, value)
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def _unstrict(value):
    """The inverse of :func:`_strict` for infinities: ``"inf"`` / ``"-inf"`` back to floats."""
    if isinstance(value, str) and value in ("inf", "-inf"):
        return float(value)
    if isinstance(value, dict):
        return {k: _unstrict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unstrict(v) for v in value]
    return value


def write_metrics(metrics: dict, path: str | os.PathLike) -> Path:
    """Write ``metrics`` as indented, strict JSON (numpy/torch scalars and arrays converted, NaN
    written as ``null``, an infinity as the string ``"inf"`` or ``"-inf"``), atomically."""
    plain = json.loads(json.dumps(metrics, default=_json_default))  # Python's json reads its own Infinity
    text = json.dumps(_strict(plain), indent=2, allow_nan=False)
    return _atomic_write_text(Path(path), text + "\n")


def read_metrics(path: str | os.PathLike) -> dict:
    """A metrics file of :func:`write_metrics`, with ``"inf"`` / ``"-inf"`` read back as floats."""
    return _unstrict(json.loads(Path(path).read_text()))


def metric_rows(table: pd.DataFrame, columns: list[str]) -> list[dict]:
    """``table[columns]`` as JSON-ready records: missing values (NaN) become ``null``, ``k`` an int."""
    return [{key: None if pd.isna(value) else int(value) if key == "k" else value
             for key, value in row.items()} for row in table[columns].to_dict(orient="records")]


def method_record(method: str, table: pd.DataFrame, columns: list[str], **fields) -> dict:
    """The ``accuracy/<method>.json`` record: ``method``, the ``dataset`` and ``data_source`` of the
    first row, the given ``fields`` (profile, device, timings...), and ``rows`` (:func:`metric_rows`)."""
    first = table.iloc[0]
    return {"method": method, "dataset": first["dataset"], "data_source": first["data_source"],
            **fields, "rows": metric_rows(table, columns)}


# ----------------------------------------------------------------------------- provenance

def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _openvino_devices() -> list[str]:
    try:
        import openvino as ov

        core = ov.Core()
        return [f"{d}: {core.get_property(d, 'FULL_DEVICE_NAME')}" for d in core.available_devices]
    except Exception as error:  # noqa: BLE001 - provenance must never fail a run
        return [f"unavailable ({type(error).__name__})"]


def machine_description() -> dict:
    """CPU, core count, OS, Python, torch threads and accelerators visible to torch and OpenVINO."""
    import torch

    return {
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "devices": _openvino_devices(),
    }


def package_versions(names=PACKAGES) -> dict:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_provenance(out_dir: str | os.PathLike, *, profile: str, seed: int | None = None,
                     parameters: dict | None = None, data_source: dict | None = None,
                     section: str | None = None, **chain_records) -> Path:
    """Create or update ``<out_dir>/provenance.json`` (docs/DESIGN.md §6).

    The top level holds ``git_commit``, ``git_dirty``, ``profile``, ``packages``, ``devices``,
    ``cpu``, ``seed`` and ``data_source``; with ``section`` (a notebook name), that notebook's
    parameters and data sources are recorded under ``notebooks[section]`` as well. Further keyword
    arguments (the chain's ``profile_overrides``, ``notebook_defaults``) are stored at the top level.
    """
    path = Path(out_dir) / "provenance.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    machine = machine_description()
    # changes to tracked files outside results/ (a run rewrites its own committed results)
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    record.update({
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "profile": profile,
        "packages": package_versions(),
        "devices": machine.pop("devices"),
        "cpu": machine.pop("cpu"),
        "machine": machine,
        "updated_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    })
    if seed is not None:
        record["seed"] = seed
    record.setdefault("seed", seed)
    record.setdefault("data_source", {})
    if data_source:
        record["data_source"].update(data_source)
    if section is not None:
        record.setdefault("notebooks", {})[section] = {
            "parameters": parameters or {}, "data_source": data_source or {},
            "git_commit": record["git_commit"], "finished_utc": record["updated_utc"]}
    elif parameters is not None:
        record["parameters"] = parameters
    record.update(chain_records)
    return write_metrics(record, path)
