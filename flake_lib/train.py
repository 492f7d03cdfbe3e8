"""Training loops with resumable checkpoints (after torchvision's ``references/classification``).

:func:`fit` runs any objective: one ``step(model, x, y, generator) -> loss`` per batch, SGD with
momentum and weight decay, a learning-rate schedule per epoch, an evaluation after every epoch, and
an atomic checkpoint that stores the run's arguments, the model, the optimiser, the scheduler, the
RNG states and the history. Rerunning with the same arguments resumes after the last finished epoch
(or returns at once when all epochs are done); the batches and random draws of epoch ``e`` depend
only on ``(seed, e)``, so a resumed run computes what an uninterrupted run would.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from .data import TensorLoader
from .progress import log_line
from .progress import progress as progress_bar
from .progress import status as progress_status

#: Mixed precision on a GPU: the forward pass and the losses in bfloat16 (no loss scaling needed), the
#: weights, gradients and optimiser state in float32. On a CPU training stays in float32, so the quick
#: profile and the tests compute what they always did.
AMP_DTYPE = torch.bfloat16


def autocast(device: torch.device):
    """``torch.autocast`` in :data:`AMP_DTYPE` on a CUDA device that supports it, a no-op elsewhere."""
    enabled = device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPE, enabled=enabled)


def eta_text(epoch_seconds: list[float], remaining_epochs: float) -> str:
    """The time left, from the mean of the epochs measured so far: ``"≈ 3.2 min left (41.0 s/epoch)"``."""
    if not epoch_seconds:
        return ""
    per_epoch = sum(epoch_seconds) / len(epoch_seconds)
    left = per_epoch * max(remaining_epochs, 0)
    when = f"{left / 60:.1f} min" if left < 5400 else f"{left / 3600:.1f} h"
    return f"≈ {when} left ({per_epoch:.1f} s/epoch)"


@dataclass
class OptimConfig:
    """Optimiser and schedule. He et al.'s CIFAR recipe: SGD, lr 0.1, momentum 0.9, weight decay 5e-4
    (the paper's value), lr divided by 10 at 50 % and 75 % of training (``schedule="step"``).
    ParM's parity models: ``optimizer="adam"``, lr 1e-3, weight decay 1e-5, ``schedule="constant"``."""

    epochs: int = 10
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    #: "step" (milestones), "cosine", "onecycle" (linear warm-up, cosine decay), "constant" (after
    #: the warm-up), "linear" (warm-up, then linear decay to 0) or "wsd" (warm-up, stable, then a linear
    #: decay over the last ``decay_epochs``: a run of ``e`` epochs is a branch of a longer one at
    #: ``e − decay_epochs``, see :func:`budget_arm`)
    schedule: str = "step"
    milestones: tuple[float, ...] = (0.5, 0.75)  #: fractions of ``epochs`` for the step schedule
    gamma: float = 0.1
    warmup_epochs: float = 0.0  #: linear warm-up (cosine, onecycle, constant and linear)
    extra: dict = field(default_factory=dict)  #: free-form arguments stored in the checkpoint
    #: "sgd" (momentum, Nesterov) or "adam" (ParM: lr 1e-3, weight decay 1e-5, L2 added to the gradient)
    optimizer: str = "sgd"
    decay_epochs: float = 1.0  #: length of the final linear decay of the "wsd" schedule


def make_optimizer(model: nn.Module, cfg: OptimConfig, steps_per_epoch: int):
    """The optimiser (``cfg.optimizer``) and a per-step ``LambdaLR`` implementing ``cfg.schedule``."""
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay,
                                    nesterov=cfg.nesterov and cfg.momentum > 0)
    elif cfg.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; use sgd or adam")
    total = max(1, round(cfg.epochs * steps_per_epoch))
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    milestones = [int(m * total) for m in cfg.milestones]

    def factor(step: int) -> float:
        if cfg.schedule == "step":
            return cfg.gamma ** sum(step >= m for m in milestones)
        if cfg.schedule == "wsd":  # warm-up, 1, then (total − step) / decay_steps in the last decay_steps
            decay = max(1, int(round(cfg.decay_epochs * steps_per_epoch)))
            return min((step + 1) / warmup if step < warmup else 1.0, (total - step) / decay)
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if cfg.schedule in ("cosine", "onecycle"):
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if cfg.schedule == "constant":
            return 1.0
        if cfg.schedule == "linear":
            return max(0.0, 1.0 - progress)
        raise ValueError(f"unknown schedule {cfg.schedule!r}; use step, cosine, onecycle, constant, linear or wsd")

    factor(0)  # validate the schedule name early
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def budget_schedule(cfg: OptimConfig, epochs: int) -> tuple[int, OptimConfig]:
    """How a complete schedule of ``epochs`` epochs trains beside a longer run with ``cfg``:
    ``(start_epoch, cfg_of_the_arm)``.

    With ``cfg.schedule == "wsd"`` (decay over the last ``d`` epochs, ``d`` may be a fraction), a
    ``wsd`` run of ``e`` epochs is the longer run up to epoch ``e − d`` (same warm-up, same stable rate)
    followed by its own linear decay: it branches from the longer run at ``e − d`` (weights and moments
    copied) and trains ``d`` epochs with a ``linear`` schedule, so it costs ``d`` epochs instead of
    ``e``. Otherwise (or when ``e − d`` would cut the warm-up) it is a separate run of ``e`` epochs."""
    d = cfg.decay_epochs
    if cfg.schedule == "wsd" and 0 < d < epochs and epochs - d >= cfg.warmup_epochs:
        return epochs - d, replace(cfg, epochs=d, schedule="linear", warmup_epochs=0.0)
    return 0, replace(cfg, epochs=epochs)


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
            with autocast(device):
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
            t0 = time.perf_counter()
            record.update(evaluate(model))
            record["eval_seconds"] = time.perf_counter() - t0
        history.append(record)
        _atomic_save({"args": stored_args, "model": model.state_dict(),
                      "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                      "torch_rng": torch.get_rng_state(), "epoch": epoch + 1, "history": history}, path)
        if progress:
            shown = {k: round(v, 4) for k, v in record.items() if isinstance(v, float)}
            timed = [r["train_seconds"] + r.get("eval_seconds", 0.0) for r in history[start:]]
            log_line(f"{desc} epoch {epoch + 1}/{cfg.epochs}: {shown} {eta_text(timed, last - epoch - 1)}")
            progress_status(f"{desc} epoch {epoch + 1}/{cfg.epochs} done · "
                            + " ".join(f"{k}={v}" for k, v in shown.items() if k != "lr"), force=True)
    model.eval()
    return history


# ----------------------------------------------------------------------------- lockstep training

class SharedBatch:
    """The quantities of one batch that several arms read, each computed once and without gradients.

    ``producers`` maps a key (e.g. ``"members"``: ``F``'s outputs on the batch, ``"teacher:addition"``:
    the teacher's outputs and features on the addition parity queries) to ``producer(shared) ->
    value``; a producer may read other keys. A key is computed on first read and cached for the
    batch, so each is computed at most once per batch whatever the number of arms. The time of each
    key is measured (exclusive of the keys it reads), and every read is recorded in ``used`` with the
    keys it depends on, so the cost of each arm can be stated (see :func:`fit_lockstep`).
    """

    def __init__(self, batch: tuple, generator: torch.Generator | None,
                 producers: dict[str, Callable] | None = None):
        self.batch, self.generator = batch, generator
        self._producers = dict(producers or {})
        self._values: dict = {}
        self._deps: dict[str, set] = {}
        self._frames: list[list] = []  # [key, seconds of children, keys read] of keys being computed
        self.seconds: dict[str, float] = {}
        self.used: set[str] = set()

    def __contains__(self, key: str) -> bool:
        return key in self._producers

    def __getitem__(self, key: str):
        if key not in self._values:
            if key not in self._producers:
                raise KeyError(f"no shared producer {key!r}; known: {sorted(self._producers)}")
            self._frames.append([key, 0.0, set()])
            began = time.perf_counter()
            with torch.no_grad():
                value = self._producers[key](self)
            elapsed = time.perf_counter() - began
            _, children, reads = self._frames.pop()
            self._values[key], self._deps[key] = value, reads
            self.seconds[key] = elapsed - children
            if self._frames:
                self._frames[-1][1] += elapsed
        closure = {key} | self._deps[key]
        if self._frames:
            self._frames[-1][2].update(closure)
        self.used.update(closure)
        return self._values[key]

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


@dataclass
class Arm:
    """One model of a lockstep run (:func:`fit_lockstep`).

    ``loss(model, shared) -> loss`` computes the arm's objective on a :class:`SharedBatch`
    (``shared.batch`` is the loader's tuple). The arm trains for ``cfg.epochs`` epochs from epoch
    ``start_epoch`` with its own optimiser and schedule; both may be fractions of an epoch (a branch
    that decays over the last half epoch of a run: it starts and ends inside an epoch, counted in steps
    from its end, :func:`arm_steps`). ``init_from`` names an arm whose weights
    (and, with ``copy_optimizer``, optimiser state) this arm takes when it starts: a branch of a
    stable phase, or a model that follows a warm-up. ``evaluate(model) -> dict`` is logged after each
    of its epochs; with ``select`` (a key of that dict, larger is better) the arm keeps the weights of
    its best epoch and ends with them. ``args`` describe the arm in its checkpoint.
    """

    name: str
    model: nn.Module
    loss: Callable
    cfg: OptimConfig
    evaluate: Callable[[nn.Module], dict] | None = None
    select: str | None = None
    start_epoch: float = 0
    init_from: str | None = None
    copy_optimizer: bool = False
    args: dict = field(default_factory=dict)

    @property
    def end_epoch(self) -> float:
        return self.start_epoch + self.cfg.epochs


def arm_steps(arm: Arm, steps_per_epoch: int) -> tuple[int, int]:
    """The global steps ``[start, end)`` an arm trains: ``end = round(end_epoch·S)``, ``start = end −
    round(epochs·S)`` (so a branch that decays over the last ``d`` epochs starts exactly where a
    separate run's decay starts)."""
    end = round(arm.end_epoch * steps_per_epoch)
    return end - max(1, round(arm.cfg.epochs * steps_per_epoch)), end


#: Every this many steps, the gradient of each weighted loss term of an arm that reports its terms is
#: taken apart (one extra backward pass per term) and its norm logged: what each term does to the model.
GRAD_EVERY = 50


def _term_gradients(model: nn.Module, terms: dict) -> dict[str, float]:
    """The norm of the gradient of each weighted loss term with respect to the model's parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    norms = {}
    for name, term in terms.items():
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        norms[name] = float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))
    return norms


def _arm_seed(seed: int, name: str, epoch: int, step: int) -> int:
    """Seed of the global RNG for one step of one arm: depends on the arm's name, never on the other
    arms, so an arm draws the same random numbers (dropout) in lockstep as alone."""
    return (((seed * 1_000_003 + zlib.crc32(name.encode())) * 100_003 + epoch) * 100_003 + step) % (2 ** 63)


def _epochs(steps: int, steps_per_epoch: int) -> float | int:
    """Steps as epochs: an int when whole, else a float rounded to 1e-4."""
    value = steps / steps_per_epoch
    return int(value) if float(value).is_integer() else round(value, 4)


def _json_args(value) -> dict:
    return json.loads(json.dumps(value, default=str))


def fit_lockstep(arms: list[Arm], loader: TensorLoader, *, checkpoint: str | os.PathLike,
                 producers: dict[str, Callable] | None = None, args: dict | None = None,
                 device: str | torch.device = "cpu", desc: str = "lockstep",
                 max_epochs: int | None = None, progress: bool = True,
                 export_dir: str | os.PathLike | None = None) -> dict[str, list[dict]]:
    """Train several models on one pass over the data; return each arm's per-epoch history.

    Every batch is read once and the quantities several arms need (``producers``: ``F``'s outputs,
    the teacher's outputs and features) are computed once (:class:`SharedBatch`); each arm then takes
    its own step. The arms' parameters are disjoint and an arm's random draws depend only on its name
    and the step (:func:`_arm_seed`), so each arm ends with the parameters it would have if trained
    alone on the same batches. After every epoch one checkpoint holding every arm (weights,
    optimiser, schedule, history, best epoch) is written atomically; a rerun with the same arguments
    resumes after the last finished epoch. ``max_epochs`` stops early (an interruption, for tests).

    Cost of an arm, per epoch (the rule the budget curve uses): ``own_seconds`` is its forward,
    backward and update; ``train_seconds = own_seconds + data_seconds + shared_seconds``, the time it
    would take alone on this machine: the full time of the data pipeline and of every shared
    quantity it read. ``lockstep_seconds`` splits each shared quantity among the arms that read it,
    so the arms' ``lockstep_seconds`` add up to the run's wall time.

    With ``export_dir`` every arm is also written to ``<export_dir>/<arm name>.pt`` (``model``: the
    selected weights, ``history``, ``args``), the file :func:`flake_lib.experiment.load_trained` reads.
    """
    names = [arm.name for arm in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"arm names must be unique, got {names}")
    by_name = {arm.name: arm for arm in arms}
    S = len(loader)
    span = {arm.name: arm_steps(arm, S) for arm in arms}
    for arm in arms:
        if arm.init_from is not None and (arm.init_from not in by_name or
                                          not span[arm.init_from][0] <= span[arm.name][0] <= span[arm.init_from][1]):
            raise ValueError(f"arm {arm.name}: init_from {arm.init_from!r} must be an arm that has "
                             f"trained until epoch {arm.start_epoch}")
    device = torch.device(device)
    path = Path(checkpoint)
    stored_args = _json_args({"lockstep": {a.name: {"optim": asdict(a.cfg), "start_epoch": a.start_epoch,
                                                   "init_from": a.init_from,
                                                   "copy_optimizer": a.copy_optimizer,
                                                   "select": a.select, **a.args} for a in arms},
                              **(args or {})})
    opt = {}
    for arm in arms:
        arm.model.to(device)
        opt[arm.name] = make_optimizer(arm.model, arm.cfg, len(loader))
    state = {a.name: {"history": [], "best": None, "started": False} for a in arms}
    start = 0
    if path.is_file():
        saved = load_checkpoint(path)
        if saved["args"] != stored_args:
            raise ValueError(f"checkpoint {path} was written with other arguments:\n  stored "
                             f"{saved['args']}\n  now    {stored_args}\ndelete it to train anew")
        start = saved["epoch"]
        for arm in arms:
            arm_state = saved["arms"][arm.name]
            arm.model.load_state_dict(arm_state["model"])
            if arm_state["started"]:
                opt[arm.name][0].load_state_dict(arm_state["optimizer"])
                opt[arm.name][1].load_state_dict(arm_state["scheduler"])
            state[arm.name] = {k: arm_state[k] for k in ("history", "best", "started")}
    last = -(-max(end for _, end in span.values()) // S)
    if max_epochs is not None:
        last = min(last, max_epochs)

    def begin(arm: Arm) -> None:
        if arm.init_from is not None:
            parent = by_name[arm.init_from]
            arm.model.load_state_dict(parent.model.state_dict())
            if arm.copy_optimizer:  # the parent's moments, the arm's own hyper-parameters
                own = opt[arm.name][0].state_dict()
                own["state"] = copy.deepcopy(opt[parent.name][0].state_dict()["state"])
                opt[arm.name][0].load_state_dict(own)
        state[arm.name]["started"] = True

    epoch_walls = []  # seconds per epoch of this call (training and evaluation), for the time left
    for epoch in range(start, last):
        epoch_began = time.perf_counter()
        active = [a for a in arms if span[a.name][0] < (epoch + 1) * S and span[a.name][1] > epoch * S]
        loader.set_epoch(epoch)
        generator = torch.Generator().manual_seed(loader.seed * 1_000_003 + epoch)
        for arm in active:
            arm.model.train()
        seconds = {a.name: dict.fromkeys(("own", "data", "shared", "lockstep"), 0.0) for a in active}
        totals = {a.name: [0.0, 0] for a in active}
        term_sums = {a.name: {} for a in active}  # per loss term: [sum of values, steps, sum of grad norms, samples]
        began = time.perf_counter()
        bar = progress_bar(loader, desc=f"{desc} epoch {epoch + 1}/{last} ({len(active)} arms)",
                           enabled=progress, mininterval=2)
        iterator, step = iter(bar), 0
        while True:
            fetch = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            batch = tuple(t.to(device) for t in batch)
            data_seconds = time.perf_counter() - fetch
            shared = SharedBatch(batch, generator, producers)
            readers, now = {}, epoch * S + step
            stepping = [a for a in active if span[a.name][0] <= now < span[a.name][1]]
            for arm in stepping:
                if not state[arm.name]["started"]:
                    begin(arm)
            for arm in stepping:
                torch.manual_seed(_arm_seed(loader.seed, arm.name, epoch, step))
                shared.used = set()
                before, t0 = shared.total_seconds, time.perf_counter()
                with autocast(device):
                    loss = arm.loss(arm.model, shared)
                optimizer, scheduler = opt[arm.name]
                optimizer.zero_grad(set_to_none=True)
                sums = term_sums[arm.name]
                for term, value in getattr(arm.loss, "last", {}).items():
                    sums.setdefault(term, [0.0, 0, 0.0, 0])
                    sums[term][0] += value
                    sums[term][1] += 1
                if step % GRAD_EVERY == 0 and len(getattr(arm.loss, "terms", {})) > 1:
                    for term, norm in _term_gradients(arm.model, arm.loss.terms).items():
                        sums[term][2] += norm
                        sums[term][3] += 1
                loss.backward()
                optimizer.step()
                scheduler.step()
                spent = time.perf_counter() - t0
                seconds[arm.name]["own"] += spent - (shared.total_seconds - before)
                readers[arm.name] = set(shared.used)
                n = len(batch[0])
                totals[arm.name][0] += loss.item() * n
                totals[arm.name][1] += n
            for arm in stepping:
                s = seconds[arm.name]
                s["data"] += data_seconds
                s["shared"] += sum(shared.seconds[k] for k in readers[arm.name])
                s["lockstep"] += data_seconds / len(stepping) + sum(
                    shared.seconds[k] / sum(k in r for r in readers.values()) for k in readers[arm.name])
            step += 1
            bar.set_postfix(loss=" ".join(f"{totals[a.name][0] / max(totals[a.name][1], 1):.3g}" for a in active),
                            refresh=False)
        wall = time.perf_counter() - began
        if progress:
            progress_status(f"{desc} epoch {epoch + 1}/{last} · evaluating", force=True)
        for arm in active:
            s = seconds[arm.name]
            s["lockstep"] += s["own"]
            total, count = totals[arm.name]
            first, end = span[arm.name]
            done = min(end, (epoch + 1) * S)
            record = {"epoch": _epochs(done - first, S), "run_epoch": _epochs(done, S),
                      "run_start": _epochs(max(first, epoch * S), S),
                      "train_loss": total / max(count, 1), "lr": opt[arm.name][0].param_groups[0]["lr"],
                      "train_seconds": s["own"] + s["data"] + s["shared"], "own_seconds": s["own"],
                      "data_seconds": s["data"], "shared_seconds": s["shared"],
                      "lockstep_seconds": s["lockstep"], "lockstep_wall_seconds": wall,
                      "lockstep_arms": len(active)}
            for term, (value, steps, norm, samples) in term_sums[arm.name].items():
                record[f"term_{term}"] = value / max(steps, 1)  # the term's mean value (unweighted)
                if samples:
                    record[f"grad_{term}"] = norm / samples  # the mean norm of its weighted gradient
            if arm.evaluate is not None:
                arm.model.eval()
                t0 = time.perf_counter()
                record.update(arm.evaluate(arm.model))
                record["eval_seconds"] = time.perf_counter() - t0
            best = state[arm.name]["best"]
            if arm.select is not None:
                value = record[arm.select]
                if best is None or value > best["value"]:
                    best = {"value": value, "epoch": record["epoch"],
                            "model": {k: v.detach().cpu().clone() for k, v in arm.model.state_dict().items()}}
                    state[arm.name]["best"] = best
            state[arm.name]["history"].append(record)
            if progress:
                shown = {k: round(v, 4) for k, v in record.items() if isinstance(v, float)}
                log_line(f"{desc} {arm.name} epoch {record['epoch']}/{arm.cfg.epochs}: {shown}")
        _atomic_save({"args": stored_args, "epoch": epoch + 1, "arms": {
            a.name: {"model": a.model.state_dict(),
                     "optimizer": opt[a.name][0].state_dict() if state[a.name]["started"] else None,
                     "scheduler": opt[a.name][1].state_dict() if state[a.name]["started"] else None,
                     **state[a.name]} for a in arms}}, path)
        epoch_walls.append(time.perf_counter() - epoch_began)
        if progress:
            log_line(f"{desc} epoch {epoch + 1}/{last} ({len(active)} arms) done "
                     f"{eta_text(epoch_walls, last - epoch - 1)}")
    histories = {}
    for arm in arms:
        best = state[arm.name]["best"]
        finished = max(start, last) * S >= span[arm.name][1]
        if best is not None and finished:
            arm.model.load_state_dict(best["model"])
        arm.model.eval()
        histories[arm.name] = state[arm.name]["history"]
        if export_dir is not None and finished:
            _atomic_save({"args": _json_args({"lockstep_checkpoint": path.name, "optim": asdict(arm.cfg),
                                              **arm.args}),
                          "model": arm.model.state_dict(), "history": histories[arm.name],
                          "epoch": arm.cfg.epochs,
                          "selected_epoch": best["epoch"] if best is not None else arm.cfg.epochs},
                         Path(export_dir) / f"{arm.name}.pt")
    return histories


def alone_seconds(arms: list[Arm], histories: dict[str, list[dict]], name: str) -> float:
    """Training seconds of arm ``name`` as if trained alone: its epochs' ``train_seconds`` plus, for an
    arm that starts from another (a branch, a model after its warm-up), that arm's epochs up to the
    start, recursively (the rule the budget curve states)."""
    by_name = {arm.name: arm for arm in arms}

    def until(arm_name: str, epoch: float) -> float:
        arm, own = by_name[arm_name], 0.0
        for h in histories[arm_name]:  # a record covers run epochs [run_start, run_epoch]
            low = h.get("run_start", h["run_epoch"] - 1)
            if epoch > low:
                own += h["train_seconds"] * min(1.0, (epoch - low) / max(h["run_epoch"] - low, 1e-12))
        return own + (until(arm.init_from, arm.start_epoch) if arm.init_from else 0.0)

    return until(name, by_name[name].end_epoch)


@torch.no_grad()
def predict(model: nn.Module, loader: TensorLoader, device: str | torch.device = "cpu") -> torch.Tensor:
    """Concatenated outputs (logits) of ``model`` over ``loader``, in the loader's order, on CPU."""
    model.eval().to(device)
    return torch.cat([model(batch[0].to(device)).float().cpu() for batch in loader])


def classification_step(model: nn.Module, batch: tuple, generator=None) -> torch.Tensor:
    """Cross-entropy of ``model(x)`` against the labels ``y``: the objective of the deployed ``F``."""
    return nn.functional.cross_entropy(model(batch[0]), batch[1])
