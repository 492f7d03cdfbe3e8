"""Knowledge distillation: Flake's compressed parity model and the NKD baseline (docs/DESIGN.md §2).

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

Beyond the paper (this artifact's variants, named apart from the paper's, :func:`objective`): the task
term at weight 1; a *decoded* KD term on what is evaluated,
``L_dKD = τ² · mean_j KL(softmax(F(x_j)/τ) ‖ softmax(dec_j/τ))``, ``dec_j = S(p) − Σ_{i≠j} F(x_i)``;
``L_Inter`` as an MSE on features standardised by the teacher's channel statistics. The arm losses
(:class:`FlakeArmLoss`, :class:`WarmupArmLoss`, :class:`NaiveKDArmLoss`) read ``F``'s and the
teacher's passes from a shared batch, for lockstep training (:func:`flake_lib.train.fit_lockstep`).

Intermediate features are read with forward hooks (:class:`FeatureHooks`, after torchdistill),
without touching any model's ``forward``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import coding, models
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

    def __enter__(self) -> FeatureHooks:
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


# ----------------------------------------------------------------------------- variants (lockstep arms)

def decoded_kd_loss(parity_output: torch.Tensor, member_outputs: torch.Tensor,
                    tau: float = TAU) -> torch.Tensor:
    """KD on what is evaluated: ``τ² · mean_{g,j} KL(softmax(F(x_j)/τ) ‖ softmax(dec_j/τ))`` with
    ``dec_j = S(p) − Σ_{i≠j} F(x_i)`` the reconstruction of member ``j`` from the student's parity
    output ``S(p)`` (``parity_output`` ``(G, C)``, ``member_outputs`` ``(G, k, C)``: ``F(x_i)``)."""
    decoded = coding.decode_each(parity_output, member_outputs)
    return kd_loss(decoded.flatten(0, 1), member_outputs.flatten(0, 1), tau, gamma=1.0)


def standardized_mse(student_features: torch.Tensor, teacher_features: torch.Tensor,
                     floor: float = 0.1) -> torch.Tensor:
    """``mean(((f_S − f_T) / σ_T)²)``, ``σ_T`` the teacher's standard deviation of each channel over
    the batch and the spatial positions: an MSE in which every channel weighs the same. ``σ_T`` is
    floored at ``floor`` times the channels' root-mean-square ``σ`` (a dead channel, ``σ_T = 0``, would
    otherwise weigh without bound)."""
    if student_features.shape != teacher_features.shape:
        raise ValueError(f"unit shapes differ: student {tuple(student_features.shape)}, teacher "
                         f"{tuple(teacher_features.shape)}")
    teacher = teacher_features.float()
    sigma = teacher.transpose(0, 1).flatten(1).std(dim=1, unbiased=False)
    sigma = sigma.clamp_min(floor * sigma.pow(2).mean().sqrt() + 1e-12).view(1, -1, *[1] * (teacher.dim() - 2))
    return (((student_features.float() - teacher) / sigma) ** 2).mean()


INTER_KINDS = ("channel_kl", "std_mse")


def inter_term(student_features: list[torch.Tensor], teacher_features: list[torch.Tensor],
               kind: str = "channel_kl", tau: float = TAU) -> torch.Tensor:
    """``L_Inter`` of one kind summed over the block-wise units: ``channel_kl`` (the paper, our reading,
    :func:`channel_kl`) or ``std_mse`` (:func:`standardized_mse`)."""
    if kind == "channel_kl":
        return inter_loss(student_features, teacher_features, tau)
    if kind == "std_mse":
        if len(student_features) != len(teacher_features):
            raise ValueError("student and teacher have a different number of units")
        return sum(standardized_mse(s, t) for s, t in zip(student_features, teacher_features))
    raise ValueError(f"unknown L_Inter kind {kind!r}; use one of {INTER_KINDS}")


@dataclass(frozen=True)
class Objective:
    """The weights of a Flake objective ``task·L_task + kd·τ²KL(T‖S) + decoded_kd·L_dKD + inter·L_Inter``.

    ``kd`` weighs ``τ² KL(softmax(z_T/τ) ‖ softmax(z_S/τ))`` (so the paper's ``L_KD`` is ``kd = γ``);
    ``decoded_kd`` weighs :func:`decoded_kd_loss`; ``inter`` (β) weighs ``L_Inter`` of ``inter_kind``.
    """

    task: float = 1.0
    kd: float = 0.0
    decoded_kd: float = 0.0
    inter: float = 0.0
    inter_kind: str = "channel_kl"

    @property
    def needs_teacher(self) -> bool:
        return self.kd > 0 or self.inter > 0

    def terms(self) -> tuple[str, ...]:
        """The terms with a non-zero weight, in the order task, kd, decoded_kd, inter."""
        return tuple(t for t in ("task", "kd", "decoded_kd", "inter") if getattr(self, t) > 0)


def objective(name: str, gamma: float = GAMMA, beta: float = 1.0) -> Objective:
    """A named objective. The paper's and its ablation (Algorithm 1, weights as the paper writes
    them: ``(1 − γ)`` on ``L_task`` when ``L_KD`` is used, else 1):

    - ``paper``: ``(1 − γ)·L_task + L_KD + β·L_Inter`` (channel KL); ``task``: ``L_task``;
      ``task+kd``: ``(1 − γ)·L_task + L_KD``; ``task+inter``: ``L_task + β·L_Inter``; ``kd+inter``:
      ``L_KD + β·L_Inter`` (the leave-one-out arm without ``L_task``).

    This artifact's variants (never replacing the paper's), with the exact task target at weight 1:

    - ``task1+kd``: ``L_task + L_KD``; ``task1+dkd``: ``L_task + γ·L_dKD`` (:func:`decoded_kd_loss`);
      ``task1+std``: ``L_task + β·L_Inter`` on standardised features (:func:`standardized_mse`).
    """
    table = {
        "paper": Objective(1 - gamma, gamma, 0.0, beta, "channel_kl"),
        "task": Objective(1.0),
        "task+kd": Objective(1 - gamma, gamma),
        "task+inter": Objective(1.0, 0.0, 0.0, beta, "channel_kl"),
        "kd+inter": Objective(0.0, gamma, 0.0, beta, "channel_kl"),  # leave-one-out: the paper's without L_task
        "task1+kd": Objective(1.0, gamma),
        "task1+dkd": Objective(1.0, 0.0, gamma),
        "task1+std": Objective(1.0, 0.0, 0.0, beta, "std_mse"),
    }
    if name not in table:
        raise ValueError(f"unknown objective {name!r}; known: {', '.join(table)}")
    return table[name]


OBJECTIVES = ("paper", "task", "task+kd", "task+inter", "kd+inter", "task1+kd", "task1+dkd", "task1+std")


def objective_value(obj: Objective, student_out: torch.Tensor, member_outputs: torch.Tensor,
                    teacher_out: torch.Tensor | None = None,
                    student_features: list[torch.Tensor] | None = None,
                    teacher_features: list[torch.Tensor] | None = None,
                    tau: float = TAU) -> tuple[torch.Tensor, dict, dict]:
    """The loss of ``obj``, its terms (unweighted, as floats) and each term's weighted tensor (to take
    its gradient apart) for one batch of coding groups."""
    loss, terms = student_out.new_zeros(()), {}
    weighted = {}
    if obj.task > 0:
        value = parity_loss(student_out, member_outputs)
        weighted["task"] = obj.task * value
        terms["task"] = value.item()
    if obj.kd > 0:
        value = kd_loss(student_out, teacher_out, tau, gamma=1.0)
        weighted["kd"] = obj.kd * value
        terms["kd"] = value.item()
    if obj.decoded_kd > 0:
        value = decoded_kd_loss(student_out, member_outputs, tau)
        weighted["decoded_kd"] = obj.decoded_kd * value
        terms["decoded_kd"] = value.item()
    if obj.inter > 0:
        value = inter_term(student_features, teacher_features, obj.inter_kind, tau)
        weighted["inter"] = obj.inter * value
        terms["inter"] = value.item()
    for term in weighted.values():
        loss = loss + term
    return loss, terms, weighted


class StageHooks(FeatureHooks):
    """:class:`FeatureHooks` on the stage outputs that also records each stage's input."""

    def __init__(self, model: nn.Module):
        super().__init__(model, models.block_units(model))
        self.entries, self.inputs = models.stage_entry_modules(model), {}

    def __enter__(self) -> StageHooks:
        super().__enter__()
        for i, module in enumerate(self.entries):
            self.handles.append(module.register_forward_pre_hook(
                lambda _m, args, i=i: self.inputs.__setitem__(i, args[0])))
        return self

    @property
    def stage_inputs(self) -> list[torch.Tensor]:
        return [self.inputs[i] for i in range(len(self.entries))]


@torch.no_grad()
def teacher_pass(teacher: nn.Module, parity_input: torch.Tensor) -> dict:
    """The teacher on the parity queries: ``out``, the stage outputs ``features`` (block-wise units)
    and the ``stage_inputs``, computed once per batch for every arm that reads them."""
    with StageHooks(teacher) as hooks:
        out = teacher(parity_input)
    return {"out": out, "features": hooks.features, "stage_inputs": hooks.stage_inputs}


class FlakeArmLoss:
    """A Flake student's objective as a lockstep arm: :func:`objective_value` of ``obj`` on the
    shared parity queries of ``encoder``, ``F``'s member outputs and the teacher's pass. The last
    batch's terms are kept in ``self.last``."""

    def __init__(self, obj: Objective, encoder: str = "addition", units: list[str] | None = None,
                 tau: float = TAU):
        self.obj, self.encoder, self.units, self.tau = obj, encoder, list(units or []), tau
        self.last: dict[str, float] = {}
        self.terms: dict[str, torch.Tensor] = {}  #: the last batch's weighted terms (their gradients are logged)

    def __call__(self, student: nn.Module, shared) -> torch.Tensor:
        parity_input, members = shared[f"parity:{self.encoder}"], shared["members"]
        teacher = shared[f"teacher:{self.encoder}"] if self.obj.needs_teacher else None
        with FeatureHooks(student, self.units if self.obj.inter > 0 else []) as hooks:
            student_out = student(parity_input)
        loss, self.last, self.terms = objective_value(
            self.obj, student_out, members, teacher["out"] if teacher else None,
            hooks.features if self.obj.inter > 0 else None,
            teacher["features"] if teacher else None, self.tau)
        return loss


class WarmupArmLoss:
    """Block-replacement warm-up: ``Σ_i MSE(stage_i^S(in_i^T), out_i^T)``, each of the student's stages
    fed the teacher's input of that stage and regressing the teacher's stage output."""

    def __init__(self, encoder: str = "addition"):
        self.encoder = encoder

    def __call__(self, student: nn.Module, shared) -> torch.Tensor:
        teacher = shared[f"teacher:{self.encoder}"]
        return sum(F.mse_loss(models.run_stage(student, i, x), target)
                   for i, (x, target) in enumerate(zip(teacher["stage_inputs"], teacher["features"])))


class NaiveKDArmLoss:
    """NKD as a lockstep arm: ``(1 − γ)·CE(z_S, y) + γ τ² KL(softmax(z_F/τ) ‖ softmax(z_S/τ))`` on the
    batch's plain queries, ``z_F`` read from the shared batch (``deployed``)."""

    def __init__(self, gamma: float = GAMMA, tau: float = TAU):
        self.gamma, self.tau = gamma, tau

    def __call__(self, student: nn.Module, shared) -> torch.Tensor:
        x, y = shared.batch[0], shared.batch[1]
        student_out = student(x)
        return (1 - self.gamma) * F.cross_entropy(student_out, y) + kd_loss(
            student_out, shared["deployed"], self.tau, self.gamma)
