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

from . import coding, data, metrics, models, parity, train


@dataclass
class Experiment:
    """``name``: e.g. ``cifar10-resnet``; ``dataset``: a :mod:`flake_lib.data` name;
    ``deployed_arch``: a :func:`flake_lib.models.build_model` name; ``width``: CIFAR ResNet width."""

    name: str
    dataset: str
    deployed_arch: str
    results_dir: str | os.PathLike
    width: float = 1.0

    @classmethod
    def from_spec(cls, name: str, spec: dict, results_dir) -> "Experiment":
        unknown = set(spec) - {"dataset", "deployed_arch", "width"}
        if unknown or not {"dataset", "deployed_arch"} <= set(spec):
            raise ValueError(f"experiment {name!r}: spec needs dataset and deployed_arch (optional "
                             f"width), got {sorted(spec)}")
        return cls(name, spec["dataset"], spec["deployed_arch"], results_dir, spec.get("width", 1.0))

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


def train_deployed(exp: Experiment, train_split: data.ImageSplit, test_split: data.ImageSplit,
                   cfg: train.OptimConfig, *, batch_size: int = 128, seed: int = 0,
                   device: str = "cpu", fast_cpu: bool = True) -> tuple[nn.Module, list[dict]]:
    """Train (or resume, or load) ``F`` with cross-entropy; test top-1/top-5 logged every epoch."""
    torch.manual_seed(seed)
    model = channels_last(exp.build_deployed(train_split.num_classes), fast_cpu)
    loader = data.TensorLoader(train_split, batch_size, shuffle=True, augment=True, seed=seed,
                               drop_last=True, channels_last=fast_cpu)
    test_loader = data.TensorLoader(test_split, 500, channels_last=fast_cpu)

    def evaluate(m):
        out = train.predict(m, test_loader, device)
        return {"test_top1": metrics.top_k_accuracy(out, test_split.labels, 1),
                "test_top5": metrics.top_k_accuracy(out, test_split.labels, 5)}

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
    curve_split = test_split.subset(torch.arange(min(eval_images, len(test_split))))
    curve_outputs = train.predict(deployed, data.TensorLoader(curve_split, 500), device)

    def evaluate(m):
        row = evaluate_parity(m, curve_outputs, curve_split, k, encoder, seed=seed, device=device)
        return {"test_degraded_top1": row["degraded_top1"],
                "test_reconstruction_agreement": row["reconstruction_agreement"]}

    name = f"pm-k{k}-{encoder}" + ("-clean" if targets == "clean" else "")
    history = train.fit(model, objective, loader, cfg, evaluate=evaluate,
                        checkpoint=exp.checkpoint_dir / f"{name}.pt", device=device,
                        args={"role": "parity", "arch": exp.deployed_arch, "width": exp.width,
                              "dataset": exp.dataset, "train": train_split.describe(), "k": k,
                              "encoder": encoder, "targets": targets, "init": init,
                              "batch_groups": batch_size, "seed": seed},
                        desc=f"{exp.name} {name}")
    return model, history


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
