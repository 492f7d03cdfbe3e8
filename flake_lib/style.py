"""One look for every method in every figure: a colour-blind-safe colour, a marker and a line style.

Each method's colour (Okabe–Ito), marker, line style and display name are in its
:class:`~flake_lib.methods.MethodSpec` (the registry, :mod:`flake_lib.methods`), so a method keeps its
look in every figure and a figure still reads in grey scale. Labels are mapped to a method by
:func:`method_of`: the method keys, their display names and aliases, the model names ``F`` (the
deployed model, whose replica SRP runs), ``PM``, ``NKD``, ``Flake``, labels that start with one of them
(``"PM k=2 concatenation"``, ``"Flake student (L_task)"``, ``"NKD student"``) and the loss-term sets of
Flake's ablation (``"L_task + L_KD"``). Variants of one method (a second code, an ablation arm) keep the
method's hue: :func:`kwargs` with ``variant=i`` lightens the colour and changes marker and line style,
and an ablation arm gets its variant from its loss terms, so the full set of terms is Flake itself.

Use ``set_theme()`` once per notebook, ``ax.plot(x, y, **kwargs("pm"))`` for lines,
``palette(methods)`` / ``markers(methods)`` for seaborn's ``hue`` / ``style``, and ``integer_ticks(ax)``
where an axis counts something (epochs, queries).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from . import methods

#: Okabe–Ito colours by name (the methods' colours come from the same palette).
OKABE_ITO = methods.OKABE_ITO
#: Colour cycle for anything that is not a method (experiments, datasets): Okabe–Ito without the
#: colours the methods use first, then the rest.
CYCLE = [OKABE_ITO[c] for c in ("blue", "orange", "green", "vermilion", "purple", "sky blue", "yellow",
                                 "black", "grey")]


def look(method: str) -> methods.MethodSpec:
    """The registry's spec of a method key (its ``name``, ``color``, ``marker``, ``linestyle``)."""
    return methods.get(method)


def _aliases() -> dict[str, str]:
    """Exact labels (lower case) that name a method by another word: display names and aliases."""
    table = {}
    for key, spec in methods.REGISTRY.items():
        for alias in (spec.name, *spec.aliases):
            table.setdefault(alias.lower(), key)
    return table


#: Marker and line style of variant 1, 2, ... of a method (variant 0 is the method's own).
VARIANT_MARKERS = ("v", "<", ">", "p", "*", "h", "8")
VARIANT_LINESTYLES = ("--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
#: Flake's ablation arms, from the loss terms they use; the full set is Flake itself (variant 0).
ABLATION_VARIANTS = {frozenset({"task", "kd", "inter"}): 0, frozenset({"task"}): 1,
                     frozenset({"task", "kd"}): 2, frozenset({"task", "inter"}): 3}


def _ablation_terms(label: str) -> frozenset | None:
    found = set(re.findall(r"l_(task|kd|inter)", label.lower()))
    return frozenset(found) if found else None


def method_of(label: str) -> str:
    """The method key of a label: ``"pm"`` for ``"PM"``, ``"PM k=2 concatenation"`` or ``"pm"``;
    ``"flake"`` for ``"Flake"``, ``"flake-ablation"`` or ``"L_task + L_KD"``. KeyError if none."""
    text = str(label).strip().lower()
    if text in methods.REGISTRY:
        return text
    aliases = _aliases()
    if text in aliases:
        return aliases[text]
    if _ablation_terms(text) is not None:
        return "flake"
    for key in sorted(methods.REGISTRY, key=len, reverse=True):  # "PM k=2", "Flake student", "flake-ablation"
        if re.match(rf"{key}\b", text):
            return key
    if re.match(r"f\b(?!-)", text):  # "F (resnet14)", "F: cross-entropy"
        return "srp"
    raise KeyError(f"no style for {label!r}: name a method ({', '.join(methods.REGISTRY)}), a model (F, PM, NKD, "
                   f"Flake) or a loss-term set of Flake's ablation")


def variant_of(label: str) -> int:
    """0 for a method itself; Flake's ablation arms by their loss terms (full set: 0); else 0."""
    terms = _ablation_terms(str(label))
    return ABLATION_VARIANTS.get(terms, len(ABLATION_VARIANTS)) if terms is not None else 0


def _lighten(color: str, amount: float) -> str:
    """``color`` mixed with white: ``c + amount·(1 − c)`` per channel, ``amount`` in [0, 1)."""
    rgb = [int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    return "#" + "".join(f"{round(255 * (c + amount * (1 - c))):02X}" for c in rgb)


def color(label: str, variant: int | None = None) -> str:
    """The colour of a method; variant ``i > 0`` is the same hue, lighter (at most 55 % white)."""
    base = look(method_of(label)).color
    variant = variant_of(label) if variant is None else variant
    return base if variant <= 0 else _lighten(base, min(0.55, 0.18 * variant))


def kwargs(label: str, variant: int | None = None, line: bool = True) -> dict:
    """``color``, ``marker`` and (``line=True``) ``linestyle`` for ``ax.plot`` / ``ax.errorbar``.

    ``variant`` distinguishes several curves of one method (a second code, an ablation arm); by
    default it is read from the label (see :func:`variant_of`)."""
    style = look(method_of(label))
    variant = variant_of(label) if variant is None else variant
    out = {"color": color(label, variant)}
    if variant <= 0:
        out["marker"] = style.marker
        linestyle = style.linestyle
    else:
        out["marker"] = VARIANT_MARKERS[(variant - 1) % len(VARIANT_MARKERS)]
        linestyle = VARIANT_LINESTYLES[(variant - 1) % len(VARIANT_LINESTYLES)]
    if line:
        out["linestyle"] = linestyle
    return out


def label(method: str) -> str:
    """Display name of a method key: ``"pm"`` → ``"PM"``, ``"none"`` → ``"no redundancy"``."""
    return look(method_of(method)).name


def palette(labels: Iterable[str]) -> dict:
    """``{label: colour}`` for seaborn's ``palette=`` with ``hue`` over method labels."""
    return {name: color(name) for name in dict.fromkeys(labels)}


def markers(labels: Iterable[str]) -> dict:
    """``{label: marker}`` for seaborn's ``markers=`` with ``style`` over method labels."""
    return {name: kwargs(name, line=False)["marker"] for name in dict.fromkeys(labels)}


def order(labels: Iterable[str]) -> list:
    """Labels in the registry's order (no redundancy, SRP, PM, NKD, Flake, ...), variants after
    their method, for legends and categorical axes."""
    keys = list(methods.REGISTRY)
    unique = list(dict.fromkeys(labels))
    return sorted(unique, key=lambda name: (keys.index(method_of(name)), variant_of(name), unique.index(name)))


def integer_ticks(ax, axis: str = "x") -> None:
    """Ticks at whole numbers only on ``axis`` (``"x"``, ``"y"`` or ``"both"``): for counts and epochs."""
    from matplotlib.ticker import MaxNLocator

    for name in ("x", "y") if axis == "both" else (axis,):
        # min_n_ticks=1: a single epoch still gets its integer tick, not 0.95, 0.975, ...
        getattr(ax, f"{name}axis").set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def set_theme(context: str = "notebook") -> None:
    """seaborn's white grid with the Okabe–Ito cycle for everything that is not a method."""
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(context=context, style="whitegrid", palette=CYCLE)
    mpl.rcParams["axes.prop_cycle"] = mpl.cycler(color=CYCLE)


def plain_log(ax, axis: str = "y") -> None:
    """A log axis labelled 2, 5, 10, 20 … instead of 2×10⁰."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    target = getattr(ax, f"{axis}axis")
    target.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(ScalarFormatter())
    target.set_minor_formatter(NullFormatter())
