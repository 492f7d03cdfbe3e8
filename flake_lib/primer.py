"""What notebook 00 (the primer) draws, trains and shows, kept here so that it can be tested.

- :func:`draw_system`: the system as a diagram: queries ``x1, x2`` to the deployed instances F0, F1,
  the encoder ``p = x1 + x2`` to the parity instance ``F_p``, the timing bound, and the decoder
  ``F(x1) ≈ F_p(p) − F(x2)``.
- :func:`load_checkpoints` (notebook 02's trained ``F`` and PM parity model, when present) and
  :func:`train_in_seconds` (a small CNN and its parity model, trained in seconds on a CPU, otherwise);
  :func:`compare_reconstructions` sets the naive reconstruction ``F(x1 + x2) − F(x2)`` beside the
  learned one ``F_p(x1 + x2) − F(x2)`` for the same coding groups.
- :func:`code_table` / :func:`code_explorer`: the naive code for each ``k`` and encoder.
- :func:`accuracy_sources`, :func:`overall_accuracy_table`, :func:`fu_explorer`: the overall accuracy
  ``A_o = (1 − f_u)·A_a + f_u·A_d`` a user sees when a fraction ``f_u`` of queries is unavailable.
- :func:`read_bound_sweep`, :func:`bound_summary`, :func:`bound_explorer`: the latency benchmark's
  *measured* timing-bound sweep (``latency/bound_sweep.csv``), never a replay.
- :data:`EXERCISES` / :func:`check_exercise`: three exercises that check the reader's answer.

Every explorer is an ``ipywidgets`` control for JupyterLab; the notebook prints the same numbers for
every value as a table too, so that an executed copy (papermill) shows them without a kernel.
"""

from __future__ import annotations

import html
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import coding, data, metrics, parity, style

# ----------------------------------------------------------------------------- the diagram


def _pale(color: str, amount: float = 0.75) -> tuple:
    """``color`` mixed with white: ``c + amount·(1 − c)`` per channel."""
    from matplotlib.colors import to_rgb

    return tuple(c + amount * (1 - c) for c in to_rgb(color))


def _box(ax, x, y, w, h, text, color, fontsize=9):
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.04,rounding_size=0.12",
                                facecolor=_pale(color), edgecolor=color, linewidth=1.6))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize)
    return (x, y, w, h)


def _arrow(ax, start, end, color="#333333", text=None, text_offset=(0.0, 0.12), rad=0.0, ls="-"):
    from matplotlib.patches import FancyArrowPatch

    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=13, color=color,
                                 linewidth=1.4, linestyle=ls, connectionstyle=f"arc3,rad={rad}",
                                 shrinkA=2, shrinkB=2))
    if text:
        ax.text((start[0] + end[0]) / 2 + text_offset[0], (start[1] + end[1]) / 2 + text_offset[1], text,
                ha="center", va="bottom", fontsize=8, color=color)


def draw_system(ax=None):
    """Draw the coded-computation system for ``k = 2`` on ``ax`` (a new figure when None); return the figure.

    Query ``x1`` goes to deployed instance F0, ``x2`` to F1; the encoder adds them, ``p = x1 + x2``,
    for the parity instance. A prediction not back within the timing bound is *unavailable*; the
    decoder rebuilds it as ``F_p(p) − F(x2)``."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(11, 4.6))
    deployed, parity_c, coder = style.color("srp"), style.color("pm"), style.color("flake")
    grey = style.OKABE_ITO["grey"]
    ax.set_xlim(0, 12.4)
    ax.set_ylim(0, 6.2)
    ax.axis("off")
    # queries
    _box(ax, 0.2, 4.3, 1.3, 0.8, "query $x_1$", grey)
    _box(ax, 0.2, 2.9, 1.3, 0.8, "query $x_2$", grey)
    # deployed instances
    _box(ax, 3.0, 4.3, 2.2, 0.8, "F0: deployed $F$", deployed)
    _box(ax, 3.0, 2.9, 2.2, 0.8, "F1: deployed $F$", deployed)
    _arrow(ax, (1.5, 4.7), (3.0, 4.7))
    _arrow(ax, (1.5, 3.3), (3.0, 3.3))
    # encoder and parity instance
    _box(ax, 3.0, 0.7, 2.2, 1.1, "encoder\n$p = x_1 + x_2$", coder)
    _arrow(ax, (0.7, 4.3), (3.3, 1.8), rad=0.2, color=coder)
    _arrow(ax, (1.0, 2.9), (3.6, 1.8), rad=0.1, color=coder)
    _box(ax, 6.0, 0.7, 2.0, 1.1, "parity instance\n$F_p$ (learned)", parity_c)
    _arrow(ax, (5.2, 1.25), (6.0, 1.25), text="$p$", color=coder)
    # timing bound
    ax.plot([8.55, 8.55], [0.3, 5.75], ls="--", color=style.color("hedge"), lw=1.6)
    ax.text(8.55, 5.85, "timing bound $t_b$ after the query's arrival", ha="center", va="bottom", fontsize=8.5,
            color=style.color("hedge"))
    ax.text(8.7, 5.3, "not back by $t_b$: $x_1$ unavailable", ha="left", va="center", fontsize=8,
            color=style.color("hedge"))
    # F0 straggles: its answer crosses the bound too late
    _arrow(ax, (5.2, 4.7), (11.0, 4.7), ls=":", color=grey)
    ax.text(6.9, 4.82, "$F(x_1)$ late: straggler or failure", ha="center", va="bottom", fontsize=8, color=grey)
    ax.text(8.55, 4.7, "✗", ha="center", va="center", fontsize=16, color=style.color("flake"))
    # decoder
    _box(ax, 9.0, 1.6, 2.2, 1.1, "decoder\n$F_p(p) - F(x_2)$", parity_c)
    _arrow(ax, (8.0, 1.25), (9.2, 1.6), rad=0.1, color=parity_c)
    ax.text(8.1, 0.95, "$F_p(p)$", fontsize=8, color=parity_c)
    _arrow(ax, (5.2, 3.05), (9.0, 2.3), rad=0.0)
    ax.text(6.3, 2.55, "$F(x_2)$", fontsize=8)
    # answers
    _box(ax, 11.0, 3.6, 1.3, 1.6, "answers\n$F(x_2)$ and\n$\\hat F(x_1)$", deployed, fontsize=8.5)
    _arrow(ax, (5.2, 3.45), (11.0, 4.0), color=deployed)
    ax.text(6.3, 3.75, "$F(x_2)$ on time", fontsize=8)
    _arrow(ax, (10.6, 2.7), (11.4, 3.6), color=parity_c)
    ax.text(10.2, 3.05, "$\\hat F(x_1)$", fontsize=8.5, color=parity_c)
    ax.text(0.2, 0.05, "k = 2 shown; for k queries: k deployed instances, $p = \\sum_i x_i$, "
            "$F(x_j) \\approx F_p(p) - \\sum_{i \\neq j} F(x_i)$. Flake: $F_p$ is a distilled, smaller network.",
            fontsize=8, color="#333333")
    return ax.figure


# ----------------------------------------------------------------------------- models: trained or in seconds


@dataclass
class PrimerModels:
    """A deployed model ``F`` and a parity model ``F_p`` for one code, and where they come from."""

    deployed: nn.Module
    parity: nn.Module
    source: str  # "checkpoints" or "trained in seconds"
    description: str
    k: int = 2
    encoder: str = "addition"
    details: dict = field(default_factory=dict)


def tiny_cnn(num_classes: int = 10) -> nn.Module:
    """Three stride-2 3×3 convolutions (16, 32, 64 channels, ReLU), global pooling, a linear layer:
    about 24 k parameters, small enough to train on 10⁴ CIFAR images in seconds on one CPU core."""
    return nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))


def cifar10_experiment(experiments: dict, preferred: str | None = None) -> str | None:
    """The name of a CIFAR-10 experiment of the profile (``preferred`` when it is one), else None."""
    if preferred in experiments and experiments[preferred].get("dataset") == "cifar10":
        return preferred
    return next((name for name, spec in experiments.items() if spec.get("dataset") == "cifar10"), None)


def load_checkpoints(results_dir, name: str, spec: dict, num_classes: int = 10, k: int = 2,
                     encoder: str = "addition") -> PrimerModels | None:
    """Notebook 02's ``F`` (``deployed.pt``) and PM parity model (``pm-k{k}-{encoder}.pt``) of experiment
    ``name``, when both checkpoints exist; None otherwise."""
    from . import experiment

    exp = experiment.Experiment.from_spec(name, spec, results_dir)
    wanted = ("deployed", f"pm-k{k}-{encoder}")
    paths = [exp.checkpoint_dir / f"{c}.pt" for c in wanted]
    if not all(p.is_file() for p in paths):
        return None
    deployed = experiment.load_trained(exp, wanted[0], num_classes)
    parity_model = experiment.load_trained(exp, wanted[1], num_classes)
    for model in (deployed, parity_model):
        model.to(memory_format=torch.contiguous_format)
    return PrimerModels(deployed, parity_model, "checkpoints",
                        f"notebook 02's checkpoints of {name} ({exp.deployed_arch}): "
                        f"{', '.join(os.path.relpath(p, results_dir) for p in paths)}", k, encoder,
                        {"experiment": name, "arch": exp.deployed_arch})


def _with_threads(threads: int, fn: Callable):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(previous)


def train_in_seconds(train_split: data.ImageSplit, *, epochs: int = 8, k: int = 2, encoder: str = "addition",
                     seed: int = 0, batch_size: int = 128, threads: int = 1) -> PrimerModels:
    """Train :func:`tiny_cnn` as ``F`` (cross-entropy, Adam 3·10⁻³) and then, from ``F``'s weights, its
    parity model ``F_p`` (ParM's objective ``mean((F_p(enc(x)) − Σ_i F(x_i))²)``, Adam 10⁻³), each for
    ``epochs`` epochs of ``train_split`` without augmentation. One thread: with models this small,
    more threads mostly wait on each other."""
    from . import progress

    def run() -> PrimerModels:
        began_cpu, began = time.process_time(), time.perf_counter()
        torch.manual_seed(seed)
        deployed = tiny_cnn(train_split.num_classes)
        loader = data.TensorLoader(train_split, batch_size, shuffle=True, seed=seed, drop_last=True)
        optimizer = torch.optim.Adam(deployed.parameters(), 3e-3)
        for epoch in range(epochs):
            loader.set_epoch(epoch)
            progress.status(f"primer: training F in seconds, epoch {epoch + 1}/{epochs}")
            for x, y in loader:
                loss = nn.functional.cross_entropy(deployed(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        deployed.eval()
        parity_model = tiny_cnn(train_split.num_classes)
        parity_model.load_state_dict(deployed.state_dict())
        objective = parity.ParityObjective(deployed, k, encoder)
        loader = data.TensorLoader(train_split, k * batch_size, shuffle=True, seed=seed + 1, drop_last=True)
        optimizer = torch.optim.Adam(parity_model.parameters(), 1e-3)
        parity_model.train()
        for epoch in range(epochs):
            loader.set_epoch(epoch)
            progress.status(f"primer: training F_p in seconds, epoch {epoch + 1}/{epochs}")
            for batch in loader:
                loss = objective(parity_model, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        parity_model.eval()
        cpu, wall = time.process_time() - began_cpu, time.perf_counter() - began
        return PrimerModels(deployed, parity_model, "trained in seconds",
                            f"a small CNN (3 convolutions, {sum(p.numel() for p in deployed.parameters())} "
                            f"parameters) and its parity model, each trained for {epochs} epochs on "
                            f"{len(train_split)} training images here ({wall:.1f} s, {cpu:.1f} s of CPU)",
                            k, encoder, {"train_images": len(train_split), "epochs": epochs,
                                         "wall_seconds": wall, "cpu_seconds": cpu})

    return _with_threads(threads, run)


@torch.no_grad()
def _outputs(model: nn.Module, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i: i + batch]).float() for i in range(0, len(x), batch)])


@torch.no_grad()
def compare_reconstructions(models: PrimerModels, x: torch.Tensor, labels: torch.Tensor,
                            groups: torch.Tensor) -> tuple[pd.DataFrame, dict]:
    """Naive ``F(enc(x)) − Σ_{i≠j} F(x_i)`` and learned ``F_p(enc(x)) − Σ_{i≠j} F(x_i)`` on the same
    coding groups ``(G, k)`` of the normalised images ``x``.

    Returns a table (one row per reconstruction: relative error ``‖rec − F(x_j)‖/‖F(x_j)‖``, agreement
    with ``F``'s top class, ``A_d`` = top-1 against the labels, and ``A_a`` = ``F``'s own top-1 on the
    same images) and the tensors ``outputs`` ``(G, k, C)``, ``naive``, ``learned`` (``(G, k, C)``)."""
    flat = x[groups.flatten()]
    outputs = _outputs(models.deployed, flat).view(*groups.shape, -1)
    encoded = coding.encode(x[groups], models.encoder)
    naive = coding.decode_each(_outputs(models.deployed, encoded), outputs)
    learned = coding.decode_each(_outputs(models.parity, encoded), outputs)
    member_labels = labels[groups].flatten()
    truth = outputs.flatten(0, 1)
    a_a = metrics.top_k_accuracy(truth, member_labels, 1)
    rows = []
    for name, rebuilt in (("naive: F(x1 + x2) − F(x2)", naive), ("learned: F_p(x1 + x2) − F(x2)", learned)):
        flat_rebuilt = rebuilt.flatten(0, 1)
        rows.append({"reconstruction": name, "relative error": metrics.relative_error(flat_rebuilt, truth),
                     "agreement with F": metrics.agreement(flat_rebuilt, truth),
                     "A_d (top-1)": metrics.top_k_accuracy(flat_rebuilt, member_labels, 1),
                     "A_a of F (top-1)": a_a, "groups": int(groups.shape[0])})
    return pd.DataFrame(rows), {"outputs": outputs, "naive": naive, "learned": learned}


def plot_reconstruction_examples(images: data.ImageSplit, groups: torch.Tensor, tensors: dict, n: int = 4):
    """For the first ``n`` groups: image ``x1`` and the class probabilities of ``F(x1)``, of the naive
    and of the learned reconstruction (softmax of the logits), the true class marked."""
    import matplotlib.pyplot as plt

    classes = list(images.classes)
    fig, axes = plt.subplots(n, 2, figsize=(10, 1.9 * n), gridspec_kw={"width_ratios": [1, 5]})
    width = 0.27
    series = (("F(x1)", tensors["outputs"], style.color("srp")),
              ("naive", tensors["naive"], style.color("none")),
              ("learned F_p", tensors["learned"], style.color("pm")))  # the PM parity model the cell names
    position = np.arange(len(classes))
    for row in range(n):
        image_index = int(groups[row, 0])
        axes[row, 0].imshow(images.images[image_index].permute(1, 2, 0).numpy())
        axes[row, 0].axis("off")
        label = int(images.labels[image_index])
        axes[row, 0].set_title(f"x1: {classes[label]}", fontsize=8)
        for i, (name, scores, colour) in enumerate(series):
            probs = torch.softmax(scores[row, 0], -1).numpy()
            axes[row, 1].bar(position + (i - 1) * width, probs, width, color=colour,
                             label=f"{name} → {classes[int(probs.argmax())]}")
        axes[row, 1].axvspan(label - 0.45, label + 0.45, color=style.OKABE_ITO["yellow"], alpha=0.35, lw=0,
                            zorder=0)
        axes[row, 1].set_ylim(0, 1)
        axes[row, 1].set_xticks(position, classes if row == n - 1 else [""] * len(classes), fontsize=8)
        axes[row, 1].legend(fontsize=7, loc="upper left", ncol=3, frameon=False)
        axes[row, 1].set_ylabel("probability", fontsize=8)
    labels = images.labels[groups[:, 0]]
    right = {name: float((scores[:, 0].argmax(-1) == labels).float().mean()) for name, scores, _ in series}
    fig.suptitle(f"x1 unavailable: its prediction rebuilt from the parity query (true class shaded); the first {n} of "
                 f"{len(groups)} groups, not chosen — over all of them F is right {right['F(x1)']:.0%}, the naive "
                 f"code {right['naive']:.0%}, the learned parity model {right['learned F_p']:.0%}", fontsize=9)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- the code for each k, encoder


def supports(k: int, encoder: str) -> bool:
    """Whether :func:`flake_lib.coding.encode` defines ``encoder`` for ``k`` (concatenation: k = 2 or 4)."""
    return encoder == "addition" or (encoder == "concatenation" and k in (2, 4))


@torch.no_grad()
def code_table(models: dict[str, nn.Module], x: torch.Tensor, ks: Sequence[int] = (2, 3, 4),
               encoders: Sequence[str] = coding.ENCODERS, n_groups: int = 200, seed: int = 0) -> pd.DataFrame:
    """The naive code (``F`` as its own parity model) for every ``k``, encoder and model: relative error
    and top-1 agreement of ``F(enc(x)) − Σ_{i≠j} F(x_i)`` with ``F(x_j)``, on ``n_groups`` seeded groups
    (codes that :func:`supports` rejects are left out)."""
    rows = []
    for k in ks:
        groups = coding.make_groups(len(x), k, torch.Generator().manual_seed(seed))[:n_groups]
        for name, model in models.items():
            outputs = _outputs(model, x[groups.flatten()]).view(*groups.shape, -1)
            for encoder in (e for e in encoders if supports(k, e)):
                rebuilt = coding.decode_each(_outputs(model, coding.encode(x[groups], encoder)), outputs)
                rows.append({"k": k, "encoder": encoder, "F": name,
                             "relative error": metrics.relative_error(rebuilt.flatten(0, 1), outputs.flatten(0, 1)),
                             "top-1 agreement": metrics.agreement(rebuilt.flatten(0, 1), outputs.flatten(0, 1))})
    return pd.DataFrame(rows)


def show_image(ax, tensor: torch.Tensor, normalization, title: str) -> None:
    """Show a normalised image (undoing the normalisation, clipped to [0, 1])."""
    mean, std = normalization
    pixels = tensor.cpu() * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    ax.imshow(pixels.clamp(0, 1).permute(1, 2, 0).numpy())
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def parity_image(x: torch.Tensor, k: int, encoder: str) -> torch.Tensor:
    """The parity query of the first ``k`` images of ``x``; an addition is divided by ``k`` to be shown."""
    encoded = coding.encode(x[:k].unsqueeze(0), encoder)[0]
    return encoded / k if encoder == "addition" else encoded


def code_explorer(x: torch.Tensor, normalization, table: pd.DataFrame, measured: pd.DataFrame | None = None):
    """Controls for ``k`` and the encoder: the parity query of ``k`` images and that code's rows of
    ``table`` (:func:`code_table`), with the measured PM rows of that code when ``measured`` has them."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    k_control = widgets.Dropdown(options=sorted(table["k"].unique().tolist()), value=2, description="k")
    encoder_control = widgets.ToggleButtons(options=list(dict.fromkeys(table["encoder"])), description="encoder")
    out = widgets.Output()

    def update(_=None):
        k, encoder = k_control.value, encoder_control.value
        with out:
            out.clear_output(wait=True)
            if not supports(k, encoder):
                print(f"The {encoder} encoder is defined for k = 2 or 4 only (ParM's tiling); choose another k.")
                return
            fig, ax = plt.subplots(figsize=(2.6, 2.8))
            show_image(ax, parity_image(x, k, encoder), normalization,
                       f"parity query, k={k}, {encoder}" + (" (/k)" if encoder == "addition" else ""))
            display(fig)
            plt.close(fig)
            display(table[(table["k"] == k) & (table["encoder"] == encoder)].reset_index(drop=True))
            if measured is not None and len(measured):
                rows = measured[(measured["k"] == k) & (measured["encoder"] == encoder)]
                print("learned parity models of this code (metrics files): "
                      + ("none trained for this code" if rows.empty else ""))
                if not rows.empty:
                    display(rows.reset_index(drop=True))

    k_control.observe(update, names="value")
    encoder_control.observe(update, names="value")
    update()
    return widgets.VBox([widgets.HBox([k_control, encoder_control]), out])


# ----------------------------------------------------------------------------- overall accuracy A_o


def accuracy_sources(results_dir, experiment: str | None = None) -> pd.DataFrame:
    """``A_a`` and ``A_d`` (top-1) of every parity model in ``accuracy/pm.json`` and ``accuracy/flake.json``
    (PM rows trained on augmented targets; Flake rows with all loss terms). Columns: ``label``, ``method``,
    ``experiment``, ``k``, ``encoder``, ``A_a``, ``A_d``, ``source``. Empty when neither file exists.
    ``experiment`` keeps that experiment's rows only (all when None or absent from the files)."""
    from . import results

    rows = []
    for method in ("pm", "flake"):
        path = Path(results_dir) / "accuracy" / f"{method}.json"
        if not path.is_file():
            continue
        for row in results.read_metrics(path).get("rows", []):
            if row.get("targets") not in (None, "augmented"):
                continue
            if method == "flake" and row.get("terms") not in (None, "L_task + L_KD + L_Inter"):
                continue
            if row.get("available_top1") is None or row.get("degraded_top1") is None:
                continue
            rows.append({"method": method, "experiment": row.get("experiment"), "k": row.get("k"),
                         "encoder": row.get("encoder"), "A_a": float(row["available_top1"]),
                         "A_d": float(row["degraded_top1"]), "source": f"accuracy/{method}.json"})
    table = pd.DataFrame(rows, columns=["method", "experiment", "k", "encoder", "A_a", "A_d", "source"])
    if experiment is not None and experiment in set(table["experiment"]):
        table = table[table["experiment"] == experiment]
    several = table["experiment"].nunique() > 1
    table.insert(0, "label", [style.label(r.method) + f" k={r.k} {r.encoder}" + (f" ({r.experiment})" if several
                                                                              else "")
                              for r in table.itertuples()])
    return table.reset_index(drop=True)


def primer_sources(comparison: pd.DataFrame, models: PrimerModels) -> pd.DataFrame:
    """:func:`accuracy_sources`' columns from :func:`compare_reconstructions`' table: this notebook's own
    ``F`` with its learned parity model and with the naive one."""
    rows = []
    for row in comparison.to_dict("records"):
        learned = row["reconstruction"].startswith("learned")
        rows.append({"label": ("learned F_p" if learned else "naive: F as its own F_p")
                     + f", k={models.k} {models.encoder} ({models.source})",
                     "method": "pm" if learned else "none", "experiment": "primer", "k": models.k,
                     "encoder": models.encoder, "A_a": row["A_a of F (top-1)"], "A_d": row["A_d (top-1)"],
                     "source": "this notebook"})
    return pd.DataFrame(rows)


def overall_accuracy_table(sources: pd.DataFrame, fractions: Sequence[float]) -> pd.DataFrame:
    """``A_o = (1 − f_u)·A_a + f_u·A_d`` for every source (rows) and unavailable fraction (columns)."""
    return pd.DataFrame({f"f_u = {f:g}": [metrics.overall_accuracy(a, d, f) for a, d in
                                         zip(sources["A_a"], sources["A_d"])] for f in fractions},
                        index=pd.Index(sources["label"], name="A_o"))


def overall_accuracy_html(sources: pd.DataFrame, f_u: float) -> str:
    """An HTML table of ``A_a``, ``A_d`` and ``A_o`` at ``f_u``; each ``A_o`` in a
    ``<span class="flake-ao" data-label=...>`` (what the browser test reads)."""
    cells = []
    for row in sources.itertuples():
        value = metrics.overall_accuracy(row.A_a, row.A_d, f_u)
        cells.append(f"<tr><td>{html.escape(row.label)}</td><td>{row.A_a:.4f}</td><td>{row.A_d:.4f}</td>"
                     f"<td><b><span class='flake-ao' data-label='{html.escape(row.label, quote=True)}'>"
                     f"{value:.4f}</span></b></td><td>{html.escape(row.source)}</td></tr>")
    return (f"<p>f_u = <span class='flake-fu'>{f_u:.2f}</span>: "
            f"A_o = (1 − {f_u:.2f})·A_a + {f_u:.2f}·A_d</p>"
            "<table><tr><th>parity model</th><th>A_a</th><th>A_d</th><th>A_o</th><th>from</th></tr>"
            + "".join(cells) + "</table>")


def fu_explorer(sources: pd.DataFrame, value: float = 0.1):
    """A slider for ``f_u`` ∈ [0, 1] and the table of :func:`overall_accuracy_html`, updated as it moves."""
    import ipywidgets as widgets

    slider = widgets.FloatSlider(value=value, min=0.0, max=1.0, step=0.01, description="f_u",
                                 readout_format=".2f", continuous_update=True,
                                 layout=widgets.Layout(width="420px"))
    table = widgets.HTML(overall_accuracy_html(sources, value))

    def update(change):
        table.value = overall_accuracy_html(sources, change["new"])

    slider.observe(update, names="value")
    return widgets.VBox([slider, table])


# ----------------------------------------------------------------------------- the timing bound, measured

BOUND_COLUMNS = ["median_ms", "p99_ms", "p999_ms", "max_ms"]


def read_bound_sweep(results_dir) -> pd.DataFrame | None:
    """``latency/bound_sweep.csv`` of the latency benchmark (notebook 04), or None when it has not run.
    An empty ``bound_ms`` is the eager policy (no waiting: a query is recovered as soon as it can be)."""
    path = Path(results_dir) / "latency" / "bound_sweep.csv"
    if not path.is_file():
        return None
    sweep = pd.read_csv(path)
    missing = {"method", "bound_ms", *BOUND_COLUMNS} - set(sweep.columns)
    if missing:
        raise ValueError(f"{path} lacks the columns {sorted(missing)}")
    return sweep


def bound_label(bound_ms) -> str:
    """``"eager"`` for an empty bound, else ``"<bound> ms"``."""
    return "eager" if bound_ms is None or (isinstance(bound_ms, float) and math.isnan(bound_ms)) else f"{bound_ms:g} ms"


def bound_summary(sweep: pd.DataFrame) -> pd.DataFrame:
    """The measured sweep, one row per (bound, method, mode, point, qps): the mean over repeats of the
    latency statistics (ms), the number of repeats, and the queries that failed / were reconstructed.
    ``bound_ms`` stays numeric (NaN: eager), ``bound`` is its label; eager first, then by bound."""
    keys = [c for c in ("mode", "point", "qps") if c in sweep.columns]
    frame = sweep.assign(bound=sweep["bound_ms"].map(bound_label), _order=sweep["bound_ms"].fillna(-1.0))
    counts = {c: (c, "sum") for c in ("n_queries", "n_failed", "n_reconstructed") if c in frame.columns}
    summary = (frame.groupby(["_order", "bound", "method", *keys], dropna=False)
               .agg(bound_ms=("bound_ms", "first"), **{c: (c, "mean") for c in BOUND_COLUMNS},
                    repeats=("method", "size"), **counts)
               .reset_index().sort_values(["_order", "method", *keys]).drop(columns="_order"))
    return summary.reset_index(drop=True)


def bound_statistic(summary: pd.DataFrame) -> str:
    """The tail statistic notebook 04 reads its timing-bound sweep by: ``p999_ms`` when each run held at
    least 10⁴ queries (ten above a p99.9), else ``p99_ms`` — so both notebooks plot the same one."""
    if "n_queries" not in summary or "repeats" not in summary or summary.empty:
        return "p99_ms"
    per_run = (summary["n_queries"] / summary["repeats"]).min()
    return "p999_ms" if per_run >= 10_000 else "p99_ms"


def bound_pivot(summary: pd.DataFrame, statistic: str = "p999_ms") -> pd.DataFrame:
    """``statistic`` (ms, mean over repeats) with one row per (mode, point, bound) and one column per method."""
    index = [c for c in ("mode", "point") if c in summary.columns] + ["bound"]
    return summary.pivot_table(index=index, columns="method", values=statistic, sort=False)


def bound_explorer(summary: pd.DataFrame):
    """A drop-down of the measured bounds and the measured rows of the chosen one."""
    import ipywidgets as widgets

    options = list(dict.fromkeys(summary["bound"]))
    choice = widgets.Dropdown(options=options, value=options[0], description="timing bound")
    table = widgets.HTML()

    def update(_=None):
        rows = summary[summary["bound"] == choice.value].drop(columns="bound")
        table.value = rows.to_html(index=False, float_format=lambda v: f"{v:.2f}")

    choice.observe(update, names="value")
    update()
    return widgets.VBox([choice, table])


# ----------------------------------------------------------------------------- exercises


def answer_time_ms(original_ms: float, bound_ms: float, parity_ms: float, partners_ms: Sequence[float],
                   decode_ms: float = 0.0) -> float:
    """When the frontend answers query ``x_j`` (ms after its arrival): with its own prediction when that
    arrives first; otherwise the query is declared unavailable at the bound, and decoded as soon as the
    parity output and every other member's prediction are in: ``min(original, max(bound, parity,
    partners) + decode)``."""
    recovered = max([bound_ms, parity_ms, *partners_ms]) + decode_ms
    return min(original_ms, recovered)


def _exercise_decoder() -> float:
    x = torch.tensor([[[1.0], [4.0], [2.0]]])  # one group of k = 3 queries
    f = lambda v: 2 * v  # noqa: E731
    rebuilt = coding.decode(f(coding.add_encode(x)), f(x), torch.tensor([[True, False, True]]))
    return rebuilt[0, 1, 0].item()


def _exercise_fu() -> float:
    a_a, a_d, a_o = 0.90, 0.60, 0.87
    return (a_a - a_o) / (a_a - a_d)  # A_o = A_a − f_u·(A_a − A_d)


@dataclass(frozen=True)
class Exercise:
    question: str
    hint: str
    solve: Callable[[], float]
    tolerance: float = 1e-6


EXERCISES = {
    1: Exercise("F(x) = 2x, k = 3 queries x = (1, 4, 2), one parity query p = x1 + x2 + x3 answered by "
                "F_p = F. The prediction F(x2) is lost: what does the decoder return for it?",
                "the decoder subtracts the predictions that did arrive: F_p(p) − F(x1) − F(x3)", _exercise_decoder),
    2: Exercise("F answers A_a = 0.90 of queries right, the parity model's reconstructions A_d = 0.60. "
                "At which unavailable fraction f_u does the overall accuracy A_o fall to 0.87?",
                "A_o = (1 − f_u)·A_a + f_u·A_d; solve for f_u (the f_u slider above shows A_o as you move it)",
                _exercise_fu, 1e-3),
    3: Exercise("Timing bound t_b = 20 ms. After query x1 arrives, F(x2) is back at 8 ms, F_p(p) at 12 ms, "
                "and x1's own prediction F(x1) at 35 ms (a straggler). Decoding takes 1 ms. "
                "When (ms after x1's arrival) is x1 answered?",
                "x1 is declared unavailable only at the bound; then the decoder needs F_p(p) and F(x2), "
                "and the first answer wins", lambda: answer_time_ms(35.0, 20.0, 12.0, [8.0], 1.0), 1e-6),
}


def check_exercise(number: int, answer) -> str:
    """``"not yet"`` (answer left at None), ``"right"`` or ``"wrong"``, printed with a hint; never raises,
    so that the notebook runs through with the answers left blank."""
    exercise = EXERCISES[number]
    if answer is None:
        print(f"Exercise {number}: not yet answered. Set answer_{number} in the cell above and run both cells. "
              f"Hint: {exercise.hint}.")
        return "not yet"
    try:
        value = float(answer)
    except (TypeError, ValueError):
        print(f"Exercise {number}: {answer!r} is not a number. Hint: {exercise.hint}.")
        return "wrong"
    expected = exercise.solve()
    if abs(value - expected) <= exercise.tolerance * max(1.0, abs(expected)):
        print(f"Exercise {number}: right, {value:g}.")
        return "right"
    print(f"Exercise {number}: not quite ({value:g}). Hint: {exercise.hint}.")
    return "wrong"


def ask(number: int) -> None:
    """Print exercise ``number``'s question."""
    print(f"Exercise {number}. {EXERCISES[number].question}")


# ----------------------------------------------------------------------------- figures


def plot_naive_errors(errors: pd.DataFrame):
    """Section 3's figure: relative error on a log axis (the linear model's ~10⁻⁶ visible, values
    written on the bars) and top-1 agreement beside each model's majority-class share, the agreement
    that always answering ``F``'s most frequent class reaches (the baseline, not 1/C)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    names = list(errors["F"])
    colours = style.CYCLE[: len(names)]
    y = np.arange(len(names))
    axes[0].barh(y, errors["relative error"], color=colours)
    axes[0].set_xscale("log")
    axes[0].set_xlim(min(errors["relative error"].min() / 5, 1e-7), 10)
    for i, value in enumerate(errors["relative error"]):
        axes[0].text(value * 1.3, i, f"{value:.2g}", va="center", fontsize=9)
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()
    axes[0].set_xlabel("relative error ‖rec − F(x1)‖ / ‖F(x1)‖ (log)")
    axes[0].set_title("reconstruction error (lower is better)", fontsize=10)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    axes[1].barh(y, errors["top-1 agreement"], color=colours)
    axes[1].scatter(errors["majority-class share"], y, marker="D", s=50, color="black", zorder=3)
    for i, (agree, share) in enumerate(zip(errors["top-1 agreement"], errors["majority-class share"])):
        axes[1].text(1.04, i, f"{agree:.3f} vs {share:.3f}", va="center", fontsize=9)
    axes[1].set_yticks(y, [""] * len(names))
    axes[1].invert_yaxis()
    axes[1].set_xlim(0, 1.42)
    axes[1].set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    axes[1].set_xlabel("fraction of rebuilt predictions")
    axes[1].set_title("agreement vs. always answering F's most frequent class", fontsize=10)
    axes[1].legend([Patch(facecolor="#BBBBBB"), Line2D([], [], marker="D", color="black", ls="")],
                   ["top-1 agreement with F", "majority-class share of F"], fontsize=8,
                   loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2, frameon=False)
    fig.suptitle("F(x1 + x2) − F(x2) as a stand-in for F(x1), k = 2")
    fig.tight_layout()
    return fig


def plot_learned_vs_naive(comparison: pd.DataFrame):
    """Relative error, agreement with ``F`` and ``A_d`` of the naive and the learned reconstruction
    (``A_a`` of ``F`` drawn as the line a perfect reconstruction would reach)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 2.8))
    colours = [style.color("none"), style.color("pm")]
    labels = ["naive", "learned F_p"]
    for ax, column in zip(axes, ("relative error", "agreement with F", "A_d (top-1)")):
        ax.bar(labels, comparison[column], color=colours)
        for i, value in enumerate(comparison[column]):
            ax.text(i, value, f"{value:.3f}", ha="center", va="bottom", fontsize=9)
        ax.set_title(column + (" (lower is better)" if column == "relative error" else ""), fontsize=10)
        ax.set_ylim(0, max(1.0, comparison[column].max() * 1.15))
    axes[2].axhline(comparison["A_a of F (top-1)"].iloc[0], ls="--", color=style.color("srp"), lw=1.2)
    axes[2].text(1.45, comparison["A_a of F (top-1)"].iloc[0], "$A_a$ of F", ha="right", va="bottom", fontsize=9)
    fig.tight_layout()
    return fig


def plot_overall_accuracy(sources: pd.DataFrame, f_u: float | None = None):
    """``A_o`` against ``f_u`` ∈ [0, 1] for every source, a dotted line at ``f_u`` when given."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    grid = np.linspace(0, 1, 101)
    for variant, row in enumerate(sources.itertuples()):
        same = int((sources["method"].iloc[:variant] == row.method).sum())
        kw = style.kwargs(row.method, variant=same)
        ax.plot(grid, metrics.overall_accuracy(row.A_a, row.A_d, grid), label=row.label, markevery=25, **kw)
    if f_u is not None:
        ax.axvline(f_u, ls=":", color="black", lw=1)
    ax.set_xlabel("unavailable fraction f_u")
    ax.set_ylabel("overall accuracy A_o")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("A_o = (1 − f_u)·A_a + f_u·A_d", fontsize=10)
    fig.tight_layout()
    return fig


def plot_bound_sweep(summary: pd.DataFrame, statistic: str = "p999_ms"):
    """The measured ``statistic`` against the timing bound, one panel per (mode, point), one line per
    method; the eager policy drawn as a marker at the left edge."""
    import matplotlib.pyplot as plt

    panels = [c for c in ("mode", "point") if c in summary.columns]
    keys = list(summary.groupby(panels).groups) if panels else [()]
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        key = key if isinstance(key, tuple) else (key,)
        part = summary
        for column, value in zip(panels, key):
            part = part[part[column] == value]
        bounded = part[part["bound"] != "eager"]
        for method in style.order(part["method"]):
            rows = bounded[bounded["method"] == method]
            ax.plot(rows["bound_ms"], rows[statistic], label=style.label(method), **style.kwargs(method))
            eager = part[(part["bound"] == "eager") & (part["method"] == method)]
            if len(eager):
                ax.plot([0] * len(eager), eager[statistic], ls="", marker=style.kwargs(method)["marker"],
                        mfc="none", color=style.color(method))
        ax.set_xlabel("timing bound (ms; 0: eager)")
        ax.set_ylabel(statistic.replace("_ms", "") + " latency (ms)")
        ax.set_yscale("log")
        ax.set_title(" · ".join(str(v) for v in key) or "bound sweep", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
