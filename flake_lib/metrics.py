"""Accuracy and reconstruction metrics (DESIGN.md §2 vocabulary).

- ``top_k_accuracy``: fraction of rows whose label is among the ``k`` largest scores.
- ``agreement``: fraction of rows where two score matrices have the same top-1 (reconstruction
  agreement when one of them is ``F``'s own output).
- ``relative_error``: mean over rows of ``‖ŷ − y‖₂ / ‖y‖₂``.
- ``overall_accuracy``: ``A_o = (1 − f_u)·A_a + f_u·A_d``.
"""

from __future__ import annotations

import torch


def top_k_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    k = min(k, scores.shape[-1])
    top = scores.topk(k, dim=-1).indices
    return (top == labels.unsqueeze(-1)).any(dim=-1).float().mean().item()


def agreement(scores_a: torch.Tensor, scores_b: torch.Tensor) -> float:
    return (scores_a.argmax(-1) == scores_b.argmax(-1)).float().mean().item()


def relative_error(estimate: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> float:
    estimate, target = estimate.flatten(1), target.flatten(1)
    return ((estimate - target).norm(dim=1) / target.norm(dim=1).clamp_min(eps)).mean().item()


def overall_accuracy(available: float, degraded: float, unavailable_fraction):
    """``A_o = (1 − f_u)·A_a + f_u·A_d`` (works element-wise on arrays of ``f_u``)."""
    return (1 - unavailable_fraction) * available + unavailable_fraction * degraded
