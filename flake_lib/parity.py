"""ParM parity models (the PM baseline): training objective and targets.

A parity model ``F_p`` sees the parity query of a coding group and is trained to output the sum of
the deployed model's outputs (logits) on the group's members (ParM, Kosaian et al. 2019)::

    L_task = MSE(F_p(enc(x_1, …, x_k)), Σ_i F(x_i)) = mean over groups and classes of (F_p(p) − Σ_i F(x_i))²

Each epoch the shuffled training set is cut into fresh coding groups: a batch of ``k·B`` images gives
``B`` groups of consecutive images. ``F`` is frozen.

Targets. ParM computes ``F(x_i)`` once, on clean (un-augmented) training images, while the parity
model sees encodings of *augmented* images, a mismatch its authors point out. Flake's default,
``targets="augmented"``, runs the frozen ``F`` on exactly the augmented images that are encoded, so
input and target describe the same pictures; it costs one extra forward pass of ``F`` per image.
``targets="clean"`` reproduces ParM (``F`` on the clean images, computed once and cached).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import coding
from .data import ImageSplit, TensorLoader
from .train import predict

TARGETS = ("augmented", "clean")


def group_batch(x: torch.Tensor, k: int) -> torch.Tensor:
    """``(k·B, ...) → (B, k, ...)``: consecutive images of a shuffled batch form a coding group."""
    groups = x.shape[0] // k
    if groups == 0:
        raise ValueError(f"a batch of {x.shape[0]} images cannot hold a coding group of k={k}")
    return x[: groups * k].reshape(groups, k, *x.shape[1:])


def parity_loss(parity_output: torch.Tensor, member_outputs: torch.Tensor,
                encoder: str = "addition") -> torch.Tensor:
    """``L_task = mean((F_p(p) − Σ_i F(x_i))²)``; ``member_outputs`` is ``(G, k, C)``. The ``weighted``
    code's target is ``Σ_i w_i F(x_i)`` (:func:`flake_lib.coding.parity_target`)."""
    return F.mse_loss(parity_output, coding.parity_target(member_outputs, encoder))


class ParityObjective:
    """The training step of a parity model: ``step(parity_model, batch, generator) -> L_task``.

    ``deployed`` is the frozen ``F``. With ``targets="clean"`` the loader must yield indices
    (``TensorLoader(with_index=True)``) and ``clean_outputs`` holds ``F`` on the clean training images.
    """

    def __init__(self, deployed: nn.Module, k: int = 2, encoder: str = "addition",
                 targets: str = "augmented", clean_outputs: torch.Tensor | None = None):
        if targets not in TARGETS:
            raise ValueError(f"unknown targets {targets!r}; use one of {TARGETS}")
        if targets == "clean" and clean_outputs is None:
            raise ValueError("targets='clean' needs clean_outputs (see clean_targets())")
        self.deployed = deployed.eval()
        for p in self.deployed.parameters():
            p.requires_grad_(False)
        self.k, self.encoder, self.targets, self.clean_outputs = k, encoder, targets, clean_outputs

    @torch.no_grad()
    def member_outputs(self, batch: tuple) -> torch.Tensor:
        """``F(x_i)`` for the members of each group, ``(G, k, C)``."""
        if self.targets == "clean":
            index = batch[2]
            return group_batch(self.clean_outputs[index.cpu()].to(batch[0].device), self.k)
        self.deployed.eval()
        return group_batch(self.deployed(batch[0]), self.k)

    def __call__(self, parity_model: nn.Module, batch: tuple, generator=None) -> torch.Tensor:
        parity_input = coding.encode(group_batch(batch[0], self.k), self.encoder)
        if batch[0].is_contiguous(memory_format=torch.channels_last):
            parity_input = parity_input.contiguous(memory_format=torch.channels_last)
        return parity_loss(parity_model(parity_input), self.member_outputs(batch), self.encoder)


def clean_targets(deployed: nn.Module, train: ImageSplit, batch_size: int = 500,
                  device: str | torch.device = "cpu") -> torch.Tensor:
    """``F`` on every clean training image (ParM's targets), in the split's order."""
    return predict(deployed, TensorLoader(train, batch_size), device)


@torch.no_grad()
def parity_outputs(parity_model: nn.Module, x: torch.Tensor, groups: torch.Tensor,
                   encoder: str = "addition", batch_size: int = 500,
                   device: str | torch.device = "cpu") -> torch.Tensor:
    """``F_p(enc(x[groups]))`` for every coding group, ``(G, C)`` on CPU; ``x`` normalised images."""
    parity_model.eval().to(device)
    outputs = []
    for start in range(0, len(groups), batch_size):
        grouped = x[groups[start: start + batch_size]].to(device)
        outputs.append(parity_model(coding.encode(grouped, encoder)).float().cpu())
    return torch.cat(outputs)


class ParityArmLoss:
    """A PM parity model's objective as a lockstep arm (:class:`flake_lib.train.Arm`):
    ``L_task = MSE(F_p(enc(x)), Σ F(x_i))`` read from the shared batch (``parity:<encoder>`` and
    ``members``, or ``clean_members`` for ParM's clean targets)."""

    def __init__(self, encoder: str = "addition", targets: str = "augmented"):
        if targets not in TARGETS:
            raise ValueError(f"unknown targets {targets!r}; use one of {TARGETS}")
        self.encoder, self.targets = encoder, targets

    def __call__(self, parity_model: nn.Module, shared) -> torch.Tensor:
        members = shared["members" if self.targets == "augmented" else "clean_members"]
        return parity_loss(parity_model(shared[f"parity:{self.encoder}"]), members, self.encoder)
