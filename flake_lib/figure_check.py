"""Defects a figure can be checked for before it is saved: what a reader would otherwise have to spot.

:func:`defects` lists, in words, what it finds in a drawn matplotlib figure:

- **overlapping tick labels**: two visible, non-empty tick labels of one axis whose boxes overlap (on
  screen, at the size the figure is saved);
- **a marker hidden in a bar**: a scatter marker drawn inside a bar of (nearly) the same colour, so
  that it cannot be seen (a star for the paper's value on a bar of its own colour);
- **overlapping titles**: an axes title that overlaps the figure's suptitle or another axes' title.

:func:`flake_lib.results.save_figure` warns (:class:`FigureDefectWarning`) with each one, so that a notebook
shows it and the smoke test, which rejects warnings in executed notebooks, fails on it.
"""

from __future__ import annotations

import itertools

from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle

#: Two colours closer than this (largest RGB difference, 0–1) count as the same to the eye.
SAME_COLOUR = 0.12
#: Boxes that overlap by less than this many pixels (either way) do not count as overlapping.
OVERLAP_PX = 1.0


class FigureDefectWarning(UserWarning):
    """A defect of a saved figure (see :func:`defects`)."""


def _overlap(a, b) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > OVERLAP_PX) and (min(a.y1, b.y1) - max(a.y0, b.y0) > OVERLAP_PX)


def _tick_label_boxes(axis, renderer, view) -> list:
    low, high = sorted(view)
    boxes = []
    for tick in axis.get_major_ticks():
        label = tick.label1
        location = tick.get_loc()
        if not (label.get_visible() and label.get_text().strip()) or location is None:
            continue
        if not low - 1e-9 * max(1.0, abs(high)) <= location <= high + 1e-9 * max(1.0, abs(high)):
            continue  # a tick outside the view is not drawn
        boxes.append((label.get_text(), label.get_window_extent(renderer)))
    return boxes


def _overlapping_ticks(ax, renderer) -> list[str]:
    found = []
    for name, axis, view in (("x", ax.xaxis, ax.get_xlim()), ("y", ax.yaxis, ax.get_ylim())):
        boxes = _tick_label_boxes(axis, renderer, view)
        for (text_a, a), (text_b, b) in itertools.combinations(boxes, 2):
            if _overlap(a, b):
                found.append(f"{name} tick labels '{text_a}' and '{text_b}' overlap in '{ax.get_title()}'")
                break
    return found


def _rgb(colour) -> tuple[float, float, float]:
    return to_rgba(colour)[:3]


def _same(a, b) -> bool:
    return max(abs(x - y) for x, y in zip(_rgb(a), _rgb(b))) < SAME_COLOUR


def _hidden_markers(ax) -> list[str]:
    bars = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_visible() and p.get_width() and p.get_height()]
    found = []
    for collection in ax.collections:
        offsets = collection.get_offsets()
        faces = collection.get_facecolors()
        if not len(offsets) or not len(faces):
            continue
        points = collection.get_offset_transform().transform(offsets)
        for i, point in enumerate(points):
            face = faces[i % len(faces)]
            for bar in bars:
                box = bar.get_window_extent()
                if box.contains(*point) and _same(face, bar.get_facecolor()):
                    found.append(f"a marker at {tuple(offsets[i])} has the colour of the bar it sits on in "
                                 f"'{ax.get_title()}'")
                    break
    return found


def _overlapping_titles(fig, renderer) -> list[str]:
    titles = [t for ax in fig.axes if ax.get_visible()
              for t in (ax.title, getattr(ax, "_left_title", None), getattr(ax, "_right_title", None))
              if t is not None and t.get_visible() and t.get_text().strip()]
    suptitle = getattr(fig, "_suptitle", None)
    if suptitle is not None and suptitle.get_text().strip():
        titles.append(suptitle)
    found = []
    for a, b in itertools.combinations(titles, 2):
        if _overlap(a.get_window_extent(renderer), b.get_window_extent(renderer)):
            found.append(f"titles '{a.get_text()[:40]}' and '{b.get_text()[:40]}' overlap")
    return found


def defects(fig) -> list[str]:
    """Every defect of ``fig`` (drawn at its own size and dpi) that this module can detect, in words."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        found += _overlapping_ticks(ax, renderer)
        found += _hidden_markers(ax)
    return found + _overlapping_titles(fig, renderer)
