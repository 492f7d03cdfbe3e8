"""``REPORT.md`` and the README's results block, built from the claims (:mod:`flake_lib.claims`).

``REPORT.md`` (``results/<profile>/REPORT.md``, written by the chain after its last notebook) holds,
in order: a header generated from ``provenance.json``; the claims at a glance; where this run
deviates from the paper; Table I and Table II beside the paper's columns; each claim with its rule,
the reason for its verdict and links to the figure and notebook; a glossary; the determinism of the
accuracy numbers. Everything is read from the files the notebooks wrote; nothing is typed in.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from . import claims, determinism, methods, paper, stats

REPO_ROOT = Path(__file__).resolve().parents[1]
README_START = "<!-- results:start (written by ./run_all.sh from results/quick; do not edit) -->"
README_END = "<!-- results:end -->"
#: Table I's row order: the paper's methods, then this artifact's extra baselines.

GLOSSARY = {
    "A_a": "available accuracy: top-1 of F when its own prediction arrives",
    "A_d": "degraded-mode accuracy: top-1 (or top-5) of the answer given for an unavailable query "
           "(a reconstruction for PM and Flake, the replica's for SRP, the student's for NKD)",
    "A_o": "overall accuracy for an unavailable fraction f_u: (1 − f_u)·A_a + f_u·A_d",
    "agreement": "how often a reconstruction's top-1 equals F's own top-1",
    "GMM": "max − median of the latency of all queries of a run (ms)",
    "GPM": "p99.9 − median of the latency of all queries of a run (ms)",
    "p99.9": "the latency under which 99.9 % of the queries are answered; a query nothing answered "
             "counts as infinitely late",
    "SRP": "single-replica placement: a replica of F re-runs a query that missed the timing bound",
    "PM": "ParM: a parity model with F's architecture, F_p(x1 + x2) ≈ F(x1) + F(x2), decodes "
          "F(x1) ≈ F_p(x1 + x2) − F(x2)",
    "NKD": "naive knowledge distillation: one compressed student of F re-runs unavailable queries",
    "Flake": "the paper's method: PM's decoding with a parity model compressed by distillation "
             "(L_task + L_KD + L_Inter)",
    "hedge": "hedged requests (this artifact's baseline): a copy of a query is sent after the p95 latency",
    "equal": "equal resources (this artifact's baseline): the extra instance serves queries, no redundancy",
    "ApproxIFER": "a training-free code (this artifact's peer): K queries become K + S Berrut-coded queries run "
                  "by unchanged instances of F; every answer is decoded, from all results or from any K",
    "points": "percentage points: 56.98 % − 50.61 % = 6.37 points",
    "timing bound": "how long the frontend waits for a deployed instance before it treats the query "
                    "as unavailable and recovers it",
    "capacity": "the highest Poisson rate (qps) at which a method keeps its tail statistic (p99.9 or "
                "p99) under a stated bound; censored (≥) when the bound held at every rate tried",
    "noise floor": "the tail of a control run on the same arrivals with no injected fault",
    "emulated device": "a worker padded to a stated per-model service time by sleeping, standing in "
                       "for an accelerator that is busy without using the host CPU",
    "native / emulated": "the two modes of the latency experiment: native runs the models as they are on this "
                         "machine's shared cores; emulated gives every instance a device of its own (the paper's "
                         "setting), with an assumed device time",
    "k": "the size of a coding group: k queries share one parity query",
    "r": "the number of parity models (parity queries) per coding group; r = 2 survives two unavailable members",
    "K / S": "ApproxIFER's code: K queries become K + S coded queries; any K results decode all K",
    "knee": "the offered load at which a method's tail starts to climb steeply: past it, queueing dominates",
    "partner recovery": "Flake's rule when its group cannot be decoded: the unavailable query is coded with "
                        "k − 1 recently answered queries (partners) and decoded from that parity query",
    "headline point": "200 queries per second, the paper's Table I load",
    "regime": "one kind of fault, each its own block of Table I: R1 isolated stragglers (the paper's setting, "
              "where the claims are judged), R2 long single stalls, R3 a whole coding group unavailable",
    "admission": "the one rule that lets redundant work (parity, replica, student, partner requests) onto an "
                 "instance, sized from that instance's service time and a maximum utilisation",
    "supported / not supported": "the verdict words of this artifact's own hypotheses (†): they are tested, "
                                 "not reproduced",
}

#: The groups of claims the findings block speaks of, in the order a reader asks about them, each with
#: what would change its outcome (said only when a claim of the group does not hold).
FINDING_GROUPS = [
    ("The code", ("E0",), ""),
    ("The trace's long tail", ("E1",), "the full trace rather than the mirror's sample"),
    ("Parity models", ("E2",), "a larger parity model or many more epochs (the paper profile, on a GPU)"),
    ("Distillation", ("E3a", "E3b", "E3c", "E3d"), "the paper's 200 epochs and its ResNet-152 → ResNet-50 pair "
                                                    "(the paper profile)"),
    ("Tail latency at 200 qps", ("E4a", "E4b", "E4c", "E4d"), "a machine whose frontend and devices add no "
                                                              "queueing of their own, or the paper's hardware"),
    ("Capacity †", ("E4e",), "faster parity devices relative to the deployed ones, or a load nearer the knee"),
    ("Table II", ("E5",), "the paper's model sizes and training (the paper profile)"),
    ("Beyond the paper †", ("X1", "X2", "X3", "X4"), "longer training of the larger-group models"),
]
HOLDS = {"reproduced", "supported"}
FAILS = {"not", "not supported"}


def _status(words: list[str]) -> str:
    ran = [w for w in words if w not in ("not run", "reference")]
    if not ran:
        return "not run"
    if all(w in HOLDS for w in ran):
        return "holds"
    if all(w in FAILS for w in ran):
        return "does not hold"
    if any(w in HOLDS or w.startswith("partly") for w in ran):
        return "holds in part"
    if any(w in FAILS for w in ran):
        return "does not hold (the rest undecided)"
    return "undecided"


def findings(verdicts: list) -> list[str]:
    """The findings block: one line per group of claims (:data:`FINDING_GROUPS`) in plain words — whether
    it holds, each claim's verdict, why ours differs (computed by the claims) and what would change it."""
    lines = ["## Findings", "",
             "Generated from the verdicts below (each decided by a rule written before the numbers):", ""]
    for title, prefixes, change in FINDING_GROUPS:
        group = [v for v in verdicts if v.id.startswith(prefixes)]
        if not group:
            continue
        status = _status([v.verdict for v in group])
        judged = [v for v in group if v.verdict not in ("not run", "reference")]
        if prefixes == ("E5",):
            counts = {}
            for v in judged:
                counts[v.verdict] = counts.get(v.verdict, 0) + 1
            detail = ", ".join(f"{n} row(s) *{w}*" for w, n in counts.items()) + " (judged on each method's gap to F)"
        else:
            detail = "; ".join(f"{v.id} *{v.verdict}*: {v.claim}" for v in judged) or "no claim measured"
        differs = next((v.differs for v in group if v.differs), "")
        line = f"- **{title}: {status}.** {detail}."
        if differs:
            line += f" *Why ours differs:* {differs}."
        if change and any(v.verdict in FAILS or v.verdict.startswith("partly") for v in judged):
            line += f" *What would change it:* {change}."
        lines.append(line)
    return lines + [""]


def headline_numbers(verdicts: list) -> list[str]:
    """The paper against ours for each claim's headline quantities (the effects with intervals that
    the claims computed), as a Markdown table."""
    rows = []
    for v in verdicts:
        for e in v.effects:
            unit = {"points": " pts", "ms": " ms", "×": "×"}.get(e["unit"], "")
            paper_value = "—" if e["paper"] is None else f"{e['paper']:+.2f}{unit}" if unit != "×" \
                else f"{e['paper']:.2f}×"
            ours = (f"{e['value']:.2f}× [{e['low']:.2f}, {e['high']:.2f}]" if unit == "×" else
                    f"{e['value']:+.2f}{unit} [{e['low']:+.2f}, {e['high']:+.2f}]")
            rows.append([e["label"], paper_value, ours, f"*{v.verdict}*"])
    if not rows:
        return []
    return ["### The paper's numbers beside ours", "",
            "Each quantity a claim is decided on, with its 95 % interval (sampling interval for accuracies, t "
            "interval over repeats or seeds for latencies and ablations):", "",
            *_table(["quantity", "paper", "ours [interval]", "verdict"], rows), ""]


def _read(path: Path) -> dict | None:
    return claims._read(path)


def _pct(value) -> str:
    return claims._pct(value)


def _cell(value) -> str:
    return str(value).replace("|", "/").replace("\n", " ")


def _row(cells) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list]) -> list[str]:
    return [_row(header), "|" + " --- |" * len(header), *[_row(r) for r in rows]]


# ----------------------------------------------------------------------------- model names

def arch_name(arch: str) -> str:
    """``resnet14`` → ``ResNet-14``, ``resnet152-cifar`` → ``ResNet-152 (CIFAR stem)``,
    ``mobilenet_v3_large`` → ``MobileNetV3-large``."""
    match = re.fullmatch(r"resnet(\d+)(-cifar)?", arch)
    if match:
        return f"ResNet-{match[1]}" + (" (CIFAR stem)" if match[2] else "")
    match = re.fullmatch(r"mobilenet_v3_(large|small)", arch)
    return f"MobileNetV3-{match[1]}" if match else arch


def student_name(arch: str, keep) -> str:
    """The model a block-skipped student *is*: a CIFAR ResNet-(6n+2) keeping ``m`` blocks in each of
    its three stages is a ResNet-(6m+2); ResNet-152 keeping 3, 4, 6, 3 blocks is a ResNet-50."""
    keep = list(keep) if isinstance(keep, (list, tuple)) else [keep]
    match = re.fullmatch(r"resnet(\d+)", arch)
    if match and len(keep) == 3 and len(set(keep)) == 1 and (int(match[1]) - 2) % 6 == 0:
        return f"ResNet-{6 * keep[0] + 2} ({arch_name(arch)} keeping {keep[0]} block per stage)"
    if re.fullmatch(r"resnet152(-cifar)?", arch) and keep == [3, 4, 6, 3]:
        return f"ResNet-50 ({arch_name(arch)} keeping 3, 4, 6, 3 blocks)"
    return f"{arch_name(arch)} keeping {', '.join(map(str, keep))} block(s) per stage"


def model_name(text) -> str:
    """A model string of the metrics files (``resnet14``, ``resnet14 keeping [1, 1, 1] blocks/stage``)
    named as what it is (``ResNet-14``, ``ResNet-8 (ResNet-14 keeping 1 block per stage)``)."""
    if not isinstance(text, str):
        return "—"
    match = re.fullmatch(r"(\S+) keeping \[([\d, ]+)\] blocks/stage", text)
    if match:
        return student_name(match[1], [int(v) for v in match[2].split(",")])
    return arch_name(text)


# ----------------------------------------------------------------------------- header

def _yes(flag) -> str:
    return {True: "yes", False: "no"}.get(flag, "unknown")


def header(prov: dict) -> list[str]:
    """The header of REPORT.md, every value from ``provenance.json``."""
    machine = prov.get("machine") or {}
    sources = sorted({str(v) for v in (prov.get("data_source") or {}).values() if v})
    packages = ", ".join(f"{k} {v}" for k, v in (prov.get("packages") or {}).items() if v)
    seconds, commits = prov.get("chain_seconds") or {}, prov.get("chain_commits") or {}
    lines = ["## This run", "",
             *_table(["", "this run (from `provenance.json`)"], [
                 ["commit", f"`{prov.get('git_commit')}`, uncommitted changes: {_yes(prov.get('git_dirty'))}"],
                 ["profile, seed", f"`{prov.get('profile')}`, seed {prov.get('seed')}"],
                 ["machine", (f"{prov.get('cpu')}, {machine.get('cpu_count')} cores, {machine.get('os')}, "
                              f"Python {machine.get('python')}, torch threads {machine.get('torch_threads')}, "
                              f"CUDA {machine.get('cuda')}")],
                 ["OpenVINO devices", ", ".join(prov.get("devices") or []) or "—"],
                 ["data", "; ".join(sources) or "—"],
                 ["packages", packages or "—"],
             ]), ""]
    rows = [[name, f"{seconds[name]:.1f}", f"`{(commits.get(name) or {}).get('git_commit')}`",
             _yes((commits.get(name) or {}).get("git_dirty"))] for name in sorted(seconds)]
    total = sum(seconds.values())
    rows.append(["total", f"{total:.1f} ({total / 60:.1f} min)", "", ""])
    return lines + ["Chain time per notebook, as the chain recorded it when each notebook ended:", "",
                    *_table(["notebook", "seconds", "commit", "uncommitted changes"], rows), ""]


# ----------------------------------------------------------------------------- deviations

def _paper_profile() -> dict:
    """The paper profile as its notebooks would run it (their defaults with its overrides)."""
    from .chain import ChainError, resolved_profile  # the chain writes reports: imported when needed

    try:
        return resolved_profile("paper")
    except ChainError:
        return {}


def deviations(prov: dict, results: Path) -> list[str]:
    """Paper versus this run: models, data, epochs, hardware, latency point, seeds."""
    params = prov.get("parameters") or {}
    experiments = params.get("experiments") or {}
    deployed = "; ".join(f"{name}: {arch_name(e.get('deployed_arch', '?'))}"
                         + (f" ×{e['width']:g} width" if e.get("width", 1.0) != 1.0 else "")
                         for name, e in experiments.items()) or "—"
    students = "; ".join(f"{name}: {student_name(e.get('deployed_arch', '?'), e.get('student_keep', []))}"
                         for name, e in experiments.items()) or "—"
    data = "; ".join(f"{k}: {v}" for k, v in (prov.get("data_source") or {}).items()
                     if ":" in k and v) or "—"
    datasets = sorted({e.get("dataset") for e in experiments.values()})
    epochs = ("F {deployed_epochs}, PM {parity_epochs}, Flake {distill_epochs}, NKD {nkd_epochs}")
    # the epochs the models were trained with: the parameters notebooks 02 and 03 recorded when they ran
    # (a later partial rerun of other notebooks changes the chain's parameters, not the trained models)
    sections = prov.get("notebooks") or {}
    trained = {**params, **sections.get("02-parity-training", {}).get("parameters", {}),
               **sections.get("03-distillation", {}).get("parameters", {})}
    ours_epochs = epochs.format(**{k: trained.get(k, "?") for k in
                                   ("deployed_epochs", "parity_epochs", "distill_epochs", "nkd_epochs")})
    reading = _paper_profile()
    paper_epochs = (epochs.format(**{k: reading.get(k, "?") for k in
                                     ("deployed_epochs", "parity_epochs", "distill_epochs", "nkd_epochs")})
                    + " (this artifact's `paper` profile)") if reading else "—"
    latency = (prov.get("notebooks") or {}).get("04-latency-benchmark", {}).get("parameters", {})
    machine = prov.get("machine") or {}
    seeds = [prov.get("seed")] + [(_read(d / "provenance.json") or {}).get("seed", d.name)
                                  for d in determinism.seed_results_dirs(results)]
    rows = [
        ["deployed model F", paper.PAPER_SETUP["deployed model F"], deployed],
        ["parity model (PM)", paper.PAPER_SETUP["parity model (PM)"],
         "the architecture of F"
         + (f", initialised from {params['parity_init']}" if params.get("parity_init") else "")],
        ["student (Flake, NKD)", paper.PAPER_SETUP["student (Flake, NKD)"], students],
        ["data", paper.PAPER_SETUP["data"], f"{', '.join(map(str, datasets)) or '—'} ({data})"],
        ["epochs", paper_epochs, ours_epochs],
        ["hardware", paper.PAPER_SETUP["hardware"],
         (f"{prov.get('cpu')}, {machine.get('cpu_count')} cores; OpenVINO device {latency.get('ov_device', '?')}"
          + (" (every instance shares the host's cores)" if latency.get("ov_device", "CPU") == "CPU" else ""))],
        ["latency point", paper.PAPER_SETUP["latency point"],
         f"{params.get('rate_qps', '?'):g} qps, {params.get('n_queries', '?'):,} queries per method and "
         f"repeat, {params.get('repeats', '?')} repeats, experiment {params.get('latency_experiment', '?')}"
         if "rate_qps" in params and "n_queries" in params else "—"],
        ["seeds", paper.PAPER_SETUP["seeds"],
         f"seed {seeds[0]}" + "".join(f"; seed {s} in `{d.name}/`" for s, d in
                                      zip(seeds[1:], determinism.seed_results_dirs(results)))],
    ]
    return ["## Where this run deviates from the paper", "",
            *_table(["", "paper", f"this run (`{prov.get('profile')}`, from `provenance.json`)"], rows), ""]


# ----------------------------------------------------------------------------- Table I

def _spread(values: pd.Series, fmt=lambda v: f"{v:.1f}") -> str:
    """Each repeat's value when there are three or fewer, else the median with the range: a median
    of two numbers is their mean, and would hide that they disagree."""
    values = values.dropna()
    if values.empty:
        return "—"
    if len(values) <= 3:
        return ", ".join(fmt(v) for v in values)
    return f"{fmt(values.median())} ({fmt(values.min())}–{fmt(values.max())})"


def _ms(value) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:g}"


def table1_lines(results: Path, with_paper: bool = True) -> list[str]:
    """Table I from ``latency/table1.csv`` (headline point, injected faults, native mode), per method
    each repeat's value (or the median and range over more than three repeats), with the paper's."""
    table = claims.headline_rows(results)
    if table is None or table.empty:
        return [("Table I: not measured (`latency/table1.csv` is missing or has no row with injected "
                 "faults in native mode: notebook 04 did not run).")]
    every = pd.read_csv(Path(results) / "latency" / "table1.csv")
    order = [m for m in methods.REGISTRY if m in set(table["method"])] + \
        sorted(set(table["method"]) - set(methods.REGISTRY))

    def rows(frame: pd.DataFrame, paper_columns: bool) -> list[list]:
        out = []
        for method in order:
            group = frame[frame["method"] == method].sort_values("repeat")
            if group.empty:
                continue
            p = paper.PAPER_TABLE1.get(method, {})
            shown = methods.name(method) if method in methods.REGISTRY else method
            cells = [shown, len(group), _spread(group["median_ms"]), _spread(group["p999_ms"]),
                     _spread(group["gmm_ms"])]
            cells += [_ms(p.get("gmm_ms"))] if paper_columns else []
            cells += [_spread(group["gpm_ms"])] + ([_ms(p.get("gpm_ms"))] if paper_columns else [])
            cells += [_spread(group["n_failed"], lambda v: f"{v:.0f}") if "n_failed" in group else "—",
                      _spread(group["accuracy"], lambda v: f"{100 * v:.2f}%")]
            out.append(cells)
        return out

    columns = ["method", "repeats", "median", "p99.9", "GMM", "paper GMM", "GPM", "paper GPM",
               "failed", "accuracy"]
    rate, n = table["qps"].iloc[0], int(table["n_queries"].iloc[0])
    lines = [(f"{rate:g} qps, {n:,} queries per method and repeat, latency in ms; each repeat's value "
              "(the median and range over repeats when there are more than three); GMM = max − median, "
              "GPM = p99.9 − median, each computed within a repeat."), "",
             *_table(columns if with_paper else [c for c in columns if not c.startswith("paper")],
                     rows(table, with_paper)), ""]
    if "faults" in every and (every["faults"] == "none").any():
        floor = every[(every["faults"] == "none") & (every.get("mode", "native") == "native")]
        lines += ["Noise floor (same arrivals, no injected fault):", "",
                  *_table([c for c in columns if not c.startswith("paper")], rows(floor, False)), ""]
    if "mode" in every and (every["mode"] == "emulated").any():
        emulated = every[(every["mode"] == "emulated") & (every.get("faults", "injected") == "injected")]
        lines += ["Emulated devices (each worker padded to a stated per-model time):", "",
                  *_table([c for c in columns if not c.startswith("paper")], rows(emulated, False)), ""]
    return lines


# ----------------------------------------------------------------------------- Table II

def table2(results: str | Path) -> pd.DataFrame:
    """Table II: ``method, model, params, dataset, top1, top5, paper_top1, paper_top5`` (fractions),
    plus ``top1_low``, ``top1_high`` (95 % test-set interval), ``flops``, ``experiment`` and ``note``.
    A dataset with no result of ours gets a row that says why, never a silent blank."""
    results = Path(results)
    rows = []
    for method in methods.keys(paper=True):
        file = results / "accuracy" / f"{method}.json"
        found = {}
        for row in claims.accuracy_rows(results, method):
            found.setdefault(row.get("dataset"), row)
        for dataset in ("cifar10", "cifar100"):
            paper_top1, paper_top5 = (v / 100 for v in paper.PAPER_TABLE2[method][dataset])
            row = found.get(dataset)
            if row is None:
                note = (f"not measured: accuracy/{method}.json is missing (run notebooks 02 and 03)"
                        if not file.is_file() else f"not measured: this profile has no {dataset} "
                        "experiment (CIFAR-100 needs the canonical download; the paper profile has one)")
                rows.append({"method": method, "model": None, "params": None, "dataset": dataset,
                             "top1": None, "top1_low": None, "top1_high": None, "top5": None,
                             "paper_top1": paper_top1, "paper_top5": paper_top5, "flops": None,
                             "experiment": None, "note": note})
                continue
            spread = stats.proportion_interval(row["degraded_top1"], row.get("test_images") or 0)
            rows.append({"method": method, "model": model_name(row.get("model")), "params": row.get("params"),
                         "dataset": dataset, "top1": row["degraded_top1"], "top1_low": spread["low"],
                         "top1_high": spread["high"], "top5": row.get("degraded_top5"),
                         "paper_top1": paper_top1, "paper_top5": paper_top5, "flops": row.get("flops"),
                         "experiment": row.get("experiment"),
                         "note": "A_d of the model that answers an unavailable query"})
    table = pd.DataFrame(rows)
    table["top1_minus_paper"] = table["top1"] - table["paper_top1"]
    return table


def table2_lines(results: Path, verdicts: dict | None = None, datasets=("cifar10", "cifar100")) -> list[str]:
    """Table II in Markdown beside the paper's columns (and each row's E5 verdict when given)."""
    table = table2(results)
    rows = []
    for r in table[table["dataset"].isin(datasets)].itertuples():
        params = "—" if pd.isna(r.params) else f"{r.params / 1e3:.0f} k"
        flops = "—" if pd.isna(r.flops) else f"{r.flops / 1e6:.1f} M"
        top1 = "—" if pd.isna(r.top1) else f"{_pct(r.top1)} ({_pct(r.top1_low)}–{_pct(r.top1_high)})"
        cells = [methods.name(r.method), "—" if pd.isna(r.model) else r.model, params, flops, r.dataset, top1,
                 _pct(r.paper_top1), _pct(r.top5), _pct(r.paper_top5)]
        if verdicts is not None:
            cells.append(verdicts.get(f"E5 {r.method} {r.dataset}", "—"))
        rows.append(cells)
    header_ = ["method", "model that answers", "params", "FLOPs", "dataset", "top-1 (95% interval)",
               "paper top-1", "top-5", "paper top-5"] + (["verdict (E5)"] if verdicts is not None else [])
    return _table(header_, rows)


# ----------------------------------------------------------------------------- claims

def _links(results: Path, links) -> str:
    """Markdown links to the files that exist (a missing figure is named, not linked)."""
    shown = [f"[{text}]({path})" if (results / path).exists() else f"{text} (`{path}`, not written)"
             for text, path in links]
    return ", ".join(shown) or "—"


def glance_lines(verdicts: list) -> list[str]:
    """The claims at a glance: one row per claim with the paper's value, ours and the verdict."""
    return ["## The claims at a glance", "",
            ("Verdicts: *reproduced* (the evidence supports the claim by its rule), *partly* (the parts "
             "that hold are named), *not* (the evidence contradicts it), *inconclusive* (an interval "
             "covers the decision point, or too few repeats or seeds for one), *not run* (a file is "
             "missing; the reason names it), *reference* (Table II's SRP row: F itself, the row the others' "
             "gaps are measured from). † marks this artifact's claim, not the paper's, judged *supported* "
             "or *not supported* (never reproduced). Each rule "
             "is the docstring of one function of `flake_lib/claims.py`, quoted with the claim below."), "",
            *_table(["id", "claim", "paper", "ours", "verdict"],
                    [[v.id + (" †" if v.origin != "paper" else ""), v.claim, v.paper, v.ours, f"*{v.verdict}*"]
                     for v in verdicts]), ""]


def claims_lines(results: Path, verdicts: list) -> list[str]:
    """Each claim with the paper's value, ours, its rule, the reason for its verdict and links."""
    lines = ["## Each claim: rule, reason, where to look", ""]
    e5 = [v for v in verdicts if v.id.startswith("E5")]
    for v in verdicts:
        if v.id.startswith("E5") and v is not e5[0]:
            continue
        if v.id.startswith("E5"):
            lines += ["### E5 — Table II, per row", "", f"- **rule:** {v.rule}",
                      *[f"- **{w.id}** *{w.verdict}*: {w.why}" for w in e5],
                      f"- **see:** {_links(results, v.links)}", ""]
            continue
        own = " (this artifact's claim)" if v.origin != "paper" else ""
        lines += [f"### {v.id} — {v.claim}: *{v.verdict}*{own}",
                  "", f"- **paper:** {v.paper}", f"- **ours:** {v.ours}", f"- **rule:** {v.rule}",
                  f"- **why:** {v.why}", *([f"- **why ours differs:** {v.differs}"] if v.differs else []),
                  f"- **see:** {_links(results, v.links)}", ""]
    return lines


def build_report(results: str | Path) -> str:
    """``REPORT.md`` of a results folder."""
    results = Path(results)
    prov = _read(results / "provenance.json") or {}
    verdicts = claims.all_claims(results)
    e5 = {v.id: f"*{v.verdict}*" for v in verdicts if v.id.startswith("E5")}
    title = [f"# Flake: the paper versus this run ({prov.get('profile')} profile)", "",
             f"Commit `{str(prov.get('git_commit'))[:10]}`; every number below is computed from this folder's files.",
             ""]
    lines = [*title, *findings(verdicts), *headline_numbers(verdicts), *header(prov), *glance_lines(verdicts),
             *deviations(prov, results),
              "## Table I (latency at the headline point)", "", *table1_lines(results),
              "## Table II (accuracy of the model that answers an unavailable query)", "",
              ("SRP's answer is F's own (a replica), so its top-1 is A_a; PM's and Flake's is a "
               "reconstruction (k = 2, addition code, the paper's objective for Flake); NKD's is its "
               "student's. The interval is the 95 % test-set sampling interval."), "",
              *table2_lines(results, e5), "", *claims_lines(results, verdicts),
              "## Glossary", "", *[f"- **{k}**: {v}" for k, v in GLOSSARY.items()], "",
              *determinism_section(results, prov)]
    return "\n".join(lines).rstrip() + "\n"


def write_report(results: str | Path) -> Path:
    """Write ``results/REPORT.md`` (:func:`build_report`)."""
    path = Path(results) / "REPORT.md"
    path.write_text(build_report(results))
    return path


# ----------------------------------------------------------------------------- determinism

#: The numbers REPORT.md compares across seeds (the rest are in provenance and the metrics files).
HEADLINE_QUANTITIES = {
    "F, A_a top-1": "srp experiment={e}: available_top1",
    "PM (addition), A_d top-1": "pm experiment={e} k=2 encoder=addition targets=augmented: degraded_top1",
    "PM (concatenation), A_d top-1": "pm experiment={e} k=2 encoder=concatenation targets=augmented: degraded_top1",
    "Flake, A_d top-1": "flake experiment={e} k=2 encoder=addition terms=L_task + L_KD + L_Inter: degraded_top1",
    "NKD, A_d top-1": "nkd experiment={e} terms=NKD (KD from F + CE): degraded_top1",
}


def determinism_section(results: str | Path, prov: dict) -> list[str]:
    """REPORT.md's determinism section: this run against the run it overwrote (same seed), and
    against the same profile run with other seeds (``results/<profile>-seedN/``)."""
    results = Path(results)
    current = determinism.accuracy_numbers(results)
    lines = ["## Determinism of the accuracy numbers", ""]
    if not current:
        return lines + ["No accuracy numbers in this run (notebooks 02 and 03 did not run).", ""]
    previous = prov.get("previous_run")
    if previous and previous.get("accuracy"):
        diff = determinism.compare(previous["accuracy"], current)
        same = previous.get("seed") == prov.get("seed")
        before, now = previous.get("parameters"), prov.get("parameters") or {}
        changed = [] if before is None else sorted(k for k in set(before) | set(now)
                                                   if before.get(k) != now.get(k))
        what = ("Same seed" if same else f"Seed {previous.get('seed')} vs {prov.get('seed')}") + (
            f" but other parameters ({', '.join(changed)}), so not a determinism check" if changed else "")
        moved = "identical (|Δ| = 0)" if diff["abs_diff"].max() == 0 else \
            f"max |Δ| = {100 * diff['abs_diff'].max():.2f} points, median {100 * diff['abs_diff'].median():.2f}"
        sections = {k: v for k, v in (previous.get("section_commits") or {}).items()
                    if v and k[:2] in ("02", "03")}  # the notebooks that train and write accuracy
        commits = (", ".join(f"{k} at `{v[:10]}`" for k, v in sorted(sections.items())) if sections
                   else f"last started at commit `{str(previous.get('git_commit'))[:10]}`")
        lines.append(f"- **{what}:** this run against the run it overwrote ({commits}, "
                     f"seed {previous.get('seed')}): "
                     f"{len(diff)} accuracy numbers, {moved}. (A run retrains only the models "
                     "whose checkpoints are missing; a fresh clone retrains all of them.)")
    else:
        lines.append("- **Same seed:** no earlier run of this profile was in place when this one "
                     "retrained its models, so there is nothing to compare with yet.")
    stale = set(claims._stale_seeds(results))
    if stale:
        lines.append(f"- **Seeds of another recipe:** {', '.join(sorted(stale))} were trained with other epochs or "
                     "models than this run, so they are no repeats of it: left out here and in E3d (rerun them "
                     f"with `./run_all.sh --profile {prov.get('profile')} --only 02,03 --seed N`).")
    seed_dirs = [d for d in determinism.seed_results_dirs(results) if determinism.accuracy_numbers(d)
                 and d.name not in stale]
    if not seed_dirs:
        lines.append(f"- **Other seeds:** none run (`./run_all.sh --profile {prov.get('profile')} "
                     "--only 02,03 --seed 1` writes one beside this folder).")
        return lines + [""]
    experiments = sorted({row["experiment"] for method in methods.keys(paper=True)
                          for row in (_read(results / "accuracy" / f"{method}.json") or {}).get("rows", [])})
    header_ = ["quantity", f"seed {prov.get('seed')}"]
    columns = []
    for directory in seed_dirs:
        other = determinism.accuracy_numbers(directory)
        other_seed = (_read(directory / "provenance.json") or {}).get("seed", directory.name)
        diff = determinism.compare(current, other)
        lines.append(f"- **Seed {other_seed}** ([{directory.name}/](../{directory.name}/)): "
                     f"{len(diff)} accuracy numbers, max |Δ| = {100 * diff['abs_diff'].max():.2f} "
                     f"points, median {100 * diff['abs_diff'].median():.2f}.")
        header_.append(f"seed {other_seed}")
        columns.append(other)
    rows = []
    for experiment in experiments:
        for name, pattern in HEADLINE_QUANTITIES.items():
            key = pattern.format(e=experiment)
            if key in current:
                rows.append([f"{name} ({experiment})", _pct(current[key]), *[_pct(c.get(key)) for c in columns]])
    return lines + ["", *_table(header_, rows), ""]


# ----------------------------------------------------------------------------- README results

def readme_results(results: str | Path) -> str:
    """The README's results block: Table II and Table I of ``results`` beside the paper's values,
    and each claim's verdict, all read from the files the notebooks wrote."""
    results = Path(results)
    prov = _read(results / "provenance.json") or {}
    name = results.name
    verdicts = claims.all_claims(results)
    cores = (prov.get("machine") or {}).get("cpu_count")
    lines = [(f"Profile `{prov.get('profile')}`, seed {prov.get('seed')}, commit "
              f"`{str(prov.get('git_commit'))[:10]}`, {prov.get('cpu')} ({cores} cores); chain time "
              f"{sum((prov.get('chain_seconds') or {}).values()) / 60:.0f} min. "
              f"Full report: [`results/{name}/REPORT.md`](results/{name}/REPORT.md)."), "",
             *findings(verdicts)[4:], *headline_numbers(verdicts),
             ("**Table II** (CIFAR-10; top-1 / top-5 of the model that answers an unavailable query, "
              "A_d; SRP answers with a replica of F, so its A_d is F's accuracy):"), "",
             *table2_lines(results, datasets=("cifar10",))]
    table = table2(results)
    missing = table[(table["dataset"] == "cifar100") & table["top1"].isna()]
    if len(missing):
        lines += ["", f"CIFAR-100: {missing['note'].iloc[0]}."]
    if claims.headline_rows(results) is not None:
        lines += ["", "**Table I** (latency under injected faults; the paper's GMM and GPM beside ours):", "",
                  *table1_lines(results)]
    rows = [v for v in verdicts if v.id.startswith("E5")]
    counts = ", ".join(f"{sum(v.verdict == k for v in rows)} *{k}*" for k in dict.fromkeys(v.verdict for v in rows))
    lines += ["", "**Verdicts:** " + "; ".join(f"{v.id} *{v.verdict}*" for v in verdicts if v not in rows)
              + f"; E5 (the {len(rows)} rows of Table II): {counts} (rules and reasons in REPORT.md)."]
    return "\n".join(lines).replace("\n\n\n", "\n\n").rstrip()


def update_readme(readme: str | Path, results: str | Path) -> bool:
    """Replace the block between :data:`README_START` and :data:`README_END` in ``readme`` with
    :func:`readme_results`; return whether the file changed. A README without the markers is an error."""
    readme = Path(readme)
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme} has no results block ({README_START} ... {README_END})")
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    new = f"{head}{README_START}\n{readme_results(results)}\n{README_END}{tail}"
    if new != text:
        readme.write_text(new)
    return new != text


# ----------------------------------------------------------------------------- the forest plot

def forest_figure(verdicts: list):
    """One figure that answers the question: every claim's effect with its 95 % interval (a bar) beside
    the paper's value (a hollow diamond), one panel per unit (points of accuracy, ms, ratios), a dotted
    line at no effect. The marker is filled where the verdict holds, open where it does not."""
    import matplotlib.pyplot as plt

    effects = [(v, e) for v in verdicts for e in v.effects]
    units = [u for u in ("points", "ms", "×") if any(e["unit"] == u for _, e in effects)]
    if not units:
        return None
    heights = [max(1, sum(e["unit"] == u for _, e in effects)) for u in units]
    fig, axes = plt.subplots(len(units), 1, figsize=(8.5, 0.42 * sum(heights) + 1.4 * len(units)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, unit in zip(axes[:, 0], units):
        rows = [(v, e) for v, e in effects if e["unit"] == unit]
        for y, (v, e) in enumerate(reversed(rows)):
            held = v.verdict in HOLDS
            ax.plot([e["low"], e["high"]], [y, y], color="0.25", linewidth=1.6)
            ax.plot([e["value"]], [y], marker="o", markersize=6, color="0.1",
                    markerfacecolor="0.1" if held else "white")
            if e["paper"] is not None:
                ax.plot([e["paper"]], [y], marker="D", markersize=6, markerfacecolor="none",
                        markeredgecolor="#D55E00", markeredgewidth=1.4)
        ax.axvline(1.0 if unit == "×" else 0.0, color="0.5", linestyle=":", linewidth=0.9)
        ax.set_yticks(range(len(rows)), [f"{e['label']}  ({v.verdict})" for v, e in reversed(rows)], fontsize=8)
        ax.set_xlabel({"points": "effect [points of top-1]", "ms": "difference [ms]", "×": "ratio"}[unit])
        if unit == "×":
            from . import style

            ax.set_xscale("log")
            style.plain_log(ax, "x")
        ax.margins(y=0.08)
    axes[0, 0].set_title("Every claim's effect: ours (dot: filled = holds; bar: 95 % interval), "
                         "the paper's (orange diamond)", fontsize=9)
    fig.tight_layout()
    return fig
