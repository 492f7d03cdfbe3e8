"""Training loops with resumable checkpoints (after torchvision's ``references/classification``).

:func:`fit` runs any objective: one ``step(model, x, y, generator) -> loss`` per batch, SGD with
momentum and weight decay, a learning-rate schedule per epoch, an evaluation after every epoch, and
an atomic checkpoint that stores the run's arguments, the model, the optimiser, the scheduler, the
RNG states and the history. Rerunning with the same arguments resumes after the last finished epoch
(or returns at once when all epochs are done); the batches and random draws of epoch ``e`` depend
only on ``(seed, e)``, so a resumed run computes what an uninterrupted run would.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from .data import TensorLoader
from .progress import progress as progress_bar
from .progress import status as progress_status


@dataclass
class OptimConfig:
    """SGD and its schedule. He et al.'s CIFAR recipe: lr 0.1, momentum 0.9, weight decay 5e-4 (the
    paper's value), lr divided by 10 at 50 % and 75 % of training (``schedule="step"``)."""

    epochs: int = 10
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    schedule: str = "step"  #: "step" (milestones), "cosine", or "onecycle" (linear warm-up, cosine decay)
    milestones: tuple[float, ...] = (0.5, 0.75)  #: fractions of ``epochs`` for the step schedule
    gamma: float = 0.1
    warmup_epochs: float = 0.0  #: linear warm-up (cosine and onecycle)
    extra: dict = field(default_factory=dict)  #: free-form arguments stored in the checkpoint


def make_optimizer(model: nn.Module, cfg: OptimConfig, steps_per_epoch: int):
    """SGD and a per-step ``LambdaLR`` implementing ``cfg.schedule``."""
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay, nesterov=cfg.nesterov and cfg.momentum > 0)
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    milestones = [int(m * total) for m in cfg.milestones]

    def factor(step: int) -> float:
        if cfg.schedule == "step":
            return cfg.gamma ** sum(step >= m for m in milestones)
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if cfg.schedule in ("cosine", "onecycle"):
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        raise ValueError(f"unknown schedule {cfg.schedule!r}; use step, cosine or onecycle")

    factor(0)  # validate the schedule name early
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _atomic_save(payload: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    return torch.load(Path(path), map_location="cpu", weights_only=False)


def fit(model: nn.Module, step: Callable, loader: TensorLoader, cfg: OptimConfig, *,
        evaluate: Callable[[nn.Module], dict] | None = None, checkpoint: str | os.PathLike,
        args: dict | None = None, device: str | torch.device = "cpu", desc: str = "train",
        max_epochs: int | None = None, progress: bool = True) -> list[dict]:
    """Train ``model`` with ``step`` for ``cfg.epochs`` epochs; return the per-epoch history.

    ``step(model, batch, generator)`` returns the loss of one batch (a tuple of tensors on
    ``device``, as the loader yields it: ``(x, y)`` or ``(x, y, index)``; ``generator`` is seeded by
    ``(loader.seed, epoch)`` for random draws such as coding groups). ``evaluate(model)`` returns
    metrics logged after each epoch. ``args`` (with ``cfg``) are stored in the checkpoint; a
    checkpoint with other arguments is an error, so that results never mix two configurations.
    ``max_epochs`` stops early (as an interruption would), for tests.
    """
    device = torch.device(device)
    path = Path(checkpoint)
    stored_args = {"optim": asdict(cfg), **(args or {})}
    stored_args = json.loads(json.dumps(stored_args, default=str))
    model.to(device)
    optimizer, scheduler = make_optimizer(model, cfg, len(loader))
    history, start = [], 0
    if path.is_file():
        state = load_checkpoint(path)
        if state["args"] != stored_args:
            raise ValueError(f"checkpoint {path} was written with other arguments:\n  stored "
                             f"{state['args']}\n  now    {stored_args}\ndelete it to train anew")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        history, start = state["history"], state["epoch"]
    last = cfg.epochs if max_epochs is None else min(cfg.epochs, max_epochs)
    for epoch in range(start, last):
        loader.set_epoch(epoch)
        generator = torch.Generator().manual_seed(loader.seed * 1_000_003 + epoch)
        model.train()
        began, total, count = time.perf_counter(), 0.0, 0
        bar = progress_bar(loader, desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}", enabled=progress,
                           mininterval=2)
        for batch in bar:
            batch = tuple(t.to(device) for t in batch)
            loss = step(model, batch, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total, count = total + loss.item() * len(batch[0]), count + len(batch[0])
            bar.set_postfix(loss=f"{total / count:.4f}", refresh=False)
        record = {"epoch": epoch + 1, "train_loss": total / max(count, 1),
                  "lr": optimizer.param_groups[0]["lr"], "train_seconds": time.perf_counter() - began}
        if evaluate is not None:
            if progress:
                progress_status(f"{desc} epoch {epoch + 1}/{cfg.epochs} · evaluating", force=True)
            model.eval()
            record.update(evaluate(model))
        history.append(record)
        _atomic_save({"args": stored_args, "model": model.state_dict(),
                      "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                      "torch_rng": torch.get_rng_state(), "epoch": epoch + 1, "history": history}, path)
        if progress:
            shown = {k: round(v, 4) for k, v in record.items() if isinstance(v, float)}
            print(f"{desc} epoch {epoch + 1}/{cfg.epochs}: {shown}", flush=True)
            progress_status(f"{desc} epoch {epoch + 1}/{cfg.epochs} done · "
                            + " ".join(f"{k}={v}" for k, v in shown.items() if k != "lr"), force=True)
    model.eval()
    return history


@torch.no_grad()
def predict(model: nn.Module, loader: TensorLoader, device: str | torch.device = "cpu") -> torch.Tensor:
    """Concatenated outputs (logits) of ``model`` over ``loader``, in the loader's order, on CPU."""
    model.eval().to(device)
    return torch.cat([model(batch[0].to(device)).float().cpu() for batch in loader])


def classification_step(model: nn.Module, batch: tuple, generator=None) -> torch.Tensor:
    """Cross-entropy of ``model(x)`` against the labels ``y``: the objective of the deployed ``F``."""
    return nn.functional.cross_entropy(model(batch[0]), batch[1])
