"""The paper's reported numbers and setup, as printed, each with where it comes from.

These are references placed beside our measurements (by :mod:`flake_lib.claims` and
:mod:`flake_lib.report`), never used as results. Percent values stay in percent, as the paper prints
them; times are in milliseconds.
"""

from __future__ import annotations

#: ParM's own published gap, the peer's reference for E2 (not a number of this paper): CIFAR-10, k = 2,
#: the addition code, a ResNet-18 deployed model: A_a ≈ 93.5 %, A_d ≈ 87.4 % (Kosaian, Rashmi and
#: Venkataraman, "Parity Models: Erasure-Coded Resilience for Prediction Serving Systems", SOSP 2019,
#: §5, degraded-mode accuracy). The concatenation code is about 2 points above the addition code at k = 2.
PARM_CIFAR10_K2 = {"available_top1": 93.5, "degraded_top1": 87.4, "model": "ResNet-18"}

#: E1, Fig. 1: share of the 1,021 dependent tasks of the Alibaba v2018 trace that contributes 80 % of
#: the total response time ("12.72 % of tasks contribute over 80 %").
PAPER_TRACE_SHARE = 0.1272
PAPER_TRACE_TASKS = 1021

#: E4, Table I at 200 qps (ms): max − median (GMM) and p99.9 − median (GPM) per method.
PAPER_TABLE1 = {"flake": {"gmm_ms": 16, "gpm_ms": 4}, "pm": {"gmm_ms": 22, "gpm_ms": 9},
                "nkd": {"gmm_ms": 15, "gpm_ms": 5}, "srp": {"gmm_ms": 26, "gpm_ms": 17}}
PAPER_RATE_QPS = 200.0

#: E4, Table I: how many times Flake cuts each baseline's GPM, GPM_baseline / GPM_Flake
#: (PM 9 / 4 = 2.25, SRP 17 / 4 = 4.25).
PAPER_GPM_RATIOS = {m: PAPER_TABLE1[m]["gpm_ms"] / PAPER_TABLE1["flake"]["gpm_ms"] for m in ("pm", "srp")}

#: The abstract: Flake cuts the max − median gap (GMM) "by up to 2.5×" against its baselines.
PAPER_GMM_CUT_UP_TO = 2.5

#: E5, Table II: (top-1, top-5) in percent, per method and dataset. SRP's is the accuracy of F itself
#: (a replica answers), so SRP's top-1 is also the paper's available accuracy A_a.
PAPER_TABLE2 = {
    "flake": {"cifar10": (75.46, 96.32), "cifar100": (73.79, 92.92)},
    "pm": {"cifar10": (75.29, 90.34), "cifar100": (65.93, 89.32)},
    "nkd": {"cifar10": (69.38, 95.32), "cifar100": (70.84, 90.32)},
    "srp": {"cifar10": (76.83, 97.04), "cifar100": (73.68, 95.74)},
}

#: The paper's setup, for REPORT.md's table of deviations (the paper's experimental setup, Table II and
#: Fig. 4; the edge device as in the README's hardware note).
PAPER_SETUP = {
    "deployed model F": "ResNet-152 (CIFAR-10, CIFAR-100); MobileNetV3-large (Tiny-ImageNet-200, latency)",
    "parity model (PM)": "the architecture of F",
    "student (Flake, NKD)": "ResNet-50 (ResNet-152 with 3, 4, 6, 3 blocks kept, Fig. 4); MobileNetV3-small",
    "data": "CIFAR-10, CIFAR-100 (canonical images); Tiny-ImageNet-200 for latency",
    "hardware": "an edge server with an Intel Neural Compute Stick 2 (OpenVINO MYRIAD)",
    "latency point": f"{PAPER_RATE_QPS:g} qps",
    "seeds": "one value per table cell, no spread reported",
}
