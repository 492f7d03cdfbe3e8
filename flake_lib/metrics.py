"""Accuracy and reconstruction metrics (docs/DESIGN.md §2 vocabulary).

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


def degraded_mode(deployed_outputs: torch.Tensor, reconstructions: torch.Tensor,
                  groups: torch.Tensor, labels: torch.Tensor) -> dict:
    """Accuracy of ``F`` and of the reconstructions of unavailable predictions (docs/DESIGN.md §2).

    ``deployed_outputs`` ``(N, C)``: ``F`` on the test images; ``reconstructions`` ``(G, k, C)``:
    member ``j`` of group ``g`` rebuilt as if it alone were unavailable (``coding.decode_each``);
    ``groups`` ``(G, k)`` indexes the test images. Returns ``available_top1/top5`` (``A_a``, all
    test images), ``degraded_top1/top5`` (``A_d`` against the labels) and
    ``reconstruction_agreement`` (top-1 of the reconstruction equals ``F``'s own top-1).
    """
    rebuilt = reconstructions.flatten(0, 1)
    member_labels = labels[groups].flatten()
    return {
        "available_top1": top_k_accuracy(deployed_outputs, labels, 1),
        "available_top5": top_k_accuracy(deployed_outputs, labels, 5),
        "degraded_top1": top_k_accuracy(rebuilt, member_labels, 1),
        "degraded_top5": top_k_accuracy(rebuilt, member_labels, 5),
        "reconstruction_agreement": agreement(rebuilt, deployed_outputs[groups].flatten(0, 1)),
        "n_groups": int(groups.shape[0]),
    }
