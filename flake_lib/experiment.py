"""An *experiment* (DESIGN.md §4): one dataset and one deployed model ``F``, with its parity models.

Notebooks 02 and 03 train every experiment of a profile through these functions, so that both use
the same data, the same ``F`` and the same checkpoints under ``results/<profile>/checkpoints/<name>/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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


def classifier_evaluator(test_split: data.ImageSplit, device: str = "cpu", fast_cpu: bool = True):
    """``evaluate(model) -> {test_top1, test_top5}`` on the whole test split (learning curves)."""
    test_loader = data.TensorLoader(test_split, 500, channels_last=fast_cpu)

    def evaluate(model: nn.Module) -> dict:
        out = train.predict(model, test_loader, device)
        return {"test_top1": metrics.top_k_accuracy(out, test_split.labels, 1),
                "test_top5": metrics.top_k_accuracy(out, test_split.labels, 5)}

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
                   device: str = "cpu", fast_cpu: bool = True) -> tuple[nn.Module, list[dict]]:
    """Train (or resume, or load) ``F`` with cross-entropy; test top-1/top-5 logged every epoch."""
    torch.manual_seed(seed)
    model = channels_last(exp.build_deployed(train_split.num_classes), fast_cpu)
    loader = data.TensorLoader(train_split, batch_size, shuffle=True, augment=True, seed=seed,
                               drop_last=True, channels_last=fast_cpu)
    evaluate = classifier_evaluator(test_split, device, fast_cpu)

    history = train.fit(model, train.classification_step, loader, cfg, evaluate=evaluate,
                        checkpoint=exp.checkpoint_dir / "deployed.pt", device=device,
                        args={"role": "deployed", "arch": exp.deployed_arch, "width": exp.width,
                              "dataset": exp.dataset, "train": train_split.describe(),
                              "batch_size": batch_size, "seed": seed},
                        desc=f"{exp.name} F")
    return model, history


def train_parity(exp: Experiment, deployed: nn.Module, train_split: data.ImageSplit,
                 test_split: data.ImageSplit, cfg: train.OptimConfig, *, k: int = 2,
                 encoder: str = "addition", targets: str = "augmented", init: str = "scratch",
                 batch_size: int = 128, seed: int = 0, device: str = "cpu",
                 fast_cpu: bool = True, eval_images: int = 2000) -> tuple[nn.Module, list[dict]]:
    """Train (or resume, or load) the PM parity model: ``F``'s architecture, MSE to ``Σ F(x_i)``.

    ``batch_size`` counts coding groups (``k·batch_size`` images per step). ``init="deployed"``
    starts from ``F``'s weights, ``"scratch"`` from a fresh initialisation (ParM). After each epoch
    the degraded-mode top-1 on ``eval_images`` test images is logged (the learning curve).
    """
    if init not in ("scratch", "deployed"):
        raise ValueError(f"unknown parity init {init!r}; use scratch or deployed")
    torch.manual_seed(seed + 1)
    model = channels_last(exp.build_deployed(train_split.num_classes), fast_cpu)
    if init == "deployed":
        model.load_state_dict(deployed.state_dict())
    clean = parity.clean_targets(deployed, train_split, device=device) if targets == "clean" else None
    objective = parity.ParityObjective(deployed, k, encoder, targets, clean)
    loader = data.TensorLoader(train_split, k * batch_size, shuffle=True, augment=True, seed=seed,
                               drop_last=True, with_index=targets == "clean", channels_last=fast_cpu)
    evaluate = parity_evaluator(deployed, test_split, k, encoder, seed, device, eval_images)

    name = f"pm-k{k}-{encoder}" + ("-clean" if targets == "clean" else "")
    history = train.fit(model, objective, loader, cfg, evaluate=evaluate,
                        checkpoint=exp.checkpoint_dir / f"{name}.pt", device=device,
                        args={"role": "parity", "arch": exp.deployed_arch, "width": exp.width,
                              "dataset": exp.dataset, "train": train_split.describe(), "k": k,
                              "encoder": encoder, "targets": targets, "init": init,
                              "batch_groups": batch_size, "seed": seed},
                        desc=f"{exp.name} {name}")
    return model, history


def train_flake(exp: Experiment, deployed: nn.Module, teacher: nn.Module,
                train_split: data.ImageSplit, test_split: data.ImageSplit, cfg: train.OptimConfig, *,
                use: tuple[str, ...] = ("task", "kd", "inter"), k: int = 2, encoder: str = "addition",
                gamma: float = distill.GAMMA, tau: float = distill.TAU, beta: float = 1.0,
                student_init: str = "teacher", batch_size: int = 128, seed: int = 0,
                device: str = "cpu", fast_cpu: bool = True, eval_images: int = 2000):
    """Train (or resume, or load) Flake's compressed parity model (Algorithm 1).

    The student keeps ``exp.student_keep`` blocks per stage of the PM parity model ``teacher``
    (``student_init="teacher"`` copies the kept blocks' weights, ``"scratch"`` re-initialises);
    ``use`` selects the loss terms (the ablation). Returns (student, history)."""
    if student_init not in ("teacher", "scratch"):
        raise ValueError(f"unknown student init {student_init!r}; use teacher or scratch")
    torch.manual_seed(seed + 2)
    student = channels_last(models.build_student(teacher, exp.student_keep,
                                                 copy_weights=student_init == "teacher"), fast_cpu)
    objective = distill.FlakeObjective(deployed, teacher, models.block_units(teacher), k, encoder,
                                       gamma, tau, beta, use)
    loader = data.TensorLoader(train_split, k * batch_size, shuffle=True, augment=True, seed=seed,
                               drop_last=True, channels_last=fast_cpu)
    evaluate = parity_evaluator(deployed, test_split, k, encoder, seed, device, eval_images)

    name = f"flake-k{k}-{encoder}-" + "+".join(sorted(use))
    history = train.fit(student, objective, loader, cfg, evaluate=evaluate,
                        checkpoint=exp.checkpoint_dir / f"{name}.pt", device=device,
                        args={"role": "flake", "teacher_arch": exp.deployed_arch, "width": exp.width,
                              "keep": exp.student_keep, "dataset": exp.dataset,
                              "train": train_split.describe(), "k": k, "encoder": encoder,
                              "use": sorted(use), "gamma": gamma, "tau": tau, "beta": beta,
                              "init": student_init, "batch_groups": batch_size, "seed": seed},
                        desc=f"{exp.name} {name}")
    return student, history


def train_nkd(exp: Experiment, deployed: nn.Module, train_split: data.ImageSplit,
              test_split: data.ImageSplit, cfg: train.OptimConfig, *, gamma: float = distill.GAMMA,
              tau: float = distill.TAU, student_init: str = "teacher", batch_size: int = 128,
              seed: int = 0, device: str = "cpu", fast_cpu: bool = True):
    """Train (or resume, or load) the NKD baseline: a student of ``F`` with ``exp.student_keep``
    blocks per stage, Hinton KD from ``F`` plus cross-entropy, on plain queries."""
    torch.manual_seed(seed + 3)
    student = channels_last(models.build_student(deployed, exp.student_keep,
                                                 copy_weights=student_init == "teacher"), fast_cpu)
    loader = data.TensorLoader(train_split, batch_size, shuffle=True, augment=True, seed=seed,
                               drop_last=True, channels_last=fast_cpu)
    evaluate = classifier_evaluator(test_split, device, fast_cpu)

    history = train.fit(student, distill.NaiveKDObjective(deployed, gamma, tau), loader, cfg,
                        evaluate=evaluate, checkpoint=exp.checkpoint_dir / "nkd.pt", device=device,
                        args={"role": "nkd", "teacher_arch": exp.deployed_arch, "width": exp.width,
                              "keep": exp.student_keep, "dataset": exp.dataset,
                              "train": train_split.describe(), "gamma": gamma, "tau": tau,
                              "init": student_init, "batch_size": batch_size, "seed": seed},
                        desc=f"{exp.name} nkd")
    return student, history


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
    member unavailable in turn, reconstructed by the subtraction decoder."""
    groups = coding.make_groups(len(test_split), k, torch.Generator().manual_seed(seed))
    parity_out = parity.parity_outputs(parity_model, test_images(test_split), groups, encoder,
                                       device=device)
    rebuilt = coding.decode_each(parity_out, deployed_outputs[groups])
    return metrics.degraded_mode(deployed_outputs, rebuilt, groups, test_split.labels)


def cost(model: nn.Module, image_shape) -> dict:
    """Parameters and FLOPs of one query."""
    return {"params": models.count_parameters(model), "flops": models.count_flops(model, (1, *image_shape))}
