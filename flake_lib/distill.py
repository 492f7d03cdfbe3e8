"""Knowledge distillation: Flake's compressed parity model and the NKD baseline (DESIGN.md §2).

Losses (``z``: outputs, ``f``: block-wise unit features ``(B, C, H, W)``, ``τ`` temperature):

- ``L_KD = γ · τ² · KL(softmax(z_T / τ) ‖ softmax(z_S / τ))`` (paper Eq. 5; Hinton et al.), batch mean,
  ``γ = 0.7``, ``τ = 4``.
- ``L_Inter = Σ_units τ² · mean_{b,c} KL(φ(f_T[b,c] / τ) ‖ φ(f_S[b,c] / τ))`` (paper Eq. 1–2, our
  reading): ``φ`` is a softmax over the ``H·W`` spatial positions of one channel, so each channel
  becomes a distribution over where it fires (channel-wise distillation, Shu et al. 2021).
  Teacher and student units have the same shape (a student keeps every stage of its teacher).
- Flake: ``L = (1 − γ)·L_task + L_KD + β·L_Inter`` with ``L_task`` the parity MSE to ``Σ F(x_i)``;
  the teacher is the trained PM parity model and both see the same parity queries (Algorithm 1).
- NKD: ``L = (1 − γ)·CE(z_S, y) + L_KD`` with ``F`` as teacher on plain queries.

Intermediate features are read with forward hooks (:class:`FeatureHooks`, after torchdistill),
without touching any model's ``forward``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import coding
from .parity import group_batch, parity_loss

GAMMA, TAU = 0.7, 4.0  #: the paper's γ and τ


class FeatureHooks:
    """Context manager that records the outputs of the named submodules on every forward pass.

    >>> with FeatureHooks(model, ["layer1", "layer2"]) as hooks:
    ...     model(x)
    ...     features = hooks.features   # list, in the order of the names
    """

    def __init__(self, model: nn.Module, names: list[str]):
        self.model, self.names, self.outputs, self.handles = model, list(names), {}, []

    def __enter__(self) -> "FeatureHooks":
        for name in self.names:
            module = self.model.get_submodule(name)
            self.handles.append(module.register_forward_hook(
                lambda _m, _inputs, output, name=name: self.outputs.__setitem__(name, output)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    @property
    def features(self) -> list[torch.Tensor]:
        missing = [n for n in self.names if n not in self.outputs]
        if missing:
            raise RuntimeError(f"no output recorded for {missing}: was the model run inside the context?")
        return [self.outputs[n] for n in self.names]


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float = TAU,
            gamma: float = GAMMA) -> torch.Tensor:
    """``γ τ² KL(softmax(z_T/τ) ‖ softmax(z_S/τ))``, averaged over the batch (Eq. 5)."""
    log_student = F.log_softmax(student_logits / tau, dim=-1)
    log_teacher = F.log_softmax(teacher_logits / tau, dim=-1)
    kl = F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean")
    return gamma * tau ** 2 * kl


def channel_kl(student_features: torch.Tensor, teacher_features: torch.Tensor,
               tau: float = TAU) -> torch.Tensor:
    """``τ² · mean_{b,c} KL(φ(f_T[b,c]/τ) ‖ φ(f_S[b,c]/τ))``, ``φ`` = softmax over spatial positions."""
    if student_features.shape != teacher_features.shape:
        raise ValueError(f"unit shapes differ: student {tuple(student_features.shape)}, teacher "
                         f"{tuple(teacher_features.shape)}")
    log_s = F.log_softmax(student_features.flatten(2).float() / tau, dim=-1)
    log_t = F.log_softmax(teacher_features.flatten(2).float() / tau, dim=-1)
    kl = (log_t.exp() * (log_t - log_s)).sum(dim=-1)  # (B, C)
    return tau ** 2 * kl.mean()


def inter_loss(student_features: list[torch.Tensor], teacher_features: list[torch.Tensor],
               tau: float = TAU) -> torch.Tensor:
    """``L_Inter``: :func:`channel_kl` summed over the block-wise units (Eq. 1–2)."""
    if len(student_features) != len(teacher_features):
        raise ValueError("student and teacher have a different number of units")
    return sum(channel_kl(s, t, tau) for s, t in zip(student_features, teacher_features))


class FlakeObjective:
    """Algorithm 1: one training step of Flake's compressed parity model.

    ``use`` selects the terms (``{"task", "kd", "inter"}`` is Flake; ``{"task"}`` is a small parity
    model trained as ParM would). Weights: ``(1 − γ)`` on ``L_task`` when ``kd`` is used (else 1),
    ``β`` on ``L_Inter``. Every term is recorded in ``self.last`` for logging.
    """

    def __init__(self, deployed: nn.Module, teacher: nn.Module, units: list[str], k: int = 2,
                 encoder: str = "addition", gamma: float = GAMMA, tau: float = TAU, beta: float = 1.0,
                 use: tuple[str, ...] = ("task", "kd", "inter")):
        unknown = set(use) - {"task", "kd", "inter"}
        if unknown or not use:
            raise ValueError(f"use must be a non-empty subset of task, kd, inter; got {use}")
        self.deployed, self.teacher = deployed.eval(), teacher.eval()
        for p in [*deployed.parameters(), *teacher.parameters()]:
            p.requires_grad_(False)
        self.units, self.k, self.encoder = list(units), k, encoder
        self.gamma, self.tau, self.beta, self.use = gamma, tau, beta, set(use)
        self.last: dict[str, float] = {}

    def __call__(self, student: nn.Module, batch: tuple, generator=None) -> torch.Tensor:
        grouped = group_batch(batch[0], self.k)
        parity_input = coding.encode(grouped, self.encoder)
        if batch[0].is_contiguous(memory_format=torch.channels_last):
            parity_input = parity_input.contiguous(memory_format=torch.channels_last)
        need_teacher = bool(self.use & {"kd", "inter"})
        with torch.no_grad():
            members = group_batch(self.deployed(batch[0]), self.k) if "task" in self.use else None
            teacher_features = []
            if need_teacher:
                with FeatureHooks(self.teacher, self.units if "inter" in self.use else []) as hooks:
                    teacher_out = self.teacher(parity_input)
                teacher_features = hooks.features
        with FeatureHooks(student, self.units if "inter" in self.use else []) as hooks:
            student_out = student(parity_input)
        loss, self.last = 0.0, {}
        if "task" in self.use:
            task = parity_loss(student_out, members)
            loss = loss + ((1 - self.gamma) if "kd" in self.use else 1.0) * task
            self.last["task"] = task.item()
        if "kd" in self.use:
            kd = kd_loss(student_out, teacher_out, self.tau, self.gamma)
            loss = loss + kd
            self.last["kd"] = kd.item()
        if "inter" in self.use:
            inter = inter_loss(hooks.features, teacher_features, self.tau)
            loss = loss + self.beta * inter
            self.last["inter"] = inter.item()
        return loss


class NaiveKDObjective:
    """NKD: ``(1 − γ)·CE(z_S, y) + γ τ² KL(softmax(z_F/τ) ‖ softmax(z_S/τ))`` on plain queries."""

    def __init__(self, deployed: nn.Module, gamma: float = GAMMA, tau: float = TAU):
        self.deployed, self.gamma, self.tau = deployed.eval(), gamma, tau
        for p in deployed.parameters():
            p.requires_grad_(False)

    def __call__(self, student: nn.Module, batch: tuple, generator=None) -> torch.Tensor:
        x, y = batch[0], batch[1]
        with torch.no_grad():
            teacher_out = self.deployed(x)
        student_out = student(x)
        return (1 - self.gamma) * F.cross_entropy(student_out, y) + kd_loss(
            student_out, teacher_out, self.tau, self.gamma)
