"""An *experiment* (docs/DESIGN.md §4): one dataset and one deployed model ``F``, with its parity models.

Notebooks 02 and 03 train every experiment of a profile through these functions, so that both use
the same data, the same ``F`` and the same checkpoints under ``results/<profile>/checkpoints/<name>/``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from . import coding, data, distill, metrics, models, parity, train


@dataclass
class Experiment:
    """``name``: e.g. ``cifar10-resnet``; ``dataset``: a :mod:`flake_lib.data` name;
    ``deployed_arch``: a :func:`flake_lib.models.build_model` name; ``width``: CIFAR ResNet width;
    ``student_keep``: blocks kept per stage by the compressed models (Flake's parity model, NKD)."""

    name: str
    dataset: str
    deployed_arch: str
    results_dir: str | os.PathLike
    width: float = 1.0
    student_keep: tuple[int, ...] | int = 1

    @classmethod
    def from_spec(cls, name: str, spec: dict, results_dir) -> Experiment:
        unknown = set(spec) - {"dataset", "deployed_arch", "width", "student_keep"}
        if unknown or not {"dataset", "deployed_arch"} <= set(spec):
            raise ValueError(f"experiment {name!r}: spec needs dataset and deployed_arch (optional "
                             f"width, student_keep), got {sorted(spec)}")
        keep = spec.get("student_keep", 1)
        return cls(name, spec["dataset"], spec["deployed_arch"], results_dir, spec.get("width", 1.0),
                   tuple(keep) if isinstance(keep, (list, tuple)) else int(keep))

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.results_dir) / "checkpoints" / self.name

    def load_data(self, mirror: str | None = None, n_train: int = 0, n_test: int = 0,
                  seed: int = 0) -> tuple[data.ImageSplit, data.ImageSplit]:
        """Train and test splits (``n_*`` > 0: seeded class-balanced subsets)."""
        train_split = data.load(self.dataset, "train", mirror=mirror or None, n=n_train or None, seed=seed)
        test_split = data.load(self.dataset, "test", mirror=mirror or None, n=n_test or None, seed=seed)
        return train_split, test_split

    def build_deployed(self, num_classes: int) -> nn.Module:
        return models.build_model(self.deployed_arch, num_classes, width=self.width)


def channels_last(model: nn.Module, enabled: bool = True) -> nn.Module:
    return model.to(memory_format=torch.channels_last) if enabled else model


def classifier_evaluator(test_split: data.ImageSplit, device: str = "cpu", fast_cpu: bool = True,
                         prefix: str = "test"):
    """``evaluate(model) -> {<prefix>_top1, <prefix>_top5}`` on the whole split (learning curves;
    ``prefix="val"`` on the validation split)."""
    test_loader = data.TensorLoader(test_split, 500, channels_last=fast_cpu)

    def evaluate(model: nn.Module) -> dict:
        out = train.predict(model, test_loader, device)
        return {f"{prefix}_top1": metrics.top_k_accuracy(out, test_split.labels, 1),
                f"{prefix}_top5": metrics.top_k_accuracy(out, test_split.labels, 5)}

    return evaluate


def parity_evaluator(deployed: nn.Module, test_split: data.ImageSplit, k: int, encoder: str,
                     seed: int = 0, device: str = "cpu", eval_images: int = 2000):
    """``evaluate(parity_model) -> {test_degraded_top1, test_reconstruction_agreement}`` on a seeded
    class-balanced subset of ``eval_images`` test images (learning curves of parity models; test
    splits are stored class by class, so their first images would hold only a few classes)."""
    n = min(eval_images, len(test_split))
    curve_split = test_split.subset(data.class_balanced_subset(test_split.labels, n, seed)
                                    if n < len(test_split) else torch.arange(n))
    curve_outputs = train.predict(deployed, data.TensorLoader(curve_split, 500), device)

    def evaluate(model: nn.Module) -> dict:
        row = evaluate_parity(model, curve_outputs, curve_split, k, encoder, seed=seed, device=device)
        return {"test_degraded_top1": row["degraded_top1"],
                "test_reconstruction_agreement": row["reconstruction_agreement"]}

    return evaluate


def train_deployed(exp: Experiment, train_split: data.ImageSplit, test_split: data.ImageSplit,
                   cfg: train.OptimConfig, *, batch_size: int = 128, seed: int = 0,
                   device: str = "cpu", fast_cpu: bool = True,
                   prefix: str = "test") -> tuple[nn.Module, list[dict]]:
    """Train (or resume, or load) ``F`` with cross-entropy; top-1/top-5 on ``test_split`` logged
    every epoch as ``<prefix>_top1`` (``prefix="val"`` when it is the validation split)."""
    torch.manual_seed(seed)
    model = channels_last(exp.build_deployed(train_split.num_classes), fast_cpu)
    loader = data.TensorLoader(train_split, batch_size, shuffle=True, augment=True, seed=seed,
                               drop_last=True, channels_last=fast_cpu)
    evaluate = classifier_evaluator(test_split, device, fast_cpu, prefix)

    history = train.fit(model, train.classification_step, loader, cfg, evaluate=evaluate,
                        checkpoint=exp.checkpoint_dir / "deployed.pt", device=device,
                        args={"role": "deployed", "arch": exp.deployed_arch, "width": exp.width,
                              "dataset": exp.dataset, "train": train_split.describe(),
                              "batch_size": batch_size, "seed": seed},
                        desc=f"{exp.name} F")
    return model, history


def load_trained(exp: Experiment, checkpoint: str, num_classes: int, keep=None) -> nn.Module:
    """A model trained by an earlier notebook, from ``<checkpoint_dir>/<checkpoint>.pt``."""
    path = exp.checkpoint_dir / f"{checkpoint}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run notebook 02 (./run_all.sh --only 02) for "
                                f"this profile first")
    model = exp.build_deployed(num_classes)
    if keep is not None:
        model = models.build_student(model, keep)
    state = train.load_checkpoint(path)
    model.load_state_dict(state["model"])
    return model.eval()


def single_query_latency_ms(model: nn.Module, image_shape, repeats: int = 200, warmup: int = 20,
                            threads: int = 1) -> dict:
    """Median and p99 wall time of one query (batch 1) through PyTorch on CPU, in milliseconds."""
    import time

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    model = model.eval().to("cpu", memory_format=torch.contiguous_format)
    x = torch.randn(1, *image_shape)
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000)
    torch.set_num_threads(previous)
    times = torch.tensor(times)
    return {"latency_median_ms": times.median().item(), "latency_p99_ms": times.quantile(0.99).item(),
            "latency_threads": threads}


def test_images(split: data.ImageSplit) -> torch.Tensor:
    """Normalised float images of a split, ``(N, 3, H, W)``."""
    return data.normalize(split.images, *split.normalization)


def evaluate_parity(parity_model: nn.Module, deployed_outputs: torch.Tensor,
                    test_split: data.ImageSplit, k: int, encoder: str, *, seed: int = 0,
                    device: str = "cpu") -> dict:
    """Degraded-mode accuracy of a parity model: seeded coding groups over the test split, each
    member unavailable in turn, reconstructed by the subtraction decoder; ``mse`` is the parity
    loss ``mean((F_p(p) − Σ_i F(x_i))²)`` on these (un-augmented) groups."""
    groups = coding.make_groups(len(test_split), k, torch.Generator().manual_seed(seed))
    parity_out = parity.parity_outputs(parity_model, test_images(test_split), groups, encoder,
                                       device=device)
    rebuilt = coding.decode_each(parity_out, deployed_outputs[groups], encoder)
    row = metrics.degraded_mode(deployed_outputs, rebuilt, groups, test_split.labels)
    row["mse"] = torch.mean((parity_out - coding.parity_target(deployed_outputs[groups], encoder)) ** 2).item()
    return row


def evaluate_two_parity(sum_model: nn.Module, weighted_model: nn.Module, deployed_outputs: torch.Tensor,
                        test_split: data.ImageSplit, k: int, *, seed: int = 0, device: str = "cpu") -> dict:
    """The ``r = 2`` code on seeded coding groups of ``k`` (the groups of :func:`evaluate_parity`):
    ``one_top1``, one member unavailable, rebuilt from the sum parity ``F_p(Σ x_i) − Σ_{i≠j} F(x_i)``
    (what ``r = 1`` does); ``one_weighted_top1``, the same from the weighted parity alone; ``two_top1``,
    two members ``a, b`` unavailable (every pair of every group), both rebuilt by
    :func:`flake_lib.coding.decode_pairs`; ``condition``, the worst pair's condition number."""
    weights = coding.two_parity_weights(k)
    groups = coding.make_groups(len(test_split), k, torch.Generator().manual_seed(seed))
    x, members = test_images(test_split), deployed_outputs[groups]
    p_sum = parity.parity_outputs(sum_model, x, groups, "addition", device=device)
    p_weighted = parity.parity_outputs(weighted_model, x, groups, "weighted", device=device)
    labels = test_split.labels[groups]
    one = coding.decode_each(p_sum, members).argmax(-1) == labels
    one_weighted = coding.decode_each(p_weighted, members, "weighted").argmax(-1) == labels
    hits, n_pairs = 0, 0
    for a in range(k):
        for b in range(a + 1, k):
            rebuilt = coding.decode_pairs(p_sum, p_weighted, members, a, b, weights)
            hits += int((rebuilt.argmax(-1) == labels[:, [a, b]]).sum())
            n_pairs += 1
    return {"k": k, "weights": list(weights), "condition": coding.two_parity_condition(weights),
            "n_groups": len(groups), "one_top1": one.float().mean().item(),
            "one_weighted_top1": one_weighted.float().mean().item(),
            "two_top1": hits / (2 * n_pairs * len(groups)), "n_one": one.numel(), "n_two": 2 * n_pairs * len(groups)}


def cost(model: nn.Module, image_shape) -> dict:
    """Parameters and FLOPs of one query."""
    return {"params": models.count_parameters(model), "flops": models.count_flops(model, (1, *image_shape))}


# ----------------------------------------------------------------------------- validation, lockstep arms

@dataclass
class Splits:
    """Training images (the training split less the validation images), validation, test."""

    train: data.ImageSplit
    validation: data.ImageSplit
    test: data.ImageSplit


def load_splits(exp: Experiment, mirror: str | None = None, *, n_train: int = 0, n_test: int = 0,
                n_validation: int = 5000, seed: int = 0, validation_seed: int = 0) -> Splits:
    """The experiment's splits: ``n_validation`` class-balanced images carved from the training split
    (drawn with ``validation_seed``, the same for every model and every ``seed`` of a profile) for
    learning curves and every choice (checkpoint, β, initialisation, variant); the test split is
    read once, for the final numbers."""
    train_split, test_split = exp.load_data(mirror, n_train, n_test, seed)
    train_part, validation = data.train_validation_split(train_split, n_validation, validation_seed)
    return Splits(train_part, validation, test_split)


class ParityValidation:
    """``evaluate(parity_model) -> {val_degraded_top1, val_degraded_top5, val_agreement, val_mse}`` on
    the validation split (seeded coding groups, each member unavailable in turn; ``val_mse`` the
    parity MSE to ``Σ F(x_i)``). ``F``'s outputs on the split are computed once."""

    def __init__(self, deployed: nn.Module, split: data.ImageSplit, k: int, encoder: str, *,
                 seed: int = 0, device: str = "cpu", prefix: str = "val"):
        self.split, self.k, self.encoder, self.seed, self.device = split, k, encoder, seed, device
        self.prefix = prefix
        self.deployed_outputs = train.predict(deployed, data.TensorLoader(split, 500), device)

    def __call__(self, model: nn.Module) -> dict:
        row = evaluate_parity(model, self.deployed_outputs, self.split, self.k, self.encoder,
                              seed=self.seed, device=self.device)
        p = self.prefix
        return {f"{p}_degraded_top1": row["degraded_top1"], f"{p}_degraded_top5": row["degraded_top5"],
                f"{p}_agreement": row["reconstruction_agreement"], f"{p}_mse": row["mse"],
                f"{p}_images": self.k * row["n_groups"]}


class ClassifierValidation:
    """``evaluate(model) -> {val_top1, val_top5, val_agreement}`` (agreement with ``F``) on the
    validation split; for NKD, which answers an unavailable query itself, ``val_degraded_top1/5``
    repeat its top-1/top-5 so that its curve sits beside the parity models'."""

    def __init__(self, deployed: nn.Module, split: data.ImageSplit, *, device: str = "cpu",
                 prefix: str = "val"):
        self.split, self.device, self.prefix = split, device, prefix
        self.deployed_outputs = train.predict(deployed, data.TensorLoader(split, 500), device)

    def __call__(self, model: nn.Module) -> dict:
        out = train.predict(model, data.TensorLoader(self.split, 500), self.device)
        p, labels = self.prefix, self.split.labels
        top1, top5 = metrics.top_k_accuracy(out, labels, 1), metrics.top_k_accuracy(out, labels, 5)
        return {f"{p}_top1": top1, f"{p}_top5": top5, f"{p}_degraded_top1": top1,
                f"{p}_degraded_top5": top5, f"{p}_agreement": metrics.agreement(out, self.deployed_outputs),
                f"{p}_images": len(self.split)}


def shared_producers(deployed: nn.Module, teachers: dict[str, nn.Module] | None = None, k: int = 2,
                     clean_outputs: torch.Tensor | None = None) -> dict:
    """What the arms of a lockstep run share, each computed once per batch (:class:`train.SharedBatch`):

    - ``deployed``: ``F`` on the batch's (augmented) images, ``(N, C)``; ``members``: the same
      grouped, ``(G, k, C)`` (targets ``Σ F(x_i)``); ``clean_members``: ``F`` on the clean images
      (ParM's targets; the loader yields indices);
    - ``parity:<encoder>``: the parity queries ``enc(x_1..x_k)``;
    - ``teacher:<encoder>``: the teacher (the PM parity model of that code) on them:
      ``{"out", "features" (stage outputs), "stage_inputs"}``.
    """
    deployed.eval()
    for p in deployed.parameters():
        p.requires_grad_(False)
    producers = {
        "deployed": lambda s: deployed(s.batch[0]),
        "members": lambda s: parity.group_batch(s["deployed"], k),
    }
    if clean_outputs is not None:
        producers["clean_members"] = lambda s: parity.group_batch(
            clean_outputs[s.batch[2].cpu()].to(s.batch[0].device), k)
    for encoder in coding.PARITY_ENCODERS:
        producers[f"parity:{encoder}"] = lambda s, encoder=encoder: _parity_queries(s.batch[0], k, encoder)
    for encoder, teacher in (teachers or {}).items():
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        producers[f"teacher:{encoder}"] = lambda s, encoder=encoder, teacher=teacher: distill.teacher_pass(
            teacher, s[f"parity:{encoder}"])
    return producers


def _parity_queries(x: torch.Tensor, k: int, encoder: str) -> torch.Tensor:
    queries = coding.encode(parity.group_batch(x, k), encoder)
    if x.is_contiguous(memory_format=torch.channels_last):
        queries = queries.contiguous(memory_format=torch.channels_last)
    return queries


def pm_name(k: int, encoder: str, targets: str = "augmented", suffix: str = "") -> str:
    """Checkpoint name of a PM parity model (``pm-k2-addition``, ``pm-k2-addition-clean``, ...)."""
    return f"pm-k{k}-{encoder}" + ("-clean" if targets == "clean" else "") + (f"-{suffix}" if suffix else "")


def pm_arm(exp: Experiment, deployed: nn.Module, num_classes: int, cfg: train.OptimConfig, *,
           k: int = 2, encoder: str = "addition", targets: str = "augmented", init: str = "deployed",
           evaluate=None, select: str | None = None, name: str | None = None, seed: int = 0,
           fast_cpu: bool = True, width_factor: float = 1.0) -> train.Arm:
    """A PM parity model as a lockstep arm: ``F``'s architecture, MSE to ``Σ F(x_i)``; ``init``
    ``deployed`` (a copy of ``F``) or ``scratch`` (ParM); ``select`` keeps the best epoch on it;
    ``width_factor``: ``F``'s architecture with every stage that many times wider (from scratch: a
    capacity control)."""
    if init not in ("scratch", "deployed"):
        raise ValueError(f"unknown parity init {init!r}; use scratch or deployed")
    if width_factor != 1.0 and init == "deployed":
        raise ValueError("a wider parity model cannot start from F's weights: use init='scratch'")
    name = name or pm_name(k, encoder, targets)
    torch.manual_seed(seed + 1 + zlib.crc32(name.encode()) % 1000)
    model = channels_last(models.build_model(exp.deployed_arch, num_classes, width=exp.width * width_factor)
                          if width_factor != 1.0 else exp.build_deployed(num_classes), fast_cpu)
    if init == "deployed":
        model.load_state_dict(deployed.state_dict())
    model.requires_grad_(True)
    return train.Arm(name, model, parity.ParityArmLoss(encoder, targets), cfg, evaluate, select,
                     args={"role": "parity", "arch": exp.deployed_arch, "width": exp.width * width_factor,
                           "dataset": exp.dataset, "k": k, "encoder": encoder, "targets": targets,
                           "init": init, "seed": seed})


@dataclass(frozen=True)
class FlakeVariant:
    """A Flake model: an objective (:func:`flake_lib.distill.objective`), a student shape and an
    initialisation.

    ``student``: ``skip`` (the paper's Fig. 4: the teacher's stem and widths, ``exp.student_keep``
    blocks per stage) or ``thin`` (this artifact's: the teacher's depth, channels scaled to at most
    half its FLOPs, :func:`flake_lib.models.thin_student`). ``init``: ``teacher`` (the kept blocks of
    the PM teacher; for a thin student its most important channels, :func:`flake_lib.models.slice_thin`),
    ``scratch``, ``nkd`` (the NKD student after ``init_epochs`` epochs) or ``warmup``
    (``init_epochs`` epochs in which each kept stage regresses the teacher's stage output from the
    teacher's stage input). ``init_epochs`` count in the variant's budget. ``beta`` weighs ``L_Inter``.
    """

    name: str
    objective: str = "paper"
    student: str = "skip"
    init: str = "teacher"
    beta: float = 1.0
    init_epochs: int = 1

    @classmethod
    def from_spec(cls, name: str, spec: dict | None) -> FlakeVariant:
        spec = dict(spec or {})
        unknown = set(spec) - {"objective", "student", "init", "beta", "init_epochs"}
        if unknown:
            raise ValueError(f"Flake variant {name!r}: unknown keys {sorted(unknown)}")
        variant = cls(name, **spec)
        distill.objective(variant.objective)
        if variant.student not in ("skip", "thin"):
            raise ValueError(f"variant {name!r}: student must be skip or thin, got {variant.student!r}")
        if variant.init not in ("teacher", "scratch", "nkd", "warmup"):
            raise ValueError(f"variant {name!r}: init must be teacher, scratch, nkd or warmup")
        if variant.student == "thin" and variant.init not in ("scratch", "teacher"):
            raise ValueError(f"variant {name!r}: a thin student starts from scratch or from the teacher's "
                             "channels (init: teacher, CIFAR ResNets)")
        if variant.student == "thin" and distill.objective(variant.objective).inter > 0:
            raise ValueError(f"variant {name!r}: L_Inter needs stage outputs of the teacher's shape; "
                             "a thin student has other widths")
        return variant


#: The paper's objective and its ablation arms keep the names of their loss-term sets (the names
#: their checkpoints had before variants were named, so earlier checkpoints still load).
PAPER_ABLATION = {"paper": ("task", "kd", "inter"), "task": ("task",), "task+kd": ("task", "kd"),
                  "task+inter": ("task", "inter"), "kd+inter": ("kd", "inter")}


def ablation_objective(terms) -> str:
    """The objective name of a loss-term set of the paper's ablation (``{"task", "kd"}`` → ``task+kd``)."""
    for name, used in PAPER_ABLATION.items():
        if set(used) == set(terms):
            return name
    raise ValueError(f"no objective of the paper's ablation uses the terms {sorted(terms)}")


def terms_label(terms) -> str:
    """``L_task + L_KD + L_Inter`` style label of a loss-term set (the ablation's ``terms`` column)."""
    names = {"task": "L_task", "kd": "L_KD", "inter": "L_Inter"}
    return " + ".join(names[t] for t in ("task", "kd", "inter") if t in set(terms))


#: Short labels of this artifact's objectives (no ``L_`` prefix: those name the paper's terms).
OBJECTIVE_LABELS = {"task1+kd": "task ×1 + KD", "task1+dkd": "task ×1 + decoded KD",
                    "task1+std": "task ×1 + standardised Inter"}


def objective_label(objective: str) -> str:
    """``L_task + L_KD + L_Inter`` for the paper's objective and its ablation, a short label else."""
    if objective in PAPER_ABLATION:
        return terms_label(PAPER_ABLATION[objective])
    return OBJECTIVE_LABELS.get(objective, objective)


def flake_name(variant: str, encoder: str = "addition", k: int = 2) -> str:
    """Checkpoint name of a Flake variant: the paper's objective and its ablation arms by their loss
    terms (``paper`` → ``flake-k2-addition-inter+kd+task``, ``task+kd`` → ``...-kd+task``), this
    artifact's variants by their name (``flake-k<k>-<encoder>-<variant>``)."""
    terms = PAPER_ABLATION.get(variant)
    return f"flake-k{k}-{encoder}-" + ("+".join(sorted(terms)) if terms else variant)


def resolve_flake(exp: Experiment, variant: str = "paper", encoder: str = "addition") -> tuple[str, str]:
    """The Flake variant and encoder used downstream (serving, Table II): as given, or, for
    ``"selected"``, those notebook 03 chose on validation (``accuracy/flake_selection.json``)."""
    if "selected" in (variant, encoder):
        path = Path(exp.results_dir) / "accuracy" / "flake_selection.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run notebook 03 for this profile first")
        chosen = json.loads(path.read_text())["experiments"][exp.name]
        variant = chosen["variant"] if variant == "selected" else variant
        encoder = chosen["encoder"] if encoder == "selected" else encoder
    return variant, encoder


def flake_checkpoint(exp: Experiment, variant: str = "paper", encoder: str = "addition", k: int = 2) -> str:
    """The checkpoint name (under ``exp.checkpoint_dir``) of the Flake parity model that later
    notebooks use: the profile parameters ``flake_variant`` and ``flake_encoder`` resolved by
    :func:`resolve_flake`. No notebook types a Flake checkpoint name."""
    variant, encoder = resolve_flake(exp, variant, encoder)
    return flake_name(variant, encoder, k)


def load_flake(exp: Experiment, num_classes: int, variant: str = "paper", encoder: str = "addition",
               k: int = 2) -> nn.Module:
    """The trained Flake parity model of :func:`flake_checkpoint`, built with the student shape its
    checkpoint records (block-skipped or thin)."""
    name = flake_checkpoint(exp, variant, encoder, k)
    path = exp.checkpoint_dir / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run notebook 03 for this profile first")
    state = train.load_checkpoint(path)
    model = build_flake_student(exp, num_classes, state["args"].get("student", "skip"),
                                width=state["args"].get("student_width"))
    model.load_state_dict(state["model"])
    return model.eval()


def build_flake_student(exp: Experiment, num_classes: int, student: str = "skip", *,
                        teacher: nn.Module | None = None, copy_weights: bool = False,
                        width: float | None = None) -> nn.Module:
    """An untrained (or, with ``teacher`` and ``copy_weights``, truncated-teacher) student."""
    if student == "skip":
        base = teacher if teacher is not None else exp.build_deployed(num_classes)
        return models.build_student(base, exp.student_keep, copy_weights=copy_weights)
    if student == "thin":
        if width is not None:
            return models._scaled_model(exp.deployed_arch, num_classes, width, True)
        thin = models.thin_student(exp.deployed_arch, num_classes, width=exp.width,
                                   input_shape=(1, *data.spec(exp.dataset).image_shape))[0]
        if copy_weights:  # the teacher's most important channels (a pruned copy of the teacher)
            if not isinstance(teacher, models.CifarResNet):
                raise ValueError(f"a thin student of {exp.deployed_arch} cannot start from its teacher's "
                                 "channels: use init: scratch")
            models.slice_thin(teacher, thin)
        return thin
    raise ValueError(f"unknown student {student!r}; use skip or thin")


def flake_arm(exp: Experiment, teacher: nn.Module, variant: FlakeVariant, cfg: train.OptimConfig, *,
              k: int = 2, encoder: str = "addition", gamma: float = distill.GAMMA,
              tau: float = distill.TAU, evaluate=None, select: str | None = None,
              name: str | None = None, seed: int = 0, fast_cpu: bool = True,
              init_arm: str | None = None) -> train.Arm:
    """A Flake student as a lockstep arm (Algorithm 1 with ``variant``'s objective), taught by
    ``teacher`` (the PM parity model of ``encoder``). Variants initialised by ``nkd`` or ``warmup``
    start at epoch ``variant.init_epochs`` from the arm named ``init_arm`` and train the rest of
    ``cfg.epochs`` (their budget counts the initialising epochs)."""
    name = name or flake_name(variant.name, encoder, k)
    torch.manual_seed(seed + 2 + zlib.crc32(name.encode()) % 1000)
    num_classes = teacher_classes(teacher)
    student = build_flake_student(exp, num_classes, variant.student, teacher=teacher,
                                  copy_weights=variant.init == "teacher")
    student = channels_last(student.requires_grad_(True), fast_cpu)
    obj = distill.objective(variant.objective, gamma, variant.beta)
    loss = distill.FlakeArmLoss(obj, encoder, models.block_units(student), tau)
    start, epochs = 0, cfg.epochs
    if variant.init in ("nkd", "warmup"):
        if init_arm is None:
            raise ValueError(f"variant {variant.name!r} starts from another arm: give init_arm")
        start, epochs = variant.init_epochs, cfg.epochs - variant.init_epochs
        if epochs < 1:
            raise ValueError(f"variant {variant.name!r}: init_epochs must be below the {cfg.epochs} epochs")
    width = getattr(student, "width", None) if variant.student == "thin" else None
    return train.Arm(name, student, loss, _replace_epochs(cfg, epochs), evaluate, select,
                     start_epoch=start, init_from=init_arm if start else None,
                     args={"role": "flake", "variant": variant.name, "objective": variant.objective,
                           "student": variant.student, "student_width": width, "init": variant.init,
                           "init_epochs": variant.init_epochs if start else 0,
                           "teacher_arch": exp.deployed_arch, "width": exp.width,
                           "keep": exp.student_keep, "dataset": exp.dataset, "k": k,
                           "encoder": encoder, "gamma": gamma, "tau": tau, "beta": variant.beta,
                           "seed": seed})


def warmup_arm(exp: Experiment, teacher: nn.Module, cfg: train.OptimConfig, *, k: int = 2,
               encoder: str = "addition", evaluate=None, seed: int = 0, fast_cpu: bool = True) -> train.Arm:
    """Block-replacement warm-up of the block-skipped student (starts as the teacher's kept blocks):
    ``Σ_stages MSE(stage_S(in_T), out_T)``, each kept stage fed the teacher's stage input."""
    name = f"warmup-k{k}-{encoder}"
    torch.manual_seed(seed + 4)
    student = build_flake_student(exp, teacher_classes(teacher), "skip", teacher=teacher,
                                  copy_weights=True)
    student = channels_last(student.requires_grad_(True), fast_cpu)
    return train.Arm(name, student, distill.WarmupArmLoss(encoder), cfg, evaluate,
                     args={"role": "flake-warmup", "teacher_arch": exp.deployed_arch, "width": exp.width,
                           "keep": exp.student_keep, "dataset": exp.dataset, "k": k,
                           "encoder": encoder, "seed": seed})


def nkd_arm(exp: Experiment, deployed: nn.Module, cfg: train.OptimConfig, *,
            gamma: float = distill.GAMMA, tau: float = distill.TAU, init: str = "teacher",
            evaluate=None, name: str = "nkd", seed: int = 0, fast_cpu: bool = True) -> train.Arm:
    """NKD as a lockstep arm: a student of ``F`` (``exp.student_keep`` blocks per stage, ``init``
    ``teacher``: ``F``'s kept blocks), Hinton KD from ``F`` plus cross-entropy, on plain queries
    (every image of the batch; ``F``'s outputs are shared with the parity arms)."""
    torch.manual_seed(seed + 3)
    student = models.build_student(deployed, exp.student_keep, copy_weights=init == "teacher")
    student = channels_last(student.requires_grad_(True), fast_cpu)
    return train.Arm(name, student, distill.NaiveKDArmLoss(gamma, tau), cfg, evaluate,
                     args={"role": "nkd", "teacher_arch": exp.deployed_arch, "width": exp.width,
                           "keep": exp.student_keep, "dataset": exp.dataset, "gamma": gamma,
                           "tau": tau, "init": init, "seed": seed})


def teacher_classes(model: nn.Module) -> int:
    """Output size of a classifier-shaped model (its last ``nn.Linear``)."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features


def _replace_epochs(cfg: train.OptimConfig, epochs: int) -> train.OptimConfig:
    return dataclasses.replace(cfg, epochs=epochs)


def run_lockstep(exp: Experiment, name: str, arms: list[train.Arm], deployed: nn.Module,
                 train_split: data.ImageSplit, *, teachers: dict[str, nn.Module] | None = None,
                 k: int = 2, batch_groups: int = 64, clean_outputs: torch.Tensor | None = None,
                 seed: int = 0, device: str = "cpu", fast_cpu: bool = True,
                 max_epochs: int | None = None, progress: bool = True) -> dict[str, list[dict]]:
    """Train ``arms`` in lockstep (:func:`flake_lib.train.fit_lockstep`) on batches of
    ``batch_groups`` coding groups (``k·batch_groups`` augmented training images; NKD reads them as
    plain queries); the run's checkpoint is ``<checkpoint_dir>/lockstep-<name>.pt`` and each arm is
    exported to ``<checkpoint_dir>/<arm name>.pt``."""
    loader = data.TensorLoader(train_split, k * batch_groups, shuffle=True, augment=True, seed=seed,
                               drop_last=True, with_index=True, channels_last=fast_cpu)
    producers = shared_producers(deployed, teachers, k, clean_outputs)
    return train.fit_lockstep(arms, loader, checkpoint=exp.checkpoint_dir / f"lockstep-{name}.pt",
                              producers=producers, device=device, desc=f"{exp.name} {name}",
                              max_epochs=max_epochs, progress=progress, export_dir=exp.checkpoint_dir,
                              args={"dataset": exp.dataset, "train": train_split.describe(), "k": k,
                                    "batch_groups": batch_groups, "seed": seed,
                                    "teachers": sorted(teachers or {})})


# ----------------------------------------------------------------------------- the arms of a profile

@dataclass
class ArmPlan:
    """One arm of a lockstep pass before it is built: its ``name``, what it is (``meta``: ``method``,
    ``encoder``, ``variant``, ``objective``, ``student``, ``init``, ``terms``, ``budget``) and
    ``build() -> train.Arm``. Notebooks build every plan; the paper-profile test builds one at a time."""

    name: str
    meta: dict
    build: Callable[[], train.Arm]


def parity_plan(exp: Experiment, deployed: nn.Module, num_classes: int, codes: list[tuple[int, str, str]],
                cfg: train.OptimConfig, *, init: str = "deployed", budget_epochs=(),
                parm_cfg: train.OptimConfig | None = None, evaluate: dict | None = None, seed: int = 0,
                fast_cpu: bool = True, width_factors=()) -> list[ArmPlan]:
    """The PM arms of notebook 02 for codes ``(k, encoder, targets)`` of one group size: one per code
    (``cfg``, ``init``), the shorter complete schedules of the first code (``budget_epochs`` below
    ``cfg.epochs``: the budget curve) and, with ``parm_cfg``, ParM's recipe for the first code (from
    scratch, its own optimiser, the best validation epoch, :data:`SELECT`); each of ``width_factors``
    adds, for the first code, the same recipe at that many times the width from scratch (the capacity
    control: with ParM's recipe it separates capacity from the starting point)."""
    evaluate = evaluate or {}
    first, plans = codes[0], []

    def plan(name, k, encoder, targets, arm_cfg, arm_init, budget, recipe, select=None, branch=None, width=1.0):
        meta = {"method": "pm", "k": k, "encoder": encoder, "targets": targets, "budget": budget, "recipe": recipe,
                "width_factor": width}
        plans.append(ArmPlan(name, meta, lambda: _branched(pm_arm(
            exp, deployed, num_classes, arm_cfg, k=k, encoder=encoder, targets=targets, init=arm_init,
            evaluate=evaluate.get(encoder), select=select, name=name, seed=seed, fast_cpu=fast_cpu,
            width_factor=width), branch)))

    for k, encoder, targets in codes:
        plan(pm_name(k, encoder, targets), k, encoder, targets, cfg, init, False, "main")
    for epochs in sorted({int(e) for e in budget_epochs if int(e) < cfg.epochs}):
        start, budget_cfg = train.budget_schedule(cfg, epochs)
        plan(pm_name(*first, suffix=f"e{epochs}"), *first, budget_cfg, init, True, "main",
             branch=(pm_name(*first), start) if start else None)
    if parm_cfg is not None:
        plan(pm_name(*first, suffix="parm"), *first, parm_cfg, "scratch", False, "parm", select=SELECT)
    for factor in width_factors:
        plan(pm_name(*first, suffix=f"w{factor:g}"), *first, cfg, "scratch", False, f"width x{factor:g}",
             width=float(factor))
    return plans


def _branched(arm: train.Arm, branch: tuple[str, int] | None, **args) -> train.Arm:
    """``arm`` as a branch of the arm named ``branch[0]`` from epoch ``branch[1]`` (weights and moments
    copied, :func:`flake_lib.train.budget_schedule`; ``args`` amend its description), or unchanged for
    ``branch=None``."""
    if branch is None:
        return arm
    return dataclasses.replace(arm, start_epoch=branch[1], init_from=branch[0], copy_optimizer=True,
                               args={**arm.args, **args, "branch_of": branch[0], "branch_epoch": branch[1]})


#: The validation metric a best-epoch checkpoint is chosen on.
SELECT = "val_degraded_top1"


def paper_variant(objective: str, student_init: str = "teacher", beta: float = 1.0) -> FlakeVariant:
    """The paper's Flake (or one arm of its ablation, ``objective`` of :data:`PAPER_ABLATION`) as a
    variant: the paper's objective, the block-skipped student, initialised from ``student_init``."""
    return FlakeVariant.from_spec(objective, {"objective": objective, "init": student_init, "beta": beta})


def variants_from_params(flake_variants: dict, flake_encoders) -> dict[str, tuple[FlakeVariant, list[str]]]:
    """The ``flake_variants`` profile parameter (``{name: {objective, student, init, beta, init_epochs,
    encoders}}``) as ``{name: (FlakeVariant, codes)}``; ``encoders`` defaults to every code distilled."""
    found = {}
    for name, spec in (flake_variants or {}).items():
        if name in PAPER_ABLATION:
            raise ValueError(f"flake_variants: {name!r} names the paper's objective or an ablation arm")
        spec = dict(spec or {})
        codes = [e for e in spec.pop("encoders", flake_encoders) if e in flake_encoders]
        found[name] = (FlakeVariant.from_spec(name, spec), codes)
    return found


def distillation_plan(exp: Experiment, deployed: nn.Module, teachers: dict[str, nn.Module], *, k: int = 2,
                      cfg: train.OptimConfig, nkd_cfg: train.OptimConfig, flake_encoders=("addition",),
                      ablation=(("task",), ("task", "kd"), ("task", "inter"), ("task", "kd", "inter")),
                      ablation_encoders=("addition",), variants: dict | None = None, budget_epochs=(),
                      budget_variant: str | None = None, student_init: str = "teacher", beta: float = 1.0,
                      gamma: float = distill.GAMMA, tau: float = distill.TAU, evaluate: dict | None = None,
                      nkd_evaluate=None, seed: int = 0, fast_cpu: bool = True) -> list[ArmPlan]:
    """Every arm of notebook 03's pass: NKD (and its budget points); the paper's Flake for every code
    of ``flake_encoders`` and its ablation (``ablation``: loss-term sets, the last the paper's Flake)
    for ``ablation_encoders``; this artifact's ``variants`` (``{name: (FlakeVariant, codes)}``; thin
    students only where :func:`flake_lib.models.supports_thin` says they can be built with their
    initialisation); the warm-up arms those variants start
    from; and the budget curve's shorter complete schedules of the paper's Flake and of
    ``budget_variant`` for the first code. ``cfg`` and ``nkd_cfg`` give the full schedules."""
    evaluate, variants = evaluate or {}, dict(variants or {})
    plans: list[ArmPlan] = []
    full_terms = set(ablation[-1])

    def schedule(base, epochs):
        return dataclasses.replace(base, epochs=int(epochs))

    def add(name, meta, build):
        plans.append(ArmPlan(name, {"budget": False, "encoder": None, **meta}, build))

    def add_flake(spec, encoder, epochs, name=None, arm_cfg=None, branch=None, **meta):
        init_arm = None
        if spec.init == "warmup":  # one warm-up arm per code and length, shared by the variants using it
            init_arm = f"warmup-k{k}-{encoder}" + ("" if spec.init_epochs == 1 else f"-e{spec.init_epochs}")
            if init_arm not in {p.name for p in plans}:
                add(init_arm, {"method": "warmup", "encoder": encoder, "variant": "warmup", "objective": "warmup",
                               "student": "skip", "init": "teacher", "terms": "block-replacement warm-up"},
                    lambda init_arm=init_arm, encoder=encoder, e=spec.init_epochs: dataclasses.replace(
                        warmup_arm(exp, teachers[encoder], schedule(cfg, e), k=k, encoder=encoder,
                                   evaluate=evaluate.get(encoder), seed=seed, fast_cpu=fast_cpu), name=init_arm))
        elif spec.init == "nkd":
            init_arm = "nkd"
        arm_name = name or flake_name(spec.name, encoder, k)
        # a branch takes its weights from the arm it branches from: built without an initialising arm
        built = spec if branch is None else dataclasses.replace(
            spec, init="teacher" if spec.student == "skip" else "scratch")
        add(arm_name, {"encoder": encoder, "objective": spec.objective, "student": spec.student,
                       "init": spec.init, **meta},
            lambda: _branched(flake_arm(
                exp, teachers[encoder], built, arm_cfg or schedule(cfg, epochs), k=k, encoder=encoder, gamma=gamma,
                tau=tau, evaluate=evaluate.get(encoder), name=arm_name, seed=seed, fast_cpu=fast_cpu,
                init_arm=None if branch else init_arm), branch, init=spec.init))

    for epochs in [nkd_cfg.epochs] + sorted({int(b) for b in budget_epochs if int(b) < nkd_cfg.epochs}):
        name = "nkd" if epochs == nkd_cfg.epochs else f"nkd-e{epochs}"
        start, arm_cfg = (0, nkd_cfg) if name == "nkd" else train.budget_schedule(nkd_cfg, epochs)
        add(name, {"method": "nkd", "variant": "nkd", "objective": "nkd", "student": "skip", "init": student_init,
                   "terms": "NKD (KD from F + CE)", "budget": epochs != nkd_cfg.epochs},
            lambda name=name, arm_cfg=arm_cfg, start=start: _branched(nkd_arm(
                exp, deployed, arm_cfg, gamma=gamma, tau=tau, init=student_init, evaluate=nkd_evaluate, name=name,
                seed=seed, fast_cpu=fast_cpu), ("nkd", start) if start else None))
    paper_variants = {}
    for terms in ablation:
        objective_name = ablation_objective(terms)
        paper_variants[objective_name] = paper_variant(objective_name, student_init, beta)
    paper = paper_variants[ablation_objective(full_terms)]
    for encoder in flake_encoders:
        for terms in ablation:
            full = set(terms) == full_terms
            if full or encoder in ablation_encoders:
                add_flake(paper_variants[ablation_objective(terms)], encoder, cfg.epochs,
                          method="flake" if full else "flake-ablation", variant="paper", terms=terms_label(terms))
    def thin_ok(variant):
        return models.supports_thin(exp.deployed_arch, from_teacher=variant.init == "teacher")

    for name, (variant, codes) in variants.items():
        if name in PAPER_ABLATION:
            raise ValueError(f"variant {name!r} names the paper's objective or an ablation arm")
        if variant.student == "thin" and not thin_ok(variant):
            continue
        for encoder in codes:
            add_flake(variant, encoder, cfg.epochs, method="flake", variant=name,
                      terms=objective_label(variant.objective))
    first = flake_encoders[0]
    curve = [("paper", paper)] + ([(budget_variant, variants[budget_variant][0])] if budget_variant else [])
    for epochs in sorted({int(b) for b in budget_epochs if int(b) < cfg.epochs}):
        for name, variant in curve:
            if (variant.init in ("warmup", "nkd") and epochs <= variant.init_epochs) or (
                    variant.student == "thin" and not thin_ok(variant)):
                continue
            start, arm_cfg = train.budget_schedule(cfg, epochs)
            if start and start < (variant.init_epochs if variant.init in ("warmup", "nkd") else 0):
                start = 0  # a branch point inside the initialisation: a separate run instead
            add_flake(variant, first, epochs, name=f"{flake_name(name, first, k)}-e{epochs}",
                      arm_cfg=arm_cfg if start else None,
                      branch=(flake_name(name, first, k), start) if start else None, method="flake",
                      variant=name, budget=True, terms=objective_label(variant.objective))
    return plans


# ----------------------------------------------------------------------------- larger coding groups

def group_passes(group_codes) -> dict[int, list[str]]:
    """``[[k, encoder], ...]`` as ``{k: [encoders]}`` (one lockstep pass per group size, in order)."""
    passes: dict[int, list[str]] = {}
    for k, encoder in group_codes or []:
        if encoder not in coding.PARITY_ENCODERS:
            raise ValueError(f"group_codes: unknown encoder {encoder!r}; known: {coding.PARITY_ENCODERS}")
        passes.setdefault(int(k), [])
        if encoder not in passes[int(k)]:
            passes[int(k)].append(encoder)
    return passes


def train_group_parity(exp: Experiment, deployed: nn.Module, splits: Splits, group_codes, cfg: train.OptimConfig,
                       *, batch_groups: int = 64, init: str = "deployed", seed: int = 0, device: str = "cpu",
                       fast_cpu: bool = True) -> dict[tuple[int, str], list[dict]]:
    """PM parity models for larger coding groups (``group_codes``, e.g. k = 3, 4 and the ``weighted``
    second parity code of ``r = 2``): one lockstep pass per ``k`` (``lockstep-pm-groups-k<k>``), each
    model exported as :func:`pm_name` and validated every epoch on the validation split. Returns the
    history of each ``(k, encoder)``."""
    found = {}
    for k, encoders in group_passes(group_codes).items():
        arms = [pm_arm(exp, deployed, splits.train.num_classes, cfg, k=k, encoder=encoder, init=init,
                       evaluate=ParityValidation(deployed, splits.validation, k, encoder, seed=seed, device=device),
                       seed=seed, fast_cpu=fast_cpu) for encoder in encoders]
        histories = run_lockstep(exp, f"pm-groups-k{k}", arms, deployed, splits.train, k=k,
                                 batch_groups=batch_groups, seed=seed, device=device, fast_cpu=fast_cpu)
        found.update({(k, arm.args["encoder"]): histories[arm.name] for arm in arms})
    return found


def group_flake_variant(exp: Experiment, variant: str, flake_variants: dict | None = None, *,
                        student_init: str = "teacher", beta: float = 1.0) -> FlakeVariant:
    """The Flake variant trained for larger groups: the profile's ``flake_variant`` (``selected``
    resolved on notebook 03's validation choice); its initialisation must not need another arm."""
    name, _ = resolve_flake(exp, variant, "addition")
    if name in PAPER_ABLATION:
        spec = paper_variant(name, student_init, beta)
    elif name in (flake_variants or {}):
        spec = variants_from_params({name: flake_variants[name]}, ())[name][0]
    else:
        raise ValueError(f"flake_variant {name!r} is neither the paper's objective nor one of flake_variants")
    if spec.init not in ("teacher", "scratch"):
        raise ValueError(f"variant {name!r} starts from a {spec.init} arm; larger groups train variants that "
                         "start from the teacher or from scratch")
    return spec


def train_group_flake(exp: Experiment, deployed: nn.Module, splits: Splits, group_codes, variant: FlakeVariant,
                      cfg: train.OptimConfig, *, targets: str = "augmented", batch_groups: int = 64,
                      gamma: float = distill.GAMMA, tau: float = distill.TAU, seed: int = 0, device: str = "cpu",
                      fast_cpu: bool = True) -> dict[tuple[int, str], list[dict]]:
    """Flake (``variant``) for larger coding groups, each student distilled from the PM of its own code
    (:func:`train_group_parity`): one lockstep pass per ``k`` (``lockstep-distill-groups-k<k>``), the
    ``weighted`` code skipped (its parity model is a PM). Returns the history of each ``(k, encoder)``."""
    found = {}
    classes = splits.train.num_classes
    for k, encoders in group_passes(group_codes).items():
        encoders = [e for e in encoders if e != "weighted"]
        if not encoders:
            continue
        teachers = {e: channels_last(load_trained(exp, pm_name(k, e, targets), classes), fast_cpu) for e in encoders}
        arms = [flake_arm(exp, teachers[e], variant, cfg, k=k, encoder=e, gamma=gamma, tau=tau,
                          evaluate=ParityValidation(deployed, splits.validation, k, e, seed=seed, device=device),
                          seed=seed, fast_cpu=fast_cpu) for e in encoders]
        histories = run_lockstep(exp, f"distill-groups-k{k}", arms, deployed, splits.train, teachers=teachers,
                                 k=k, batch_groups=batch_groups, seed=seed, device=device, fast_cpu=fast_cpu)
        found.update({(k, arm.args["encoder"]): histories[arm.name] for arm in arms})
    return found


GROUP_CURVE_COLUMNS = ["experiment", "method", "k", "encoder", "epoch", "val_degraded_top1", "val_mse", "train_loss",
                       "train_seconds", "lockstep_seconds"]


def group_curves(histories: dict[tuple[str, int, str], list[dict]], method: str) -> pd.DataFrame:
    """Learning curves of :func:`train_group_parity` / :func:`train_group_flake`, keyed by
    ``(experiment, k, encoder)``, as one table (:data:`GROUP_CURVE_COLUMNS`): validation degraded-mode
    top-1 and MSE, training loss and seconds per epoch."""
    rows = [{"experiment": name, "method": method, "k": int(k), "encoder": encoder,
             "epoch": h.get("run_epoch", h["epoch"]), "val_degraded_top1": h.get("val_degraded_top1"),
             "val_mse": h.get("val_mse"), "train_loss": h.get("train_loss"), "train_seconds": h.get("train_seconds"),
             "lockstep_seconds": h.get("lockstep_seconds")}
            for (name, k, encoder), history in histories.items() for h in history]
    return pd.DataFrame(rows, columns=GROUP_CURVE_COLUMNS)


def loss_terms(histories: dict, info: dict, experiment_name: str) -> pd.DataFrame:
    """Each distilled arm's loss terms per epoch (``term_*``: the mean unweighted value; ``grad_*``: the
    mean norm of the weighted term's gradient, sampled during the epoch), one row per arm and epoch."""
    rows = []
    for arm, history in histories.items():
        meta = info.get(arm, {})
        for record in history:
            values = {key: value for key, value in record.items() if key.startswith(("term_", "grad_"))}
            if values:
                rows.append({"experiment": experiment_name, "arm": arm, "method": meta.get("method"),
                             "variant": meta.get("variant"), "terms": meta.get("terms"),
                             "encoder": meta.get("encoder"), "epoch": record.get("run_epoch", record.get("epoch")),
                             **values})
    return pd.DataFrame(rows)
