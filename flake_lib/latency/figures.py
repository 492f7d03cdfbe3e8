"""Figures of the latency experiment that more than one notebook draws.

- :func:`paired_repeats`: each method's statistic in each repeat, the repeats joined across methods,
  so that a reader sees whether an order holds in every repeat or only on average.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .. import style


def paired_repeats(table: pd.DataFrame, statistics: Sequence[str] = ("gpm_ms", "gmm_ms"), axes=None,
                   methods: Sequence[str] | None = None, paper: dict | None = None, title: str = ""):
    """One panel per statistic: a dot per method and repeat (the method's look), the dots of one repeat
    joined by a grey line across methods (the comparisons are paired inside a repeat); ``paper``:
    ``{method: {statistic: value}}`` drawn as a hollow star beside each method. Returns the axes."""
    import matplotlib.pyplot as plt

    methods = list(methods or style.order(table["method"].unique()))
    if axes is None:
        _, axes = plt.subplots(1, len(statistics), figsize=(4.2 * len(statistics), 3.6), squeeze=False)
        axes = axes[0]
    for ax, statistic in zip(axes, statistics):
        wide = table.pivot_table(index="repeat", columns="method", values=statistic)
        wide = wide[[m for m in methods if m in wide]]
        x = np.arange(len(wide.columns))
        for _, row in wide.iterrows():
            ax.plot(x, row.to_numpy(float), color="0.75", linewidth=0.8, zorder=1)
        for j, method in enumerate(wide.columns):
            look = style.kwargs(method, line=False)
            ax.scatter(np.full(len(wide), j), wide[method], s=28, zorder=2, color=look["color"],
                       marker=look["marker"], label=style.label(method))
            value = (paper or {}).get(method, {}).get(statistic)
            if value is not None:
                ax.scatter([j + 0.18], [value], s=90, marker="*", facecolors="none", edgecolors=look["color"],
                           linewidths=1.2, zorder=3)
        ax.set_xticks(x, [style.label(m) for m in wide.columns])
        ax.set(ylabel=f"{statistic.replace('_ms', '').upper()} [ms]", xlim=(-0.5, len(x) - 0.5))
    if title:
        axes[0].figure.suptitle(title, fontsize=10)
    return axes
